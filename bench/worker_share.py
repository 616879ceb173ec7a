"""Sessions per worker with `workers = 2`, from the supervisor's /status (issue 17).

    .venv/bin/python bench/worker_share.py [--sessions 200] [--rounds 3] [--source DIR]

Each round starts relay (workers = 2) in front of an echo server and opens --sessions
sessions one after the other, each answered before the next opens, all held open
("sequential"); then the same number opened back to back before any is read ("burst");
and prints the sessions each worker holds. Ideal: half each.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.relayproc import REPO, RelayProcess, admin_request, toml_config
from tests.support.servers import EchoServer


def per_worker(relay: RelayProcess, total: int) -> list[int]:
    deadline = time.monotonic() + 15
    while True:
        workers = json.loads(admin_request(relay.admin_port, "GET", "/status")[1])["workers"]
        counts = [int(w["sessions"]) for w in workers]
        if sum(counts) == total or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def run(relay: RelayProcess, n: int, burst: bool) -> list[int]:
    conns = []
    try:
        for i in range(n):
            conn = socket.create_connection(("127.0.0.1", relay.port()), timeout=30)
            conns.append(conn)
            conn.sendall(b"%06d" % i)
            if not burst:
                assert conn.recv(6) == b"%06d" % i
        if burst:
            for i, conn in enumerate(conns):
                assert conn.recv(6) == b"%06d" % i
        return per_worker(relay, n)
    finally:
        for conn in conns:
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--source", default=str(REPO))
    args = parser.parse_args()
    echo = EchoServer()
    print(f"source {args.source}; {args.sessions} sessions held open, workers = 2")
    try:
        for r in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                relay = RelayProcess(toml_config(
                    [{"name": "w", "listen": "127.0.0.1:0", "health": {"kind": "none"},
                      "backends": [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}]}],
                    runtime={"workers": 2}), Path(tmp), source=Path(args.source))
                try:
                    relay.wait_ready(1, timeout=30)
                    deadline = time.monotonic() + 30  # both workers accept
                    while relay.count("listener_open") < 3 and time.monotonic() < deadline:
                        time.sleep(0.1)
                    seq = run(relay, args.sessions, burst=False)
                    time.sleep(1.5)  # the closed sessions leave /status
                    burst = run(relay, args.sessions, burst=True)
                    print(f"round {r}: sequential {seq}  burst {burst}", flush=True)
                finally:
                    relay.stop()
    finally:
        echo.close()


if __name__ == "__main__":
    main()
