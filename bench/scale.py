"""Cost per backend: relay's idle CPU, RSS and /metrics size and render time by backend count.

    .venv/bin/python bench/scale.py [--sizes 100,1000,4000] [--seconds 10] [--source DIR]
                                    [--histograms] [--haproxy]
    .venv/bin/python bench/scale.py --callgrind --sizes 300 --seconds 20

For each size, relay runs a generated configuration: listeners of 50 backends each
(--per-listener), tcp health checks every 2 s (--interval), every backend pointing at one
of 50 local listening sockets this script holds and accepts on (a few sockets serve any
number of backends: no process per backend). Once every backend is up and the loop has
settled, relay's CPU over --seconds is read from /proc (bench/targets.py's cpu_sample: the
scheduler's exact runtime, split into user and system in the clock ticks' proportion) as % of
one core, and per check: CPU / checks run, and its user and system parts; then its RSS, and /metrics
is fetched three times (size and the median time to fetch). --histograms sets
`[runtime] backend_histograms = true` (the
per-backend connect-time histograms); --source runs another checkout's relay/.

--haproxy also runs HAProxy (nbthread 1) with the same backends and checks (`check inter`
the interval on every server, a TCP connect check, 50 servers per backend section) and
reports its CPU per check the same way, as the yardstick: on a 2-core VM a wake-up after a
sleep and the kernel's loopback handshake cost whichever process checks.

--callgrind instead runs relay under valgrind's callgrind and reports the user-space
instructions it executes per check over --seconds (counters zeroed after the backends are
up, dumped at the end; the checks in that stretch from the rate relay_health_checks_total
grew at around it): a figure that does
not move with the machine's load, as bench/instructions.py's per connection.
"""

from __future__ import annotations

import argparse
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import instructions
from bench.targets import cpu_sample, cpu_spent
from tests.support.relayproc import REPO, RelayProcess, admin_request, toml_config


class Sink:
    """`count` listening sockets on 127.0.0.1, accepting and closing whatever connects."""

    def __init__(self, count: int) -> None:
        self.socks = []
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(1024)
            s.setblocking(False)
            self.socks.append(s)
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            ready, _, _ = select.select(self.socks, [], [], 0.2)
            for s in ready:
                for _ in range(64):
                    try:
                        conn, _ = s.accept()
                    except OSError:
                        break
                    conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        for s in self.socks:
            s.close()


def config(sink: Sink, backends: int, per: int, interval: str, histograms: bool) -> str:
    listeners = []
    for first in range(0, backends, per):
        n = min(per, backends - first)
        listeners.append({
            "name": f"l{first // per}", "listen": "127.0.0.1:0",
            "health": {"kind": "tcp", "interval": interval},
            "backends": [{"name": f"b{first + i}",
                          "address": f"127.0.0.1:{sink.ports[i % len(sink.ports)]}"}
                         for i in range(n)]})
    runtime: dict[str, object] = {}
    if histograms:
        runtime["backend_histograms"] = True
    return toml_config(listeners, runtime=runtime)


def all_up(relay: RelayProcess, backends: int) -> bool:
    status, body = admin_request(relay.admin_port, "GET", "/metrics", timeout=60)
    return status == 200 and body.count("relay_backend_up{") == backends and \
        sum(1 for line in body.splitlines()
            if line.startswith("relay_backend_up{") and line.endswith(" 1.0")) == backends


def settled(relay: RelayProcess, args: argparse.Namespace, backends: int,
            timeout: float) -> None:
    """Wait for relay's listeners and for every backend to be up, then --settle seconds."""
    relay.wait_ready(-(-backends // args.per_listener), timeout=timeout)
    deadline = time.monotonic() + timeout
    while not all_up(relay, backends):
        if time.monotonic() > deadline:
            raise SystemExit(f"not every backend came up within {timeout:.0f} s ({backends})")
        time.sleep(1.0)
    time.sleep(args.settle)


def measure(args: argparse.Namespace, backends: int, sink: Sink) -> dict[str, float]:
    per = args.per_listener
    with tempfile.TemporaryDirectory() as tmp:
        relay = RelayProcess(config(sink, backends, per, args.interval, args.histograms),
                             Path(tmp), source=Path(args.source))
        try:
            settled(relay, args, backends, 120)
            c0, t0 = cpu_sample([relay.pid]), time.monotonic()
            time.sleep(args.seconds)
            c1, t1 = cpu_sample([relay.pid]), time.monotonic()
            checks = backends * (t1 - t0) / float(args.interval.rstrip("s"))
            user, system = cpu_spent(c0, c1)
            sizes, times = [], []
            for _ in range(3):
                time.sleep(1.2)  # admin serves a render for 1 s (METRICS_TTL): a fresh one
                start = time.perf_counter()
                _, body = admin_request(relay.admin_port, "GET", "/metrics", timeout=120)
                times.append(time.perf_counter() - start)
                sizes.append(len(body.encode()))
            return {"backends": backends, "cpu_pct": 100 * (user + system) / (t1 - t0),
                    "us_per_check": 1e6 * (user + system) / checks,
                    "user_us": 1e6 * user / checks, "sys_us": 1e6 * system / checks,
                    "rss_mb": relay.rss_kib() / 1024,
                    "metrics_kb": sizes[-1] / 1024, "metrics_ms": 1000 * statistics.median(times),
                    "bytes_per_backend": sizes[-1] / backends}
        finally:
            relay.stop()


def checks_run(relay: RelayProcess) -> float:
    """Health checks relay has run so far: the sum of relay_health_checks_total."""
    _, body = admin_request(relay.admin_port, "GET", "/metrics", timeout=120)
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith("relay_health_checks_total{"))


def measure_instructions(args: argparse.Namespace, backends: int, sink: Sink) -> dict[str, float]:
    """relay under callgrind: user-space instructions per check over --seconds (the checks
    counted from /metrics, read outside the counted stretch)."""
    per = args.per_listener
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        relay = RelayProcess(config(sink, backends, per, args.interval, args.histograms),
                             Path(tmp), source=Path(args.source),
                             prefix=tuple(instructions.valgrind_prefix(out)))
        try:
            settled(relay, args, backends, 300)  # (slow under valgrind)
            # the checks' rate from two scrapes around the counted stretch (a scrape's own
            # work is outside it), times the stretch: from zeroing the counters to the dump
            before, t0 = checks_run(relay), time.monotonic()
            instructions.callgrind_control("-z", relay.pid)
            zeroed = time.monotonic()
            time.sleep(args.seconds)
            asked = time.monotonic()
            total = instructions.dumped(out, relay.pid)
            after, t1 = checks_run(relay), time.monotonic()
            checks = (after - before) / (t1 - t0) * (asked - zeroed)
            return {"backends": backends, "checks": checks, "per_check": total / checks}
        finally:
            relay.stop()


HAPROXY_CFG = """\
global
    nbthread 1
    maxconn 1000
defaults
    mode tcp
    timeout connect 1s
    timeout check 1s
    timeout client 1h
    timeout server 1h
"""


def measure_haproxy(args: argparse.Namespace, backends: int, sink: Sink) -> dict[str, float]:
    """HAProxy checking the same backends: its CPU per check over --seconds (no metrics)."""
    per, inter = args.per_listener, args.interval.rstrip("s")
    sections = []
    for first in range(0, backends, per):
        servers = "\n".join(
            f"    server b{first + i} 127.0.0.1:{sink.ports[i % len(sink.ports)]} "
            f"check inter {inter}s"
            for i in range(min(per, backends - first)))
        sections.append(f"backend l{first // per}\n{servers}\n")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "haproxy.cfg"
        with socket.socket() as probe:  # HAProxy will not start without a listener
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        frontend = f"frontend f\n    bind 127.0.0.1:{port}\n    default_backend l0\n"
        cfg.write_text(HAPROXY_CFG + frontend + "\n".join(sections))
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            # every server's first check lands within one interval of the start
            time.sleep(float(inter) + args.settle)
            if proc.poll() is not None:
                raise SystemExit(f"haproxy exited ({proc.returncode}) with {backends} servers")
            c0, t0 = cpu_sample([proc.pid]), time.monotonic()
            time.sleep(args.seconds)
            c1, t1 = cpu_sample([proc.pid]), time.monotonic()
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    checks = backends * (t1 - t0) / float(inter)
    user, system = cpu_spent(c0, c1)
    return {"cpu_pct": 100 * (user + system) / (t1 - t0),
            "us_per_check": 1e6 * (user + system) / checks,
            "user_us": 1e6 * user / checks, "sys_us": 1e6 * system / checks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,4000")
    parser.add_argument("--per-listener", type=int, default=50)
    parser.add_argument("--interval", default="2s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--source", default=str(REPO))
    parser.add_argument("--histograms", action="store_true")
    parser.add_argument("--haproxy", action="store_true",
                        help="also HAProxy with the same backends and checks, as the yardstick")
    parser.add_argument("--callgrind", action="store_true",
                        help="instead: relay under callgrind, user instructions per check")
    args = parser.parse_args()
    if args.haproxy and shutil.which("haproxy") is None:
        raise SystemExit("--haproxy: no haproxy on PATH")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 and hard >= 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))  # relay inherits it
    sink = Sink(50)
    if args.callgrind:
        try:
            for size in (int(s) for s in args.sizes.split(",")):
                r = measure_instructions(args, size, sink)
                print(f"{size:>8} backends: {r['checks']:.0f} checks in {args.seconds:g} s, "
                      f"{r['per_check']:,.0f} user instructions per check (callgrind)",
                      flush=True)
        finally:
            sink.close()
        return
    try:
        print(f"source {args.source}; {args.per_listener} backends per listener, tcp checks "
              f"every {args.interval}, idle for {args.seconds:g} s"
              f"{'; backend_histograms = true' if args.histograms else ''}")
        print(f"{'backends':>8} {'CPU % core':>10} {'µs/check':>9} {'user':>5} {'sys':>5} "
              f"{'RSS MB':>7} "
              f"{'/metrics KB':>11} {'B/backend':>9} {'render ms':>9}")
        for size in (int(s) for s in args.sizes.split(",")):
            r = measure(args, size, sink)
            print(f"{size:>8} {r['cpu_pct']:>10.1f} {r['us_per_check']:>9.0f} "
                  f"{r['user_us']:>5.0f} {r['sys_us']:>5.0f} "
                  f"{r['rss_mb']:>7.1f} {r['metrics_kb']:>11.0f} {r['bytes_per_backend']:>9.0f} "
                  f"{r['metrics_ms']:>9.0f}", flush=True)
            if args.haproxy:
                h = measure_haproxy(args, size, sink)
                print(f"{'haproxy':>8} {h['cpu_pct']:>10.1f} {h['us_per_check']:>9.0f} "
                      f"{h['user_us']:>5.0f} {h['sys_us']:>5.0f}", flush=True)
    finally:
        sink.close()


if __name__ == "__main__":
    main()
