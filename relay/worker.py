"""A worker process of `relay run` with workers > 1 (started by relay.supervisor, not by hand).

It relays on listening sockets inherited from the supervisor, mirrors the supervisor's
health decisions, reports its own traffic failures, and sends its counters once a second
(and a last time when it has drained) so /metrics and /status cover the whole relay.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Sequence
from typing import Any

from relay.errors import ConfigError
from relay.logs import log
from relay.net.backends import Backend, BackendGroup
from relay.net.channel import Channel
from relay.net.server import RelayServer
from relay.runconfig import prepare


def stats(server: RelayServer) -> dict[str, Any]:
    """Cumulative counters of this worker; histogram samples since the last call."""
    listeners: dict[str, Any] = {}
    backends: dict[str, Any] = {}
    for listener in server.listeners:
        listeners[listener.name] = {"accepted": listener.accepted,
                                    "rejected": dict(listener.rejected),
                                    "hedges": dict(listener.group.hedge_outcomes),
                                    "durations": listener.closed_durations[:]}
        listener.closed_durations.clear()
        per_backend = backends[listener.name] = {}
        for b in listener.group.backends:
            up, down = b.bytes_total()
            per_backend[b.name] = {"up": up, "down": down, "active": len(b.sessions),
                                   "errors": dict(b.connect_errors),
                                   "connect": b.connect_times[:]}
            b.connect_times.clear()
    return {"t": "stats", "sessions": len(server.sessions), "listeners": listeners,
            "backends": backends}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay-worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--channel", type=int, required=True)
    parser.add_argument("--listener", action="append", default=[], metavar="NAME=FD")
    args = parser.parse_args(argv)
    try:
        ready = prepare(args.config)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return 2
    log.configure(ready.config.runtime.log_format, ready.config.runtime.log_level)
    inherited = {}
    for item in args.listener:
        name, _, fd = item.partition("=")
        inherited[name] = socket.socket(fileno=int(fd))
    server = RelayServer(ready.config, ready.resolved, role="worker", inherited=inherited)
    server.open()

    def on_message(message: dict[str, Any]) -> None:
        if message.get("t") == "health":
            listener = server.by_name.get(str(message.get("l")))
            if listener is not None:
                listener.group.apply(message)

    channel = Channel(server.reactor, socket.socket(fileno=args.channel), on_message,
                      lambda: server.begin_shutdown("supervisor gone") if not server.stopping
                      else None)

    def report(group: BackendGroup, backend: Backend, error: str) -> None:
        channel.send({"t": "passive", "l": group.listener_name, "b": backend.name, "error": error})

    def report_check(group: BackendGroup, backend: Backend) -> None:
        channel.send({"t": "check", "l": group.listener_name, "b": backend.name})

    for listener in server.listeners:
        listener.group.report = report
        listener.group.report_check = report_check
    server.on_beat = lambda: channel.send(stats(server))
    try:
        server.run()
    finally:
        if not channel.closed:  # the last counters, after the drain
            try:
                channel.sock.setblocking(True)
                channel.sock.sendall(json.dumps(stats(server)).encode() + b"\n")
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
