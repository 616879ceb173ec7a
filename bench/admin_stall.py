"""How long /metrics scrapes and admin abuse delay sessions, for issue 13's figures.

    .venv/bin/python bench/admin_stall.py [--source /path/to/other/checkout] [--backends 1000]

Starts relay (from --source, default this tree) with a listener of --backends backends
and an echo listener, runs round trips on live sessions, and prints the slowest round
trip unloaded, during single scrapes, and during a pipelined /metrics flood."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.component.test_admin_abuse import listeners
from tests.support.abuse import EchoLoop, pipelined_metrics_flood, rss_bytes
from tests.support.relayproc import REPO, RelayProcess, admin_request, toml_config
from tests.support.servers import EchoServer


def ms(times: list[float]) -> str:
    return f"max {max(times) * 1000:7.1f} ms  ({len(times)} round trips)" if times else "none"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", default=str(REPO))
    parser.add_argument("--backends", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=5)
    args = parser.parse_args()
    echo = EchoServer()
    with tempfile.TemporaryDirectory() as tmp:
        relay = RelayProcess(toml_config(listeners(echo.port, args.backends)), Path(tmp),
                             source=Path(args.source))
        try:
            relay.wait_ready(2, timeout=120)
            admin_request(relay.admin_port, "GET", "/metrics", timeout=60)  # warm up
            loop = EchoLoop(relay.port("echo"))
            print(f"source {args.source}, {args.backends} backends")
            print("unloaded          ", ms(loop.measure(2.0)))
            for i in range(args.scrapes):
                loop.take()
                t0 = time.perf_counter()
                status, body = admin_request(relay.admin_port, "GET", "/metrics", timeout=60)
                took = time.perf_counter() - t0
                time.sleep(0.05)
                print(f"scrape {i} ({status}, {len(body) / 1e6:.1f} MB, {took * 1000:.0f} ms)",
                      ms(loop.take()))
                time.sleep(1.2)
            rss = rss_bytes(relay.pid)
            loop.take()
            flood = pipelined_metrics_flood(relay.admin_port, 40)
            time.sleep(5.0)
            print("pipelined flood 5s", ms(loop.take()),
                  f" RSS +{(rss_bytes(relay.pid) - rss) / 1e6:.0f} MB")
            for conn in flood:
                conn.close()
            loop.close()
        finally:
            relay.stop()
            echo.close()


if __name__ == "__main__":
    main()
