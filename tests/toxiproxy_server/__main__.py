"""python -m tests.toxiproxy_server [--host 127.0.0.1] [--port 8474] [--config proxies.json]"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from .server import ToxiproxyServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.toxiproxy_server",
        description="Toxiproxy 2.x compatible test server (API and proxies on loopback only).")
    parser.add_argument("--host", "-host", default="127.0.0.1",
                        help="loopback address for the API (default 127.0.0.1)")
    parser.add_argument("--port", "-port", type=int, default=8474,
                        help="API port, 0 for any free port (default 8474)")
    parser.add_argument("--config", "-config",
                        help="JSON file with an array of proxies to create at start")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = ToxiproxyServer(args.host, args.port)
        server.start()
    except (OSError, ValueError) as exc:
        print(f"toxiproxy_server: {exc}", file=sys.stderr)
        return 1
    try:
        if args.config:
            with open(args.config, encoding="utf-8") as file:
                server.populate(json.load(file))
        print(f"listening {server.address}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
