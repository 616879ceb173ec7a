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


def hints(listener: str, host: str, port: int, primary: str, admin: str, auth: str) -> str:
    """What to try: a client (nc is not always installed: Python always is), and a failover
    through the admin API."""
    client = ("python3 -c 'import socket,sys;s=socket.create_connection((\"" + host + f"\",{port}));"
              "f=s.makefile(\"rw\");print(f.readline(),end=\"\");"
              "[print(f.write(l)and f.flush()or f.readline(),end=\"\")for l in sys.stdin]'")
    return "\n".join([
        f"  try: nc {host} {port}   (type a line; no nc? this does the same:)",
        f"       {client}",
        f"  failover by hand: curl -XPOST{auth} {admin}/backends/{listener}/{primary}/maint",
        f"       ({primary}'s sessions close, new ones go to the backup); and back:",
        f"       curl -XPOST{auth} {admin}/backends/{listener}/{primary}/ready",
        "       (new sessions return to it once failback allows: failback_delay with auto)",
    ])


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
    admin = config.admin.listen
    base = f"http://{admin.host}:{admin.port}" if ":" not in admin.host \
        else f"http://[{admin.host}]:{admin.port}"
    auth = f' -H "Authorization: Bearer $(cat {config.admin.token_file})"' \
        if config.admin.token_file else ""
    for listener in config.listeners:
        print(f"relay demo: listener {listener.name} on {listener.listen}; backends: "
              + ", ".join(f"{b.name} {b.address} (tier {b.tier})" for b in listener.backends))
        print(hints(listener.name, listener.listen.host, listener.listen.port,
                    listener.backends[0].name, base, auth))
    print(f"  status page: {base}/   ({base}/status as JSON)")
    print("  Ctrl-C stops relay and the demo backends.", flush=True)
    # relay runs in its own process group, so a terminal's Ctrl-C reaches the demo alone and
    # relay gets exactly one SIGINT per Ctrl-C (a second one means "stop now" to relay).
    # The handlers are installed explicitly, before relay starts: a shell starts a background
    # job (and some CI runners every job) with SIGINT ignored, and then Python installs none.
    started: list[subprocess.Popen[bytes]] = []
    asked: list[int] = []

    def forward(signum: int, frame: object) -> None:
        wanted = signal.SIGTERM if signum == signal.SIGHUP else signum
        if started and started[0].poll() is None:
            started[0].send_signal(wanted)
        elif not started:
            asked.append(wanted)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    relay = subprocess.Popen([sys.executable, "-m", "relay", "run", "-c", args.config],
                             process_group=0)
    started.append(relay)
    if asked:
        relay.send_signal(asked[0])
    try:
        code = relay.wait()
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    return code


if __name__ == "__main__":
    sys.exit(main())
