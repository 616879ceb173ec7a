"""A worker process of `relay run` with workers > 1 (started by relay.supervisor, not by hand).

It runs exactly the configuration the supervisor runs, handed over on an inherited file
descriptor (the validated TOML text and every address as the supervisor resolved it): it
never reads the configuration file, so an edited or broken file on disk cannot change
what a restarted worker does (gunicorn's workers take their config from the arbiter too).
It relays on listening sockets inherited from the supervisor, mirrors the supervisor's
health decisions and reports its own traffic failures. Its counters live in a file mapped
into memory that the supervisor reads (relay.net.counts): none is lost if it is killed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from relay.config import Config, parse_config
from relay.errors import ConfigError
from relay.logs import log
from relay.net.backends import Backend, BackendGroup, FollowerGroup
from relay.net.channel import Channel
from relay.net.counts import DOWN_LIVE, UP_LIVE, CountFile
from relay.net.messages import (
    BadMessage,
    CheckWanted,
    Failed,
    Health,
    Message,
    PassiveFailure,
    Ready,
    WorkerStats,
    decode,
    encode,
)
from relay.net.resolve import SockAddr
from relay.net.server import RelayServer, WorkerServer
from relay.net.share import AcceptBoard, AcceptShare


def running_config(config: Config, resolved: dict[str, SockAddr]) -> bytes:
    """What a worker needs to run `config` as the supervisor runs it (see read_running)."""
    return json.dumps({"source": config.source, "text": config.text,
                       "resolved": {k: [v.family, list(v.sockaddr)]
                                    for k, v in resolved.items()}}).encode()


def read_running(fd: int) -> tuple[Config, dict[str, SockAddr]]:
    with os.fdopen(fd, "rb") as f:
        blob = json.loads(f.read())
    config = parse_config(blob["text"], source=blob["source"])
    resolved = {k: SockAddr(int(family), tuple(sockaddr))
                for k, (family, sockaddr) in blob["resolved"].items()}
    return config, resolved


def stats(server: RelayServer) -> WorkerStats:
    """The gauges the supervisor shows for this worker: its sessions, per backend."""
    return WorkerStats(len(server.sessions), {(listener.name, b.name): len(b.sessions)
                                              for listener in server.listeners
                                              for b in listener.group.backends})


def publish_live_bytes(server: RelayServer) -> None:
    """Bytes of open sessions too, as of now: a store per splice would cost more than it
    saves (a killed worker's open sessions are cut anyway)."""
    for listener in server.listeners:
        for b in listener.group.backends:
            up, down = b.bytes_total()
            b.counts[UP_LIVE] = up
            b.counts[DOWN_LIVE] = down


def _tell(sock: socket.socket, message: Message) -> None:
    try:
        sock.setblocking(True)
        sock.sendall(json.dumps(encode(message)).encode() + b"\n")
    except OSError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay-worker")
    parser.add_argument("--config-fd", type=int, required=True,
                        help="descriptor holding the running configuration")
    parser.add_argument("--channel", type=int, required=True)
    parser.add_argument("--counts", required=True, help="file for this worker's counters")
    parser.add_argument("--share", help="the workers' accept board (relay.net.share)")
    parser.add_argument("--slot", type=int, default=0)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--listener", action="append", default=[], metavar="NAME=FD")
    args = parser.parse_args(argv)
    channel_sock = socket.socket(fileno=args.channel)
    inherited = {}
    for item in args.listener:
        name, _, fd = item.partition("=")
        inherited[name] = socket.socket(fileno=int(fd))
    try:
        config, resolved = read_running(args.config_fd)
        log.configure(config.runtime.log_format, config.runtime.log_level)
        server = WorkerServer(config, resolved, inherited)
        server.open()
        counts = CountFile(args.counts, [(lst.name, [b.name for b in lst.group.backends])
                                         for lst in server.listeners])
        if args.share:
            server.share = AcceptShare(AcceptBoard(args.share, args.slots), args.slot)
    except (ConfigError, OSError, ValueError, KeyError, TypeError) as exc:
        reason = "; ".join(exc.lines()) if isinstance(exc, ConfigError) else repr(exc)
        _tell(channel_sock, Failed(reason))
        channel_sock.close()
        return 2
    for listener in server.listeners:
        listener.share = server.share
        listener.counts = counts.runs[(listener.name, None)]
        for backend in listener.group.backends:
            backend.counts = counts.runs[(listener.name, backend.name)]

    def on_message(raw: dict[str, Any]) -> None:
        try:
            message = decode(raw)
        except BadMessage as exc:
            log.warning("supervisor_message_invalid", error=str(exc))
            return
        if isinstance(message, Health):
            listener = server.by_name.get(message.listener)
            if listener is not None and isinstance(listener.group, FollowerGroup):
                listener.group.apply(message)

    channel = Channel(server.reactor, channel_sock, on_message,
                      lambda: server.begin_shutdown("supervisor gone") if not server.stopping
                      else None)

    def report(group: BackendGroup, backend: Backend, error: str) -> None:
        channel.send(encode(PassiveFailure(group.listener_name, backend.name, error)))

    def report_check(group: BackendGroup, backend: Backend) -> None:
        channel.send(encode(CheckWanted(group.listener_name, backend.name)))

    for listener in server.listeners:
        if isinstance(listener.group, FollowerGroup):
            listener.group.report = report
            listener.group.report_check = report_check

    def beat() -> None:
        publish_live_bytes(server)
        channel.send(encode(stats(server)))

    server.on_beat = beat
    channel.send(encode(Ready()))
    try:
        server.run()
    finally:
        publish_live_bytes(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
