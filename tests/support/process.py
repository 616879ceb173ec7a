"""Stopping a process a test started: by its PID, politely first, never left running."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0,
                 signum: int = signal.SIGTERM) -> int:
    """Send `signum` (if it still runs), wait up to `grace` seconds, then SIGKILL; its exit
    status."""
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            return proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(5)


def left_in_session(sid: int) -> list[str]:
    """Live processes (not zombies) still in session `sid`: what its leader did not stop."""
    left = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # gone meanwhile
        state, session = fields[0], int(fields[3])  # fields 3 and 6 of stat(5)
        if session == sid and state != "Z":
            left.append(f"{entry}: {cmd}")
    return left


def run_in_session(argv: list[str], cwd: Path, timeout: float,
                   what: str) -> tuple[subprocess.Popen[str], str, str]:
    """Run `argv` in its own session (so what it leaves behind can be found: left_in_session)
    to its end; past `timeout` it gets SIGTERM (a bench script stops what it started), then
    its session SIGKILL, and the test fails."""
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate(timeout=10)
        raise AssertionError(f"{what} still running after {timeout:.0f} s:\n{stderr[-3000:]}") from None
    return proc, stdout, stderr


def assert_session_empty(proc: subprocess.Popen[Any], what: str, timeout: float) -> None:
    """`proc` (started with start_new_session) left no process running in its session within
    `timeout`; any left is killed (ours: started by what the test ran) and the test fails."""
    deadline = time.monotonic() + timeout
    left = left_in_session(proc.pid)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = left_in_session(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not left, f"{what} left processes running: {left}"
