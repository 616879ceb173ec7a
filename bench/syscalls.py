"""System calls per request of a proxy, counted by strace, HAProxy and relay side by side.

    .venv/bin/python bench/syscalls.py [--targets haproxy-1t,relay-splice] [--requests 30000]

For each target (bench/targets.py's), against one redis-server on 127.0.0.1: a warm-up,
then `strace -f -c` attached to the proxy's processes during redis-benchmark -c 50 -t get,
once with persistent clients (-k 1, --requests) and once with a new connection per request
(-k 0, a tenth of that). Prints each system call made at least once per 100 requests, per
request, with its errors (a connect's EINPROGRESS, an accept's EAGAIN). The kernel's share
of a proxy's CPU follows these counts: bench/NOTES.md compares them with the user-space
instructions of bench/instructions.py.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import targets  # noqa: E402
from bench.instructions import redis_benchmark  # noqa: E402
from bench.targets import Procs, start_backends, start_target, target_specs  # noqa: E402

STRACE_ATTACH = 1.0  # seconds for strace to attach before the load starts


CLIENTS = 50  # as bench/run.py's redis loads


def counted(pids: list[int], port: int, keepalive: bool, requests: int,
            out: Path) -> dict[str, tuple[int, int]]:
    """{syscall: (calls, errors)} of the processes `pids` during one redis-benchmark run."""
    attach = [arg for pid in pids for arg in ("-p", str(pid))]
    strace = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), *attach],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(STRACE_ATTACH)
        redis_benchmark(port, keepalive, requests, CLIENTS)
    finally:
        strace.send_signal(signal.SIGINT)  # detaches and writes the summary
        strace.wait(timeout=60)
    calls: dict[str, tuple[int, int]] = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
            errors = int(fields[4]) if len(fields) == 6 else 0
            calls[fields[-1]] = (int(fields[3]), errors)
    return calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default="haproxy-1t,relay-splice")
    parser.add_argument("--requests", type=int, default=30000)
    args = parser.parse_args()
    missing = [t for t in ("strace", "redis-server", "redis-benchmark", "haproxy")
               if subprocess.run(["which", t], capture_output=True).returncode]
    if missing:
        print(f"syscalls: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    specs = {spec.key: spec for spec in target_specs()}
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="relay-syscalls-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            backends = start_backends(procs, tmp)
            for key in args.targets.split(","):
                inst = start_target(specs[key], backends, procs, tmp, 4000)
                port = inst.ports["redis"]
                for keepalive, n in ((True, args.requests), (False, args.requests // 10)):
                    redis_benchmark(port, keepalive, 2000, CLIENTS)  # warm-up
                    calls = counted(inst.pids(), port, keepalive, n, tmp / "strace.txt")
                    total = sum(c for c, _ in calls.values())
                    print(f"{key}, {'persistent (-k 1)' if keepalive else 'new connection (-k 0)'}"
                          f", {n:,} requests: {total / n:.2f} system calls per request")
                    for name, (c, e) in sorted(calls.items(), key=lambda kv: -kv[1][0]):
                        if c / n >= 0.01:
                            errors = f"  ({e / n:.2f} errors)" if e / n >= 0.005 else ""
                            print(f"    {name:<16} {c / n:6.2f}{errors}")
                targets.stop_target(inst, procs)
        finally:
            procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
