"""`python -m relay.demo`: relay in front of two small local backends, nothing else needed.

The backends are started at the addresses of the config's backends (conf/relay.toml:
primary 127.0.0.1:7001, backup 127.0.0.1:7002); each answers every line with its
own name, so you can see which one serves you. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import socketserver
import subprocess
import sys
import threading

from relay.config import load_config
from relay.errors import ConfigError


class _NamedLineHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        name = self.server.backend_name  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):
            self.wfile.write(f"hello from {name}; type a line\n".encode())
            for line in self.rfile:
                self.wfile.write(f"{name}: ".encode() + line)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def start_backend(name: str, host: str, port: int) -> _Server:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    _Server.address_family = family
    server = _Server((host, port), _NamedLineHandler)
    server.backend_name = name  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relay.demo", description=__doc__)
    parser.add_argument("-c", "--config", default="conf/relay.toml")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 2
    servers = []
    try:
        for listener in config.listeners:
            for backend in listener.backends:
                servers.append(start_backend(backend.name, backend.address.host, backend.address.port))
    except OSError as exc:
        print(f"relay demo: cannot start a demo backend: {exc}", file=sys.stderr)
        return 2
    for listener in config.listeners:
        print(f"relay demo: listener {listener.name} on {listener.listen}; backends: "
              + ", ".join(f"{b.name} {b.address} (tier {b.tier})" for b in listener.backends))
        print(f"  try: nc {listener.listen.host} {listener.listen.port}   (type a line)")
    print("  Ctrl-C stops relay and the demo backends.", flush=True)
    relay = subprocess.Popen([sys.executable, "-m", "relay", "run", "-c", args.config])
    signal.signal(signal.SIGTERM, lambda *_: relay.terminate())
    try:
        code = relay.wait()
    except KeyboardInterrupt:
        if relay.poll() is None:  # a terminal's Ctrl-C reaches relay too; a lone SIGINT may not
            relay.send_signal(signal.SIGINT)
        code = relay.wait()
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    return code


if __name__ == "__main__":
    sys.exit(main())
