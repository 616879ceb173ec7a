"""Quick bulk-throughput check: iperf3 direct vs through relay (splice and copy), same run.

    .venv/bin/python bench/iperf_quick.py [--seconds 5] [--rounds 3]

Only 127.0.0.1; every load has a fixed duration. The full suite (HAProxy and more
workloads) lives in its own benchmark; this is the data path's smoke figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.relayproc import RelayProcess, toml_config  # noqa: E402

HAPROXY_CFG = """
global
    nbthread 1
defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    option splice-auto
listen bench
    bind 127.0.0.1:{listen}
    server iperf 127.0.0.1:{backend}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def iperf(port: int, seconds: int, streams: int) -> float:
    out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds),
                          "-P", str(streams), "-J"], capture_output=True, text=True,
                         timeout=seconds + 30, check=True)
    return float(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=1)
    args = parser.parse_args()
    if not shutil.which("iperf3"):
        print("iperf3 is not installed (apt-get install iperf3)", file=sys.stderr)
        return 2
    server_port = free_port()
    server = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(server_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    relays = {}
    haproxy = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            time.sleep(0.5)
            for mode in ("auto", "off"):
                d = Path(tmp) / mode
                d.mkdir()
                text = toml_config([{"name": "bench", "listen": "127.0.0.1:0", "backends": [
                    {"name": "iperf", "address": f"127.0.0.1:{server_port}"}]}],
                    runtime={"splice": mode})
                relays[mode] = RelayProcess(text, d).wait_ready()
            haproxy_port = free_port() if shutil.which("haproxy") else None
            if haproxy_port:
                cfg = Path(tmp) / "haproxy.cfg"
                cfg.write_text(HAPROXY_CFG.format(listen=haproxy_port, backend=server_port))
                haproxy = subprocess.Popen(["haproxy", "-f", str(cfg)], stdout=subprocess.DEVNULL)
                time.sleep(0.5)
            targets = {"direct": server_port, "relay splice": relays["auto"].port(),
                       "relay copy": relays["off"].port()}
            if haproxy_port:
                targets["haproxy nbthread 1"] = haproxy_port
            results: dict[str, list[float]] = {name: [] for name in targets}
            for _ in range(args.rounds):  # interleaved, so noise hits every target alike
                for name, port in targets.items():
                    results[name].append(iperf(port, args.seconds, args.streams))
                    time.sleep(0.3)
        finally:
            for relay in relays.values():
                relay.stop()
            if haproxy is not None:
                haproxy.terminate()
                haproxy.wait(10)
            server.terminate()
            server.wait(10)
    direct = statistics.median(results["direct"])
    print(f"iperf3 -P {args.streams}, {args.seconds}s x {args.rounds} rounds, Gbit/s "
          "(median [min-max]), ratio to direct")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"  {name:<19} {med:7.2f} [{min(values):.2f}-{max(values):.2f}]  {med / direct:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
