"""relay's benchmark suite: direct vs HAProxy vs relay, same run, interleaved round by round.

    make bench                                   # full run, about 14 minutes on 2 cores
    .venv/bin/python bench/run.py --quick        # about 2 minutes
    .venv/bin/python bench/run.py --rounds 5 --targets direct,haproxy-1t,relay-splice

Targets (bench/targets.py): direct, HAProxy nbthread 1 / 2 with `option splice-auto`,
HAProxy nbthread 1 with splice-request + splice-response forced, relay with splice "auto"
and "off", relay with runtime.workers = 2 (RELAY_WORKERS_2_READY in targets.py), and
python-floor: bench/floor_relay.py, a bare CPython epoll relay (not relay), the floor of what
a Python proxy costs per request and per connection on this machine.

Workloads (bench/workloads.py), each round, each target, in a rotating order:
iperf3 1 and 4 streams (Gbit/s, and the proxy's CPU seconds per GB moved);
redis-benchmark -c 50 -k 1 -t get,set (req/s, p50, p99); redis-benchmark -c 50 -k 0 -t get
(new connection per request); N idle sessions through a fresh proxy (RSS and fds per session).
Then one iperf3 run per proxy under strace (or /proc/PID/syscall sampling) to see whether
it really spliced.

Writes bench/results/<UTC date-time>-<quick|full>.md and .json, latest.md and latest.png
(ratios to HAProxy nbthread 1), and prints the tables. Only 127.0.0.1. Every process started
is stopped by its PID, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import report, targets, workloads  # noqa: E402
from bench.targets import Instance, Procs  # noqa: E402


@dataclass
class Profile:
    rounds: int
    iperf_seconds: float
    redis_requests: int  # per test (GET, SET), 50 persistent clients
    conn_requests: int  # GET with a new connection per request
    idle_sessions: int
    splice_seconds: float


# FULL: about 14 minutes on the 2-core development machine with 9 targets (a loaded machine
# stretches the count-bound loads): 5 rounds, and new connections in runs of ~3 s (runs of
# 6,000 in under a second moved by +-20 % between runs of the same code); QUICK: about 2 minutes.
FULL = Profile(rounds=5, iperf_seconds=4, redis_requests=30_000, conn_requests=24_000,
               idle_sessions=10_000, splice_seconds=2)
QUICK = Profile(rounds=3, iperf_seconds=1, redis_requests=8_000, conn_requests=1_500,
                idle_sessions=1_500, splice_seconds=1)


FD_MARGIN = 1200  # fds a proxy needs besides its sessions' (listeners, epoll, pipes, logs)


class Interrupted(Exception):
    pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _whole_seconds(text: str) -> int:
    """iperf3 -t takes whole seconds: it truncates a fraction, and -t 0 runs until killed."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"{text}: iperf3 -t takes whole seconds, at least 1")
    return int(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller loads, about 2 minutes")
    p.add_argument("--rounds", type=int,
                   help="rounds (default 5, --quick 3); each figure is their median")
    p.add_argument("--iperf-seconds", type=_whole_seconds,
                   help="iperf3 -t, whole seconds >= 1 (default 4, --quick 1)")
    p.add_argument("--redis-requests", type=int)
    p.add_argument("--conn-requests", type=int)
    p.add_argument("--idle-sessions", type=int)
    p.add_argument("--targets", help="comma-separated subset of target keys")
    p.add_argument("--no-splice-check", action="store_true")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results",
                   help="directory for the results (default bench/results)")
    return p.parse_args(argv)


def profile_from(args: argparse.Namespace) -> Profile:
    prof = Profile(**asdict(QUICK if args.quick else FULL))
    for name in ("rounds", "iperf_seconds", "redis_requests", "conn_requests", "idle_sessions"):
        value = getattr(args, name)
        if value is not None:
            setattr(prof, name, value)
    return prof


def measure_round(rnd: int, order: list[Instance], prof: Profile, res: report.Results,
                  backends: targets.Backends, procs: Procs, tmp: Path, max_sessions: int) -> None:
    def attempt(what: str, inst: Instance, fn):  # type: ignore[no-untyped-def]
        try:
            return fn()
        except (Interrupted, KeyboardInterrupt):
            raise
        except Exception as exc:
            res.errors.append(f"round {rnd + 1}, {what}, {inst.spec.key}: {exc}")
            log(f"  {inst.spec.key:<18} FAILED: {exc}")
            return None

    for streams, key in ((1, "bulk1"), (4, "bulk4")):
        log(f"round {rnd + 1}: iperf3 -P {streams} -t {prof.iperf_seconds:g}")
        for inst in order:
            bulk = attempt(f"iperf3 -P {streams}", inst, lambda inst=inst, streams=streams:
                           workloads.iperf(inst.ports["iperf"], prof.iperf_seconds, streams,
                                           inst.pids))
            if bulk is None:
                continue
            res.add(key, inst.spec.key, bulk.gbps)
            res.add(key.replace("bulk", "cpu_gb"), inst.spec.key, bulk.cpu_s_per_gb)
            cpu = "" if bulk.cpu_s_per_gb is None else f"  {bulk.cpu_s_per_gb:.3f} CPU s/GB"
            log(f"  {inst.spec.key:<18} {bulk.gbps:6.2f} Gbit/s{cpu}")
            time.sleep(0.3)

    log(f"round {rnd + 1}: redis-benchmark -c 50 -k 1 -t get,set -n {prof.redis_requests}")
    for inst in order:
        cpu0 = proxy_cpu(inst)
        rates = attempt("redis -k 1", inst, lambda inst=inst: workloads.redis_benchmark(
            inst.ports["redis"], "get,set", prof.redis_requests))
        if rates is None:
            continue
        for key, value in cpu_per(inst, cpu0, 2 * prof.redis_requests, "cpu_req").items():
            res.add(key, inst.spec.key, value)
        for test, rate in rates.items():
            t = test.lower()
            res.add(f"{t}_rps", inst.spec.key, rate.rps)
            res.add(f"{t}_p50", inst.spec.key, rate.p50_ms)
            res.add(f"{t}_p99", inst.spec.key, rate.p99_ms)
        log(f"  {inst.spec.key:<18} " + "  ".join(
            f"{t} {r.rps:8.0f}/s p50 {r.p50_ms:.3f} p99 {r.p99_ms:.3f} ms" for t, r in rates.items()))

    log(f"round {rnd + 1}: redis-benchmark -c 50 -k 0 -t get -n {prof.conn_requests}")
    for inst in order:
        cpu0 = proxy_cpu(inst)
        rates = attempt("redis -k 0", inst, lambda inst=inst: workloads.redis_benchmark(
            inst.ports["redis"], "get", prof.conn_requests, keepalive=False))
        if rates is None:
            continue
        for key, value in cpu_per(inst, cpu0, prof.conn_requests, "cpu_conn").items():
            res.add(key, inst.spec.key, value)
        res.add("conn_rps", inst.spec.key, rates["GET"].rps)
        log(f"  {inst.spec.key:<18} {rates['GET'].rps:8.0f} new connections/s")

    log(f"round {rnd + 1}: {prof.idle_sessions} idle sessions (fresh proxy each)")
    for inst in order:
        if inst.spec.kind == "direct":
            continue  # no proxy to measure
        fresh: Instance | None = None
        try:
            fresh = attempt("start for idle", inst, lambda inst=inst: targets.start_target(
                inst.spec, backends, procs, tmp, max_sessions, tag=f"-idle{rnd}"))
            if fresh is None:
                continue
            idle = attempt("idle sessions", inst, lambda f=fresh: workloads.idle_sessions(
                f.ports["redis"], prof.idle_sessions, f.pids))
        finally:
            if fresh is not None:
                targets.stop_target(fresh, procs)
        if idle is None:
            continue
        res.add("idle_rss", inst.spec.key, idle.rss_kb_per_session)
        res.add("idle_fds", inst.spec.key, idle.fds_per_session)
        log(f"  {inst.spec.key:<18} {idle.rss_kb_per_session:6.2f} KB/session  "
            f"{idle.fds_per_session:.2f} fds/session")
        time.sleep(0.3)


def proxy_cpu(inst: Instance) -> targets.CpuSample | None:
    """CPU used so far by the proxy's processes (None for direct)."""
    pids = inst.pids()
    return targets.cpu_sample(pids) if pids else None


def cpu_per(inst: Instance, before: targets.CpuSample | None, count: int,
            key: str) -> dict[str, float]:
    """Microseconds of proxy CPU per request since `before`: {key: user + system,
    key + "_user": user}."""
    after = proxy_cpu(inst)
    if before is None or after is None or count <= 0:
        return {}
    total, user = targets.cpu_us_per(before, after, count)
    return {key: total, f"{key}_user": user}


def run(args: argparse.Namespace) -> int:
    missing = targets.tool_missing()
    if missing:
        log(f"bench: missing {', '.join(missing)} (apt-get install iperf3 haproxy redis-tools "
            "redis-server)")
        return 2
    prof = profile_from(args)
    specs = targets.target_specs()
    if args.targets:
        wanted = args.targets.split(",")
        unknown = set(wanted) - {s.key for s in specs}
        if unknown:
            log(f"bench: unknown targets {sorted(unknown)}; known: {[s.key for s in specs]}")
            return 2
        specs = [s for s in specs if s.key in wanted]
    nofile = targets.raise_nofile(max(65536, 4 * prof.idle_sessions))
    fit = (nofile - FD_MARGIN) // 2  # the proxy holds 2 fds per session
    capped = ""
    if fit < prof.idle_sessions:
        capped = (f"idle sessions capped at {fit:,} instead of {prof.idle_sessions:,}: "
                  f"RLIMIT_NOFILE is {nofile:,} here and cannot be raised, and a proxy needs "
                  "2 fds per session; per-session figures do not depend on the count")
        log(f"bench: {capped}")
        prof.idle_sessions = fit
    max_sessions = prof.idle_sessions + 200  # + the warm-up sessions, for HAProxy's maxconn

    mode = "quick" if args.quick else "full"
    if any(getattr(args, n) is not None for n in ("rounds", "iperf_seconds", "redis_requests",
                                                   "conn_requests", "idle_sessions", "targets")):
        mode += "-custom"
    started = datetime.now(UTC)
    t0 = time.monotonic()
    busy0, own0 = targets.machine_busy_seconds(), targets.own_cpu_seconds()
    relay_at_start = report.relay_version()
    tree_at_start = report.relay_tree()
    res = report.Results(specs)
    if capped:
        res.notes.append(capped)
    procs = Procs()
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with &
    try:
        with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmpdir:
            tmp = Path(tmpdir)
            try:
                backends = targets.start_backends(procs, tmp)
                instances = [targets.start_target(s, backends, procs, tmp, max_sessions)
                             for s in specs]
                for inst in instances:
                    res.notes += [f"{inst.spec.key}: {n}" for n in inst.notes]
                for rnd in range(prof.rounds):
                    shift = rnd % len(instances)  # rotate, so no target always runs first
                    order = instances[shift:] + instances[:shift]
                    measure_round(rnd, order, prof, res, backends, procs, tmp, max_sessions)
                if not args.no_splice_check:
                    splice_checks(instances, prof, res)
            finally:
                # a second Ctrl-C must not cut the cleanup short
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                procs.stop_all()
    except (KeyboardInterrupt, Interrupted) as exc:
        log(f"bench: interrupted ({str(exc) or 'Ctrl-C'}); every process it started is stopped")
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)

    elapsed = time.monotonic() - t0
    others = (targets.machine_busy_seconds() - busy0) - (targets.own_cpu_seconds() - own0)
    capacity = elapsed * len(os.sched_getaffinity(0))
    res.notes.append(
        f"noise: during the run, other processes (and kernel threads) used at least "
        f"{max(0.0, others):.0f} CPU s, {max(0.0, others) / capacity:.0%} of the machine "
        f"({capacity:.0f} CPU s); above a few percent, rerun on a quiet machine")
    if not targets.RELAY_WORKERS_2_READY:
        res.notes.append("relay with runtime.workers = 2 is not measured (hook: "
                         "RELAY_WORKERS_2_READY in bench/targets.py).")
    res.notes.append(f"whole run: {elapsed:.0f} s")
    settings = [
        f"command: `{' '.join(['.venv/bin/python', 'bench/run.py', *map(shlex.quote, sys.argv[1:])])}`"
        f" ({mode}); started {started:%Y-%m-%d %H:%M} UTC",
        f"{prof.rounds} rounds, interleaved: every workload runs on every target in each round, "
        "target order rotated each round; each figure is the median of the rounds [min-max]",
        f"iperf3: -t {prof.iperf_seconds:g} -P 1 and -P 4, client -> server; CPU s/GB = the "
        "proxy's CPU time (all its processes and threads) / GB received",
        "proxy CPU time: the scheduler's exact runtime of each thread (/proc/PID/task/TID/sched), "
        "split into user and system in the proportion of the clock ticks (/proc/PID/stat, "
        "10 ms, sampled: the split of a short run is the rough part)",
        f"redis-benchmark: -c 50 -k 1 -t get,set -n {prof.redis_requests:,} (3-byte values); "
        f"-c 50 -k 0 -t get -n {prof.conn_requests:,} for the new-connection rate; proxy CPU "
        "per request = the proxy's CPU time during the run / requests",
        f"idle: {prof.idle_sessions:,} sessions through a fresh proxy (after 200 warm-up "
        "sessions), each answered one PING, then idle; growth of VmRSS and of /proc/PID/fd",
        "only 127.0.0.1; relay and HAProxy run no health checks; backends: iperf3 -s, "
        "redis-server (no persistence)",
    ]
    if any(s.key == targets.FLOOR for s in specs):
        settings.append(f"`{targets.FLOOR}` is not relay: bench/floor_relay.py, a bare "
                        "edge-triggered epoll copy loop in CPython (the same interpreter as "
                        "relay, no features), the least a Python relay costs per byte and per "
                        "connection")
    title = f"relay benchmark, {started:%Y-%m-%d %H:%M} UTC ({mode})"
    relay_at_end = report.relay_version()
    if report.relay_tree() != tree_at_start:
        res.notes.append(f"relay/ changed during the run (at the end: {relay_at_end}): the "
                         "figures may mix versions; rerun")
    text = report.markdown(res, title, settings, report.machine(relay_at_start))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y-%m-%dT%H%MZ}-{mode}"
    (args.out / f"{stem}.md").write_text(text)
    shutil.copyfile(args.out / f"{stem}.md", args.out / "latest.md")
    (args.out / f"{stem}.json").write_text(json.dumps(
        {"profile": asdict(prof), "values": res.values, "errors": res.errors,
         "splice": {k: asdict(v) | {"verdict": v.verdict} for k, v in res.splice.items()}},
        indent=1))
    report.chart(res, args.out / "latest.png", title)  # ratios to HAProxy nbthread 1 (or direct)
    print(text)
    log(f"bench: wrote {args.out / (stem + '.md')}, latest.md, latest.png ({elapsed:.0f} s)")
    return 1 if res.errors else 0


def splice_checks(instances: list[Instance], prof: Profile, res: report.Results) -> None:
    log(f"splice check: strace -f -c during iperf3 -P 1 -t {prof.splice_seconds:g}")
    for inst in instances:
        if inst.pid is None:
            continue

        def load(inst: Instance = inst) -> object:
            return workloads.iperf(inst.ports["iperf"], prof.splice_seconds, 1, lambda: [])

        try:
            check = workloads.splice_check(inst.pids(), load)
        except (Interrupted, KeyboardInterrupt):
            raise
        except Exception as exc:
            res.errors.append(f"splice check, {inst.spec.key}: {exc}")
            continue
        res.splice[inst.spec.key] = check
        log(f"  {inst.spec.key:<18} {check.verdict:<10} splice {check.splice:,} "
            f"copy {check.copy:,} {check.detail} {check.error}")


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
