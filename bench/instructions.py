"""User-space instructions per new connection and per request of a proxy, counted by callgrind.

    .venv/bin/python bench/instructions.py                      # HAProxy, relay compiled, pure
    .venv/bin/python bench/instructions.py --targets haproxy-1t,relay-compiled --conns 500
    .venv/bin/python bench/instructions.py --targets relay-compiled --keep /tmp/cg   # then:
    callgrind_annotate --inclusive=yes --tree=calling /tmp/cg/relay-compiled/out.1

Unlike CPU time on a shared 2-core machine, an instruction count does not move with the load
of the machine: repeated runs agree within about 1 %. Each target runs under
`valgrind --tool=callgrind` against one redis-server on 127.0.0.1: warm-up, counters zeroed
(`callgrind_control -z PID`), then redis-benchmark -c 10 -t get -k 0 -n CONNS (a new
connection per request) and a dump (`callgrind_control -d PID`); then the same with -k 1
-n REQUESTS (persistent connections). The figure is the dump's `summary:` (instructions
executed by the proxy's process in user space: the kernel's share of the TCP work is not
counted) divided by the number of requests.

Targets: haproxy-1t (bench/targets.py's, mode tcp, nbthread 1; maxconn 4000, as valgrind
leaves fewer fds), relay-compiled (mypyc: the working tree if `make compiled` is fresh, else
a compiled copy) and relay-pure (a copy of relay/ without .so files).

Prints a markdown table and writes it to bench/results/instructions-<UTC time>.md. Only
127.0.0.1; every process it starts is stopped by its PID. Used for bench/NOTES.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import report, targets  # noqa: E402
from bench.targets import REFERENCE, Backends, Procs  # noqa: E402
from tests.support.relayproc import RelayProcess, toml_config  # noqa: E402

TARGETS = {  # key: legend
    REFERENCE: "HAProxy, mode tcp, nbthread 1 (bench/targets.py's haproxy-1t, maxconn 4000)",
    "relay-compiled": "relay, one worker, compiled (mypyc)",
    "relay-pure": "relay, one worker, pure Python",
}
CLIENTS = 10
START_TIMEOUT = 90.0  # a proxy starting under valgrind (Python's start-up is slow there)
DUMP_TIMEOUT = 60.0
BENCH_TIMEOUT = 900.0  # one redis-benchmark run under callgrind (about 50x slower)
HAPROXY_MAXCONN = 4000  # under valgrind the fd limit is lower: 20,000 refuses to start


@dataclass
class Counts:
    conn: float  # instructions per new connection (-k 0)
    request: float  # instructions per request on a persistent connection (-k 1)


def valgrind_prefix(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"]


def redis_benchmark(port: int, keepalive: bool, requests: int, clients: int = CLIENTS) -> None:
    """redis-benchmark -t get against port: RuntimeError if it fails."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients),
            "-k", "1" if keepalive else "0", "-t", "get", "-n", str(requests), "-q"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=BENCH_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed ({done.returncode}): {done.stderr[-400:]}")


def callgrind_control(flag: str, pid: int) -> None:
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=DUMP_TIMEOUT)


def summary(path: Path) -> int | None:
    """The `summary:` of a complete callgrind dump (None while it is being written)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    return None


def dumped(out: Path, pid: int) -> int:
    """Dump the counters of callgrind's process `pid` (writing out.N) and return its
    summary. Callgrind names dumps out.1, out.2, ...; the new one is the file not seen before."""
    before = set(out.parent.glob(out.name + ".*"))
    callgrind_control("-d", pid)
    deadline = time.monotonic() + DUMP_TIMEOUT
    while time.monotonic() < deadline:
        for path in set(out.parent.glob(out.name + ".*")) - before:
            total = summary(path)
            if total is not None:
                return total
        time.sleep(0.1)
    raise RuntimeError(f"no callgrind dump of pid {pid} after {DUMP_TIMEOUT:.0f} s ({out}.*)")


def count(port: int, pid: int, out: Path, keepalive: bool, requests: int) -> float:
    """Instructions per request of the proxy (callgrind's process `pid`)."""
    redis_benchmark(port, keepalive, 2000 if keepalive else 200)  # warm up
    callgrind_control("-z", pid)
    redis_benchmark(port, keepalive, requests)
    return dumped(out, pid) / requests


Started = tuple[int, "subprocess.Popen[bytes] | RelayProcess"]  # redis port, process


def start_haproxy(backends: Backends, procs: Procs, d: Path) -> Started:
    """HAProxy under callgrind: its redis port and its process."""
    spec = next(s for s in targets.target_specs() if s.key == REFERENCE)
    ports = {"iperf": targets.free_port(), "redis": targets.free_port()}
    cfg = d / "haproxy.cfg"
    cfg.write_text(targets.haproxy_config(spec, ports, backends, HAPROXY_MAXCONN))
    proc = targets.spawn([*valgrind_prefix(d / "out"), "haproxy", "-f", str(cfg), "-db"],
                         d / "haproxy.log", procs, f"haproxy {REFERENCE} (valgrind)")
    targets.wait_listening(list(ports.values()), proc, f"haproxy under valgrind (see {d})",
                           timeout=START_TIMEOUT)
    return ports["redis"], proc


def start_relay(build: str, backends: Backends, procs: Procs, tmp: Path,
                d: Path) -> Started:
    """relay (`build`: "compiled" or "pure") under callgrind: its redis port and process."""
    tree = targets.relay_tree(build, tmp)
    version = subprocess.run([sys.executable, "-m", "relay", "--version"], cwd=tree,
                             env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                             text=True, timeout=60, check=True).stdout.strip()
    if f"({build})" not in version:
        raise RuntimeError(f"relay in {tree} says {version!r}, not ({build})")
    listener = {"name": "redis", "listen": "127.0.0.1:0", "max_connections": 1000,
                "health": {"kind": "none"},
                "backends": [{"name": "redis", "address": f"127.0.0.1:{backends.redis}"}]}
    relay = RelayProcess(toml_config([listener]), d, source=tree,
                         prefix=tuple(valgrind_prefix(d / "out")))
    procs.add(f"relay-{build} (valgrind)", relay)
    relay.wait_ready(listeners=1, timeout=START_TIMEOUT)
    return relay.port("redis"), relay


def measure(key: str, backends: Backends, procs: Procs, tmp: Path, conns: int,
            requests: int) -> Counts:
    d = tmp / key
    d.mkdir()
    starters: dict[str, Callable[[], Started]] = {
        REFERENCE: lambda: start_haproxy(backends, procs, d),
        "relay-compiled": lambda: start_relay("compiled", backends, procs, tmp, d),
        "relay-pure": lambda: start_relay("pure", backends, procs, tmp, d),
    }
    print(f"instructions: {key}: starting under valgrind", file=sys.stderr, flush=True)
    port, proc = starters[key]()
    pid = proc.pid  # valgrind runs the proxy in its own process: callgrind's PID
    try:
        print(f"instructions: {key}: -k 0 x {conns:,}", file=sys.stderr, flush=True)
        per_conn = count(port, pid, d / "out", False, conns)
        print(f"instructions: {key}: -k 1 x {requests:,}", file=sys.stderr, flush=True)
        per_request = count(port, pid, d / "out", True, requests)
    finally:
        procs.stop(proc)  # SIGTERM by PID (SIGKILL after 10 s); callgrind then writes out
    return Counts(per_conn, per_request)


def table(results: dict[str, Counts]) -> str:
    base = results.get(REFERENCE)
    lines = ["| target | instructions per new connection (-k 0) | per request (-k 1) | "
             f"ratio to {REFERENCE} (connection / request) |",
             "| --- | ---: | ---: | ---: |"]
    for key, c in results.items():
        ratio = f"{c.conn / base.conn:.2f}x / {c.request / base.request:.2f}x" if base else "-"
        lines.append(f"| {key} | {c.conn:,.0f} | {c.request:,.0f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=2_000, help="-k 0 requests (new connections)")
    p.add_argument("--requests", type=int, default=20_000, help="-k 1 requests")
    p.add_argument("--targets", default=",".join(TARGETS),
                   help=f"comma-separated, of {', '.join(TARGETS)}")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results",
                   help="directory for the markdown file")
    p.add_argument("--keep", type=Path, default=None,
                   help="copy the callgrind dumps here (for callgrind_annotate)")
    args = p.parse_args(argv)
    keys = [k for k in args.targets.split(",") if k]
    unknown = [k for k in keys if k not in TARGETS]
    if unknown or not keys:
        p.error(f"--targets: unknown {', '.join(unknown) or '(none)'}; known: {', '.join(TARGETS)}")
    needed = ["valgrind", "callgrind_control", "redis-server", "redis-benchmark", "iperf3"]
    if REFERENCE in keys:
        needed.append("haproxy")
    missing = [t for t in needed if shutil.which(t) is None]
    if missing:
        print(f"instructions: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    results: dict[str, Counts] = {}
    procs = Procs()
    try:
        with tempfile.TemporaryDirectory(prefix="relay-instr-") as tmpdir:
            tmp = Path(tmpdir)
            backends = targets.start_backends(procs, tmp)
            for key in keys:
                results[key] = measure(key, backends, procs, tmp, args.conns, args.requests)
            if args.keep is not None:
                for dump in tmp.glob("*/out.*"):
                    target = args.keep / dump.parent.name
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(dump, target / dump.name)
    finally:
        procs.stop_all()
    text = "\n".join([
        f"# Instructions per connection and per request (callgrind), {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `.venv/bin/python bench/instructions.py "
        f"{' '.join(sys.argv[1:] if argv is None else argv)}`",
        f"- valgrind --tool=callgrind, user-space instructions of the proxy's process; "
        f"redis-benchmark -c {CLIENTS} -t get: -k 0 -n {args.conns:,}, -k 1 -n {args.requests:,} "
        "(after a warm-up), one redis-server",
        *(f"- {k}: {v}" for k, v in report.machine(report.relay_version()).items()
          if k != "iperf3"),
        *(f"- `{k}`: {TARGETS[k]}" for k in keys),
        "",
        table(results),
        "",
    ])
    report.write_result(args.out, f"instructions-{started:%Y-%m-%dT%H%MZ}", text, "instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
