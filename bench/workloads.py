"""The loads: iperf3 (bulk, with the proxy's CPU time), redis-benchmark (persistent and
new-connection), idle sessions (the proxy's RSS and fds per session), and a check of which
syscalls the proxy moved bytes with (strace, or /proc/PID/syscall sampling).

Every load has a fixed duration or count; every subprocess has a timeout.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import platform
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.targets import cpu_sample, cpu_spent, fd_count, rss_kib

# --- iperf3 -----------------------------------------------------------------------------------


@dataclass
class Bulk:
    gbps: float
    bytes: int
    cpu_s: float | None  # the proxy's utime + stime during the run; None without a proxy

    @property
    def cpu_s_per_gb(self) -> float | None:
        return None if self.cpu_s is None else self.cpu_s / (self.bytes / 1e9)


def iperf(port: int, seconds: float, streams: int, pids: Callable[[], list[int]]) -> Bulk:
    """iperf3 client -> port for `seconds`; the proxy's CPU time is read around the run.

    iperf3 -t takes whole seconds (a fraction is truncated, and -t 0 runs until killed)."""
    if seconds < 1 or seconds != int(seconds):
        raise ValueError(f"iperf3 -t takes whole seconds, at least 1, not {seconds}")
    argv = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(int(seconds)),
            "-P", str(streams), "-J"]
    for attempt in range(3):
        watched = pids()
        cpu0 = cpu_sample(watched) if watched else None
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
        cpu1 = cpu_sample(watched) if watched else None
        if out.returncode == 0:
            end = json.loads(out.stdout)["end"]["sum_received"]
            cpu = None if cpu0 is None or cpu1 is None else sum(cpu_spent(cpu0, cpu1))
            return Bulk(float(end["bits_per_second"]) / 1e9, int(end["bytes"]), cpu)
        if "busy" in out.stdout + out.stderr and attempt < 2:  # the server is finishing a test
            time.sleep(1.0)
            continue
        break
    raise RuntimeError(f"iperf3 failed ({out.returncode}): {(out.stdout + out.stderr)[-400:]}")


# --- redis-benchmark --------------------------------------------------------------------------


@dataclass
class Rate:
    rps: float
    p50_ms: float
    p99_ms: float


def redis_benchmark(port: int, tests: str, requests: int, clients: int = 50,
                    keepalive: bool = True) -> dict[str, Rate]:
    """redis-benchmark --csv: {"GET": Rate, "SET": Rate}."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients),
            "-n", str(requests), "-k", "1" if keepalive else "0", "-t", tests, "--csv"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed ({out.returncode}): {out.stderr[-400:]}")
    rows = list(csv.reader(line for line in out.stdout.splitlines() if line.startswith('"')))
    if not rows:
        raise RuntimeError(f"redis-benchmark printed no CSV: {out.stdout[-400:]}")
    head = rows[0]
    result = {}
    for row in rows[1:]:
        rec = dict(zip(head, row, strict=True))
        result[rec["test"]] = Rate(float(rec["rps"]), float(rec["p50_latency_ms"]),
                                   float(rec["p99_latency_ms"]))
    return result


# --- idle sessions ----------------------------------------------------------------------------


@dataclass
class Idle:
    sessions: int
    rss_kb_per_session: float
    fds_per_session: float


def open_sessions(port: int, count: int, inflight: int = 256,
                  timeout: float = 120.0) -> list[socket.socket]:
    """`count` connections to port, each proven end to end by a PING answered +PONG (so the
    proxy has connected its backend side), then left idle. At most `inflight` are in progress."""
    sel = selectors.DefaultSelector()
    done: list[socket.socket] = []
    pending = 0
    started = 0
    deadline = time.monotonic() + timeout
    try:
        while len(done) < count:
            while started < count and pending < inflight:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                err = s.connect_ex(("127.0.0.1", port))
                if err not in (0, errno.EINPROGRESS):
                    s.close()
                    raise OSError(err, f"connect: {os.strerror(err)} after {len(done)} sessions")
                sel.register(s, selectors.EVENT_WRITE, b"")
                started += 1
                pending += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(done)} of {count} sessions answered in {timeout} s")
            for key, events in sel.select(timeout=1.0):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                if events & selectors.EVENT_WRITE:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, f"connect: {os.strerror(err)} after {len(done)} sessions")
                    s.send(b"PING\r\n")
                    sel.modify(s, selectors.EVENT_READ, b"")
                    continue
                got = key.data + s.recv(64)
                if not got:
                    raise ConnectionError(f"the proxy closed a session after {len(done)} sessions")
                if got.startswith(b"+PONG\r\n"):
                    sel.unregister(s)
                    done.append(s)
                    pending -= 1
                else:
                    sel.modify(s, selectors.EVENT_READ, got)
    except BaseException:
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        close_all(done)
        raise
    finally:
        sel.close()
    return done


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()
    socks.clear()


def idle_sessions(port: int, count: int, pids: Callable[[], list[int]],
                  warmup: int = 200) -> Idle:
    """The proxy's VmRSS and fd growth while `count` sessions sit idle. A warm-up of `warmup`
    sessions (opened and closed) first, so one-off allocations are not charged per session."""
    close_all(open_sessions(port, warmup))
    time.sleep(0.5)
    watched = pids()
    rss0, fds0 = rss_kib(watched), fd_count(watched)
    socks = open_sessions(port, count)
    try:
        time.sleep(0.5)  # let the proxy settle (release pipes, finish bookkeeping)
        watched = pids()
        rss1, fds1 = rss_kib(watched), fd_count(watched)
    finally:
        close_all(socks)
    return Idle(count, (rss1 - rss0) / count, (fds1 - fds0) / count)


# --- which syscalls moved the bytes -----------------------------------------------------------

COPY_CALLS = ("read", "write", "recvfrom", "sendto", "recvmsg", "sendmsg", "readv", "writev")
SYSCALL_NUMBERS = {  # for /proc/PID/syscall sampling
    "x86_64": {275: "splice", 0: "read", 1: "write", 44: "sendto", 45: "recvfrom",
               46: "sendmsg", 47: "recvmsg", 19: "readv", 20: "writev"},
    "aarch64": {76: "splice", 63: "read", 64: "write", 206: "sendto", 207: "recvfrom",
                211: "sendmsg", 212: "recvmsg", 65: "readv", 66: "writev"},
}


@dataclass
class SpliceCheck:
    method: str  # "strace -f -c", "/proc/PID/syscall sampling" or "none"
    splice: int = 0
    copy: int = 0
    detail: dict[str, int] = field(default_factory=dict)
    error: str = ""

    @property
    def verdict(self) -> str:
        if self.method == "none":
            return "unknown"
        if self.splice == 0:
            return "no (copy)"
        share = self.splice / (self.splice + self.copy)
        if share < 0.01:
            return f"no (copy; {self.splice} stray splice calls)"
        return "yes" if share >= 0.5 else f"mostly copy ({share:.0%} of data calls splice)"


def splice_check(pids: list[int], load: Callable[[], object]) -> SpliceCheck:
    """Count the data syscalls of these processes (all threads) while `load` runs."""
    if shutil.which("strace"):
        check = _strace(pids, load)
        if not check.error:
            return check
        note = check.error
    else:
        note = "strace not installed (apt-get install strace)"
    check = _sample(pids, load)
    check.error = "; ".join(x for x in (note, check.error) if x)
    return check


def _strace(pids: list[int], load: Callable[[], object]) -> SpliceCheck:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "strace.txt"
        calls = ",".join(("splice", *COPY_CALLS))
        with (Path(tmp) / "err.txt").open("w+") as err:
            attach = [a for pid in pids for a in ("-p", str(pid))]
            st = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-e", f"trace={calls}",
                                   *attach], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=err)
            try:
                time.sleep(0.5)  # attach to every thread
                if st.poll() is not None:
                    err.seek(0)
                    return SpliceCheck("strace -f -c", error=f"strace: {err.read().strip()[-200:]}")
                load()
            finally:
                if st.poll() is None:
                    st.send_signal(signal.SIGINT)  # detach and print the summary
                try:
                    st.wait(15)
                except subprocess.TimeoutExpired:
                    st.kill()
                    st.wait(5)
        counts = _parse_strace(out.read_text() if out.exists() else "")
    return _summary("strace -f -c", counts)


def _parse_strace(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in ("splice", *COPY_CALLS) and parts[3].isdigit():
            counts[parts[-1]] += int(parts[3])
    return counts


def _sample(pids: list[int], load: Callable[[], object]) -> SpliceCheck:
    numbers = SYSCALL_NUMBERS.get(platform.machine())
    if numbers is None:
        return SpliceCheck("none", error=f"no syscall table for {platform.machine()}")
    counts: Counter[str] = Counter()
    stop = threading.Event()
    errors: list[str] = []

    def sampler() -> None:
        while not stop.is_set():
            try:
                tasks = [f"/proc/{pid}/task/{task}" for pid in pids
                         for task in os.listdir(f"/proc/{pid}/task")]
            except OSError as exc:
                errors.append(str(exc))
                return
            for task in tasks:
                try:
                    with open(f"{task}/syscall") as f:
                        first = f.read().split(maxsplit=1)[0]
                except PermissionError as exc:
                    errors.append(f"/proc/PID/syscall: {exc.strerror}")
                    return
                except (OSError, IndexError):
                    continue
                with contextlib.suppress(ValueError):
                    name = numbers.get(int(first))
                    if name:
                        counts[name] += 1
            time.sleep(0.0005)

    t = threading.Thread(target=sampler, daemon=True)
    t.start()
    try:
        load()
    finally:
        stop.set()
        t.join(5)
    if errors and not counts:
        return SpliceCheck("none", error=errors[0])
    return _summary("/proc/PID/syscall sampling", counts)


def _summary(method: str, counts: Counter[str]) -> SpliceCheck:
    return SpliceCheck(method, splice=counts["splice"],
                       copy=sum(counts[c] for c in COPY_CALLS), detail=dict(counts))
