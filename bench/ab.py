"""A/B: relay at several git revisions side by side, with HAProxy as the yardstick.

    .venv/bin/python bench/ab.py 81a5c82 HEAD            # before/after an optimisation
    .venv/bin/python bench/ab.py --rounds 5 HEAD~3 HEAD WORK
    .venv/bin/python bench/ab.py WORK WORK@compiled          # pure vs compiled (mypyc)
    .venv/bin/python bench/ab.py WORK@compiled WORK@compiled=all \
        WORK@compiled=relay/net/session.py,relay/net/reactor.py   # which modules to compile

Each revision's relay/ is taken with `git archive` (WORK: the working tree as it is, without
any compiled .so files) and run from its own directory with this venv's Python. REV@compiled
builds that tree with the working tree's setup.py (`setup.py build_ext --inplace`, mypyc)
first: its COMPILED modules, or those after `=` (comma-separated paths, or `all`: RELAY_COMPILE).
Every round runs every workload on every target, in a rotating order, against one redis-server:
redis-benchmark -c 50 -k 1 -t get,set (rate, p99) and -c 50 -k 0 -t get (new connection
per request), with the proxy's CPU time (bench/targets.py's cpu_sample: exact runtime, split in
the clock ticks' proportion) per request and per connection, and the RSS of N idle sessions through a fresh
proxy. Figures are medians of the rounds [min-max]. These workloads are CPU-bound on a
small machine: CPU per request is the steadier figure, rates move with the machine.

Prints a markdown table and writes it to bench/results/ab-<UTC time>.md. Only 127.0.0.1;
every process it starts is stopped by its PID. Used for bench/NOTES.md.
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import report, targets, workloads  # noqa: E402
from bench.targets import REFERENCE, Instance, Procs, TargetSpec  # noqa: E402
from tests.support.relayproc import RelayProcess, toml_config  # noqa: E402

METRICS = [  # key, label, unit, higher is better
    ("get_rps", "redis GET, 50 persistent clients", "req/s", True),
    ("get_p99", "redis GET p99", "ms", False),
    ("set_rps", "redis SET, 50 persistent clients", "req/s", True),
    ("cpu_req", "proxy CPU per request (GET+SET)", "us", False),
    ("cpu_req_user", "... of which user time", "us", False),
    ("conn_rps", "redis GET, new connection per request (-k 0)", "req/s", True),
    ("cpu_conn", "proxy CPU per new connection", "us", False),
    ("cpu_conn_user", "... of which user time", "us", False),
    ("idle_rss", "idle sessions: proxy RSS per session", "KB", False),
]


def source_tree(spec: str, into: Path) -> tuple[Path, str]:
    """relay/ of `spec` (a revision or WORK, the working tree, and maybe @compiled[=modules])
    under `into`, compiled in place if asked; and its label."""
    rev, _, build = spec.partition("@")
    tree, label = _checkout(rev, into)
    if not build:
        return tree, label
    kind, _, modules = build.partition("=")
    if kind != "compiled":
        raise SystemExit(f"ab: {spec}: expected REV@compiled or REV@compiled=MODULES")
    print(f"ab: compiling {spec} (mypyc)", file=sys.stderr, flush=True)
    targets.compile_tree(tree, modules)
    count = len([m for m in modules.split(",") if m])
    shown = "" if not modules else f"={modules}" if len(modules) <= 20 else f"={count} modules"
    return tree, f"{label}, compiled{shown}"


def _checkout(rev: str, into: Path) -> tuple[Path, str]:
    if rev == "WORK":
        return targets.copy_relay(into), "working tree"
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    data = subprocess.run(["git", "archive", "--format=tar", sha, "relay"], cwd=REPO,
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into, sha


def start_relay(tree: Path, redis_port: int, procs: Procs, tmp: Path, label: str) -> Instance:
    listener = {"name": "redis", "listen": "127.0.0.1:0", "max_connections": 40000,
                "health": {"kind": "none"},
                "backends": [{"name": "redis", "address": f"127.0.0.1:{redis_port}"}]}
    d = tmp / f"relay-{re.sub(r'[^A-Za-z0-9@=.-]', '_', label)[:40]}-{time.monotonic_ns()}"
    d.mkdir()
    relay = RelayProcess(toml_config([listener], runtime={"max_connections": 80000}), d,
                         source=tree)
    procs.add(f"relay {label}", relay)
    relay.wait_ready(listeners=1)
    spec = TargetSpec(label, f"relay {label}", "relay")
    return Instance(spec, {"redis": relay.port("redis")}, relay)


def cpu_of(inst: Instance) -> targets.CpuSample:
    return targets.cpu_sample(inst.pids())


def add_cpu(into: dict[str, list[float]], key: str, before: targets.CpuSample,
            after: targets.CpuSample, count: int) -> None:
    total, user = targets.cpu_us_per(before, after, count)
    into.setdefault(key, []).append(total)
    into.setdefault(f"{key}_user", []).append(user)


def measure(inst: Instance, requests: int, conns: int, into: dict[str, list[float]]) -> None:
    port = inst.ports["redis"]
    cpu0 = cpu_of(inst)
    rates = workloads.redis_benchmark(port, "get,set", requests)
    add_cpu(into, "cpu_req", cpu0, cpu_of(inst), 2 * requests)
    into.setdefault("get_rps", []).append(rates["GET"].rps)
    into.setdefault("get_p99", []).append(rates["GET"].p99_ms)
    into.setdefault("set_rps", []).append(rates["SET"].rps)
    cpu0 = cpu_of(inst)
    rates = workloads.redis_benchmark(port, "get", conns, keepalive=False)
    add_cpu(into, "cpu_conn", cpu0, cpu_of(inst), conns)
    into.setdefault("conn_rps", []).append(rates["GET"].rps)


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    digits = 0 if med >= 1000 else 3 if med < 10 else 1
    return f"{med:,.{digits}f} [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"


def table(columns: list[str], results: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| workload | unit | better | " + " | ".join(columns) + " |",
             "| --- | --- | --- | " + " | ".join("---:" for _ in columns) + " |"]
    for key, label, unit, higher in METRICS:
        lines.append(f"| {label} | {unit} | {'higher' if higher else 'lower'} | "
                     + " | ".join(cell(results[c].get(key, [])) for c in columns) + " |")
    lines += ["", f"Ratios to {REFERENCE} (medians):", "",
              "| workload | " + " | ".join(columns) + " |",
              "| --- | " + " | ".join("---:" for _ in columns) + " |"]
    for key, label, _, _ in METRICS:
        base = results[REFERENCE].get(key)
        cells = []
        for c in columns:
            vals = results[c].get(key)
            ok = base and vals and statistics.median(base)
            cells.append(f"{statistics.median(vals) / statistics.median(base):.2f}x"  # type: ignore[arg-type]
                         if ok else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("revs", nargs="+", help="git revisions, or WORK for the working tree")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=30_000, help="per test, -k 1 (GET, SET)")
    p.add_argument("--conns", type=int, default=6_000, help="-k 0 requests")
    p.add_argument("--idle", type=int, default=3_000, help="idle sessions (0: skip)")
    args = p.parse_args(argv)
    missing = targets.tool_missing()
    if missing:
        print(f"ab: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    targets.raise_nofile(max(65536, 4 * args.idle))
    started = datetime.now(UTC)
    procs = Procs()
    results: dict[str, dict[str, list[float]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="relay-ab-") as tmpdir:
            tmp = Path(tmpdir)
            trees: dict[str, Path] = {}
            for i, rev in enumerate(args.revs):
                tree, label = source_tree(rev, tmp / f"src{i}")
                trees[f"{rev if len(rev) <= 20 else rev.partition('=')[0]} ({label})"] = tree
            backends = targets.start_backends(procs, tmp)
            haproxy_spec = next(s for s in targets.target_specs() if s.key == REFERENCE)
            starters: dict[str, Callable[[], Instance]] = {
                REFERENCE: lambda: targets.start_target(haproxy_spec, backends, procs, tmp,
                                                        args.idle + 400, tag=f"-{time.monotonic_ns()}")}
            for name, tree in trees.items():
                starters[name] = (lambda tree=tree, name=name:
                                  start_relay(tree, backends.redis, procs, tmp, name.split()[0]))
            columns = list(starters)
            running = {name: start() for name, start in starters.items()}
            for rnd in range(args.rounds):
                order = columns[rnd % len(columns):] + columns[:rnd % len(columns)]
                for name in order:
                    print(f"round {rnd + 1}: {name}", file=sys.stderr, flush=True)
                    measure(running[name], args.requests, args.conns,
                            results.setdefault(name, {}))
                    if args.idle:
                        fresh = starters[name]()
                        try:
                            idle = workloads.idle_sessions(fresh.ports["redis"], args.idle,
                                                           fresh.pids)
                        finally:
                            targets.stop_target(fresh, procs)
                        results[name].setdefault("idle_rss", []).append(idle.rss_kb_per_session)
    finally:
        procs.stop_all()
    text = "\n".join([
        f"# relay A/B, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `.venv/bin/python bench/ab.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        f"- {args.rounds} rounds, interleaved; redis-benchmark -c 50 -k 1 -t get,set "
        f"-n {args.requests:,}; -k 0 -t get -n {args.conns:,}; {args.idle:,} idle sessions",
        *(f"- {k}: {v}" for k, v in report.machine(report.relay_version()).items()
          if k != "iperf3"),
        "",
        table(columns, results),
        "",
    ])
    report.write_result(REPO / "bench" / "results", f"ab-{started:%Y-%m-%dT%H%MZ}", text, "ab")
    return 0


if __name__ == "__main__":
    sys.exit(main())
