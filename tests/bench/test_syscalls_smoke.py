"""Smoke test of bench/syscalls.py (system calls per request, strace), with small counts,
so it cannot rot unnoticed: it exits 0, reports both targets in both modes with the calls a
proxy must make, and leaves no process running. The counts are judged only where they
cannot vary: a persistent request is one read and one write each way."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.support.process import assert_session_empty, run_in_session

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 180.0


@pytest.mark.slow
def test_syscalls_reports_haproxy_and_relay(tmp_path: Path) -> None:
    for tool in ("strace", "haproxy", "redis-server", "redis-benchmark"):
        require_tool(tool)
    proc, stdout, stderr = run_in_session(
        [sys.executable, "bench/syscalls.py", "--requests", "3000"], REPO, TIMEOUT,
        "bench/syscalls.py")
    assert_session_empty(proc, "bench/syscalls.py", timeout=15)
    assert proc.returncode == 0, f"exit status {proc.returncode}:\n{stderr[-3000:]}"

    headers = re.findall(r"^(\S+), (persistent \(-k 1\)|new connection \(-k 0\)), [\d,]+ "
                         r"requests: ([\d.]+) system calls per request$", stdout, re.M)
    assert [(target, mode.split()[0]) for target, mode, _ in headers] == [
        ("haproxy-1t", "persistent"), ("haproxy-1t", "new"),
        ("relay-splice", "persistent"), ("relay-splice", "new")], stdout
    sections = re.split(r"^\S+, .+ system calls per request$", stdout, flags=re.M)[1:]
    for (target, mode, total), section in zip(headers, sections, strict=True):
        calls = {m[1]: float(m[2]) for m in re.finditer(r"^ {4}(\w+) +([\d.]+)", section, re.M)}
        assert float(total) >= sum(calls.values()) - 0.05, (target, mode, section)
        # 50 clients' requests and replies: received and sent once each way per request
        assert calls.get("recvfrom", 0) >= 1.9 and calls.get("sendto", 0) >= 1.9, (target, section)
        if mode.startswith("new"):
            assert calls.get("accept4", 0) >= 0.99 and calls.get("connect", 0) >= 0.99, section
