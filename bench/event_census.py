"""Which epoll events a relay session sees, per connection: a census for bench/NOTES.md.

    .venv/bin/python bench/event_census.py            # redis-benchmark -k 0, 5,000 requests
    .venv/bin/python bench/event_census.py --keepalive --requests 20000

Runs relay in this process (one listener in front of a redis-server it starts), counts
Session.on_event calls by session state, socket and event mask while redis-benchmark
-c 50 runs, and prints them per connection (or per request with --keepalive). Only
127.0.0.1; redis-server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import select
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import targets  # noqa: E402
from relay.net import session as session_module  # noqa: E402
from tests.support.inproc import InProcessRelay  # noqa: E402
from tests.support.relayproc import toml_config  # noqa: E402

FLAGS = [(select.EPOLLIN, "IN"), (select.EPOLLOUT, "OUT"), (select.EPOLLRDHUP, "RDHUP"),
         (select.EPOLLHUP, "HUP"), (select.EPOLLERR, "ERR")]
STATES = {session_module.CONNECTING: "connecting", session_module.RELAYING: "relaying",
          session_module.CLOSED: "closed"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--keepalive", action="store_true", help="-k 1 instead of -k 0")
    args = p.parse_args()
    counts: Counter[tuple[str, str, str]] = Counter()
    lock = threading.Lock()
    original = session_module.Session.on_event

    def counting(self: session_module.Session, fd: int, events: int) -> None:
        side = "client" if fd == self.client.fd else "backend"
        mask = "|".join(name for bit, name in FLAGS if events & bit)
        with lock:
            counts[(STATES[self.state], side, mask)] += 1
        original(self, fd, events)

    session_module.Session.on_event = counting  # type: ignore[method-assign]
    procs = targets.Procs()
    try:
        with tempfile.TemporaryDirectory(prefix="relay-census-") as tmp:
            backends = targets.start_backends(procs, Path(tmp))
            relay = InProcessRelay(toml_config([{
                "name": "redis", "listen": "127.0.0.1:0", "health": {"kind": "none"},
                "backends": [{"name": "redis", "address": f"127.0.0.1:{backends.redis}"}]}]))
            try:
                subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p",
                                str(relay.port("redis")), "-c", "50", "-n", str(args.requests),
                                "-k", "1" if args.keepalive else "0", "-t", "get", "-q"],
                               check=True, capture_output=True, timeout=300)
            finally:
                relay.stop()
    finally:
        procs.stop_all()
        session_module.Session.on_event = original  # type: ignore[method-assign]
    per = "request" if args.keepalive else "connection"
    total = sum(counts.values())
    print(f"events per {per} (redis-benchmark -c 50 -k {int(args.keepalive)} -t get "
          f"-n {args.requests}): {total / args.requests:.2f}")
    for (state, side, mask), n in counts.most_common():
        print(f"  {n / args.requests:5.2f}  {state:<10} {side:<7} {mask}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
