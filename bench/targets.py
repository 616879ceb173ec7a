"""The things a benchmark runs against: backends (iperf3 server, redis-server) and targets
(direct, HAProxy in several modes, relay in several modes, and python-floor: the bare CPython
epoll relay of bench/floor_relay.py, not relay), plus /proc readers for the proxy's RSS, fds
and CPU time.

Every process started here is registered in a `Procs` and stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.relayproc import RelayProcess, toml_config  # noqa: E402

# ---------------------------------------------------------------------------------------------
# HOOK: relay with runtime.workers = 2 (a supervisor and two worker processes). On since relay
# supports workers > 1 (commit ac1d7b3); set to False to leave the target out, e.g. on a
# branch without workers. RSS, fds, CPU time and the splice check cover the whole process tree
# (supervisor + workers); a relay that logs `workers_not_supported_yet` is flagged in the notes.
RELAY_WORKERS_2_READY = True
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetSpec:
    key: str  # column name in the tables
    label: str  # one-line description for the legend
    kind: str  # "direct" | "haproxy" | "relay" | "floor"
    nbthread: int = 1
    splice_opts: tuple[str, ...] = ()
    splice: str = "auto"
    workers: int = 1
    build: str = "compiled"  # relay: "compiled" (mypyc, setup.py's COMPILED set) or "pure"


REFERENCE = "haproxy-1t"  # ratios are taken to this target (and to "direct")
FLOOR = "python-floor"  # bench/floor_relay.py: what CPython itself costs a relay, for comparison
FLOOR_SCRIPT = REPO / "bench" / "floor_relay.py"


def target_specs(relay_workers2: bool = RELAY_WORKERS_2_READY) -> list[TargetSpec]:
    specs = [
        TargetSpec("direct", "no proxy: clients talk to the backend itself", "direct"),
        TargetSpec(REFERENCE, "HAProxy, mode tcp, nbthread 1, option splice-auto", "haproxy",
                   nbthread=1, splice_opts=("option splice-auto",)),
        TargetSpec("haproxy-2t", "HAProxy, mode tcp, nbthread 2, option splice-auto", "haproxy",
                   nbthread=2, splice_opts=("option splice-auto",)),
        TargetSpec("haproxy-1t-splice",
                   "HAProxy, mode tcp, nbthread 1, option splice-request + splice-response",
                   "haproxy", nbthread=1,
                   splice_opts=("option splice-request", "option splice-response")),
        TargetSpec("relay-splice", 'relay, one worker, runtime.splice = "auto"', "relay",
                   splice="auto"),
        TargetSpec("relay-copy", 'relay, one worker, runtime.splice = "off"', "relay",
                   splice="off"),
    ]
    if relay_workers2:  # HOOK, see RELAY_WORKERS_2_READY
        specs.append(TargetSpec("relay-w2", 'relay, runtime.workers = 2 (supervisor + 2 workers), '
                                'splice = "auto"',
                                "relay", splice="auto", workers=2))
    specs.append(TargetSpec("relay-splice-pure", 'relay-splice, pure Python (RELAY_PURE=1: no '
                            "mypyc); every other relay column is compiled", "relay", splice="auto",
                            build="pure"))
    # last, so the other columns keep their order (and their colours in the chart)
    specs.append(TargetSpec(FLOOR, "bare CPython epoll relay (bench/floor_relay.py), copy only, "
                            "one process: the floor for a Python proxy, not relay", "floor",
                            splice="off"))
    return specs


# --- relay's trees: compiled and pure ---------------------------------------------------------

_TREES: dict[tuple[str, Path], Path] = {}


def copy_relay(into: Path) -> Path:
    """The working tree's relay/ under `into`, without compiled .so files (pure as it is)."""
    shutil.copytree(REPO / "relay", into / "relay",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return into


def compile_tree(tree: Path, modules: str = "") -> None:
    """Compile tree's relay/ in place with the working tree's setup.py (mypyc): its COMPILED
    set, or `modules` (RELAY_COMPILE: comma-separated paths, or "all")."""
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    env = {**os.environ, "RELAY_COMPILE": modules}
    env.pop("RELAY_PURE", None)
    subprocess.run([sys.executable, "setup.py", "--quiet", "build_ext", "--inplace"], cwd=tree,
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not list((tree / "relay" / "net").glob("session.*.so")):
        raise RuntimeError(f"{tree}: relay.net.session not compiled after setup.py build_ext "
                           "(a C compiler and python3-dev are needed; see setup.py)")


def compiled_in_place() -> bool:
    """Whether the working tree holds a fresh in-place compiled build (make compiled)."""
    built = list((REPO / "relay").rglob("*.so"))
    if not any(so.name.startswith("session.") for so in built):
        return False
    return all(so.stat().st_mtime >= so.with_name(so.name.split(".")[0] + ".py").stat().st_mtime
               for so in built if so.with_name(so.name.split(".")[0] + ".py").is_file())


def relay_tree(build: str, tmp: Path) -> Path:
    """A copy of relay/ built as `build` ("compiled" or "pure"), made once per run under tmp."""
    key = (build, tmp)
    if key not in _TREES and build == "compiled" and compiled_in_place():
        _TREES[key] = REPO  # `make compiled` was run and nothing changed since: no second build
    if key not in _TREES:
        tree = copy_relay(tmp / f"relay-{build}")
        if build == "compiled":
            print("bench: compiling relay (mypyc)", file=sys.stderr, flush=True)
            compile_tree(tree)
        _TREES[key] = tree
    return _TREES[key]


# --- processes --------------------------------------------------------------------------------

class Procs:
    """Every process the benchmark starts; `stop_all` stops them by PID, newest first."""

    def __init__(self) -> None:
        self._items: list[tuple[str, subprocess.Popen[bytes] | RelayProcess]] = []

    def add(self, name: str, proc: subprocess.Popen[bytes] | RelayProcess) -> None:
        self._items.append((name, proc))

    def stop(self, proc: subprocess.Popen[bytes] | RelayProcess) -> None:
        for i, (_, p) in enumerate(self._items):
            if p is proc:
                del self._items[i]
                break
        _stop(proc)

    def stop_all(self) -> None:
        while self._items:
            name, proc = self._items.pop()
            try:
                _stop(proc)
            except Exception as exc:  # keep stopping the others
                print(f"bench: could not stop {name} (pid {proc.pid}): {exc}", file=sys.stderr)


def _stop(proc: subprocess.Popen[bytes] | RelayProcess) -> None:
    if isinstance(proc, RelayProcess):
        proc.stop()  # SIGTERM to its PID, SIGKILL after 10 s
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def spawn(argv: list[str], log: Path, procs: Procs, name: str) -> subprocess.Popen[bytes]:
    """Start argv with stdout and stderr to `log`, registered in procs."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    procs.add(name, proc)
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    """True when something listens on 127.0.0.1:port (read from /proc, without connecting:
    a bare connect would upset iperf3's server)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[1] == want and parts[3] == "0A":
                return True
    return False


def wait_listening(ports: list[int], proc: subprocess.Popen[bytes], what: str,
                   timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(listening(p) for p in ports):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not listening on {ports} after {timeout:.0f} s")
        time.sleep(0.05)


# --- /proc readers ----------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """pid and every descendant (so a multi-worker relay is measured whole)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def fd_count(pids: list[int]) -> int:
    return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)


@dataclass(frozen=True)
class CpuSample:
    """CPU used so far by some processes (all their threads): utime and stime in clock ticks
    (seconds, 10 ms steps, the split sampled at each tick), and `exact`, the scheduler's own
    runtime of every thread (nanosecond counts from /proc/PID/task/TID/sched), None where the
    kernel does not show it; `threads`, whose runtime `exact` sums."""

    user: float
    system: float
    exact: float | None
    threads: frozenset[int]


def cpu_sample(pids: list[int]) -> CpuSample:
    user = system = 0
    exact: float | None = 0.0
    threads: set[int] = set()
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        user += int(fields[11])  # field 14 of stat(5)
        system += int(fields[12])  # field 15
        if exact is not None:
            exact = _runtime(pid, exact, threads)
    return CpuSample(user / CLK_TCK, system / CLK_TCK, exact, frozenset(threads))


def _runtime(pid: int, total: float, threads: set[int]) -> float | None:
    """total plus pid's threads' se.sum_exec_runtime (ms in the file), or None."""
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/sched") as f:
                for line in f:
                    if line.startswith("se.sum_exec_runtime"):
                        total += float(line.split(":")[1]) / 1000
                        threads.add(int(task))
                        break
                else:
                    return None
    except OSError:  # no sched file (kernel without sched debug), or the thread left
        return None
    return total


def cpu_spent(before: CpuSample, after: CpuSample) -> tuple[float, float]:
    """(user, system) CPU seconds between two samples. The total is the scheduler's exact
    runtime where both samples have it (the tick counters move in 10 ms steps: a 1 s run
    reads to about 1 %, and its user/system split, sampled at each tick, much less
    precisely), split in the proportion of the ticks; else the ticks alone (also when a
    thread came or went between the samples)."""
    user, system = after.user - before.user, after.system - before.system
    if before.exact is None or after.exact is None or before.threads != after.threads:
        return user, system  # (a thread that left took its runtime with it)
    total = after.exact - before.exact
    ticks = user + system
    if ticks <= 0:
        return 0.0, total  # no tick fell in the interval: too short to split
    return total * user / ticks, total * system / ticks


def cpu_us_per(before: CpuSample, after: CpuSample, count: int) -> tuple[float, float]:
    """Microseconds of CPU per unit of `count` between two samples: (user + system, user)."""
    user, system = cpu_spent(before, after)
    return (user + system) * 1e6 / count, user * 1e6 / count


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent in processes (all cores; /proc/stat user, nice,
    system) or stolen by the hypervisor. irq and softirq time are left out: loopback TCP is
    processed in softirq, so most of it is the benchmark's own traffic."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = fields
    return (user + nice + system + steal) / CLK_TCK


def own_cpu_seconds() -> float:
    """CPU seconds of this process and every child it has reaped (all of the benchmark's)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# --- backends ---------------------------------------------------------------------------------

@dataclass
class Backends:
    iperf: int
    redis: int


def start_backends(procs: Procs, tmp: Path) -> Backends:
    iperf_port, redis_port = free_port(), free_port()
    iperf = spawn(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(iperf_port)],
                  tmp / "iperf3-server.log", procs, "iperf3 server")
    redis = spawn(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--maxclients", "19000", "--protected-mode", "no",
                   "--daemonize", "no", "--loglevel", "warning", "--dir", str(tmp)],
                  tmp / "redis.log", procs, "redis-server")
    wait_listening([iperf_port], iperf, "iperf3 server")
    wait_listening([redis_port], redis, "redis-server")
    return Backends(iperf_port, redis_port)


# --- targets ----------------------------------------------------------------------------------

@dataclass
class Instance:
    """One running target: where its listeners are and which process to watch."""

    spec: TargetSpec
    ports: dict[str, int]  # "iperf" and "redis"
    proc: subprocess.Popen[bytes] | RelayProcess | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def pids(self) -> list[int]:
        return [] if self.pid is None else process_tree(self.pid)


HAPROXY_CFG = """\
global
    nbthread {nbthread}
    maxconn {maxconn}
    maxpipes 256
defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    maxconn {maxconn}
{options}
listen iperf
    bind 127.0.0.1:{iperf_listen}
    server iperf 127.0.0.1:{iperf}
listen redis
    bind 127.0.0.1:{redis_listen}
    server redis 127.0.0.1:{redis}
"""


def haproxy_config(spec: TargetSpec, ports: dict[str, int], backends: Backends,
                   maxconn: int) -> str:
    """The haproxy.cfg of a "haproxy" target listening on ports["iperf"] and ports["redis"]."""
    return HAPROXY_CFG.format(
        nbthread=spec.nbthread, maxconn=maxconn,
        options="\n".join(f"    {o}" for o in spec.splice_opts),
        iperf_listen=ports["iperf"], iperf=backends.iperf,
        redis_listen=ports["redis"], redis=backends.redis)


def start_target(spec: TargetSpec, backends: Backends, procs: Procs, tmp: Path,
                 max_sessions: int, tag: str = "") -> Instance:
    """Start one instance of `spec` (direct starts nothing) and register its process.

    HAProxy refuses to start when maxconn (x2 fds) + maxpipes (x2) do not fit RLIMIT_NOFILE,
    so both are set: maxconn = max_sessions, maxpipes = 256 (plenty for these loads; its
    default, maxconn / 4, would not fit a 20,000-fd limit)."""
    if spec.kind == "direct":
        return Instance(spec, {"iperf": backends.iperf, "redis": backends.redis})
    d = tmp / f"{spec.key}{tag}"
    d.mkdir(parents=True, exist_ok=True)
    if spec.kind == "haproxy":
        ports = {"iperf": free_port(), "redis": free_port()}
        cfg = d / "haproxy.cfg"
        cfg.write_text(haproxy_config(spec, ports, backends, max_sessions))
        proc = spawn(["haproxy", "-f", str(cfg)], d / "haproxy.log", procs, f"haproxy {spec.key}")
        wait_listening(list(ports.values()), proc, f"haproxy ({spec.key}, see {d}/haproxy.log)")
        return Instance(spec, ports, proc)
    if spec.kind == "relay":
        listeners: list[dict[str, object]] = [
            {"name": name, "listen": "127.0.0.1:0", "max_connections": 40000,
             "health": {"kind": "none"},  # HAProxy runs no checks either (and iperf3 hates them)
             "backends": [{"name": name, "address": f"127.0.0.1:{port}"}]}
            for name, port in (("iperf", backends.iperf), ("redis", backends.redis))]
        runtime: dict[str, object] = {"splice": spec.splice, "max_connections": 80000}
        if spec.workers != 1:
            runtime["workers"] = spec.workers
        relay = RelayProcess(toml_config(listeners, runtime=runtime), d,
                             source=relay_tree(spec.build, tmp))
        procs.add(f"relay {spec.key}", relay)
        relay.wait_ready(listeners=2)
        inst = Instance(spec, {"iperf": relay.port("iperf"), "redis": relay.port("redis")}, relay)
        if relay.count("workers_not_supported_yet"):
            inst.notes.append("relay logged workers_not_supported_yet: ran one worker")
        elif spec.workers > 1:
            deadline = time.monotonic() + 10
            while len(inst.pids()) < 1 + spec.workers and time.monotonic() < deadline:
                time.sleep(0.05)
            if len(inst.pids()) < 1 + spec.workers:
                inst.notes.append(f"only {len(inst.pids())} relay processes after 10 s")
        return inst
    if spec.kind == "floor":  # the same interpreter as relay's
        log = d / "floor.log"
        proc = spawn([sys.executable, str(FLOOR_SCRIPT), f"0:{backends.iperf}",
                      f"0:{backends.redis}"], log, procs, f"floor {spec.key}")
        iperf_port, redis_port = wait_floor_ready(proc, log, 2)
        return Instance(spec, {"iperf": iperf_port, "redis": redis_port}, proc)
    raise ValueError(spec.kind)


def wait_floor_ready(proc: subprocess.Popen[bytes], log: Path, pairs: int,
                     timeout: float = 10.0) -> list[int]:
    """The listening ports floor_relay.py printed (one "listening 127.0.0.1:P -> ..." line per
    pair, in argument order, then "ready")."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text(errors="replace").splitlines()
        if "ready" in lines:
            ports = [int(line.split()[1].rsplit(":", 1)[1]) for line in lines
                     if line.startswith("listening ")]
            if len(ports) != pairs:
                raise RuntimeError(f"floor_relay.py printed {ports}, not {pairs} ports ({log})")
            return ports
        if proc.poll() is not None:
            raise RuntimeError(f"floor_relay.py exited with status {proc.returncode} before "
                               f"ready: {' | '.join(lines[-5:])}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"floor_relay.py not ready after {timeout:.0f} s ({log})")
        time.sleep(0.02)


def stop_target(inst: Instance, procs: Procs) -> None:
    if inst.proc is not None:
        procs.stop(inst.proc)


def raise_nofile(want: int = 65536) -> int:
    """Raise this process's RLIMIT_NOFILE as far as allowed (children inherit it): N idle
    sessions need N client fds here and 2N + a few in the proxy. Returns the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):  # not root: the hard limit is as far as we go
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def tool_missing() -> list[str]:
    return [t for t in ("iperf3", "haproxy", "redis-server", "redis-benchmark")
            if shutil.which(t) is None]
