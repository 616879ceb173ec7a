"""Smoke test of bench/instructions.py (instructions per connection, callgrind), with tiny
counts, so it cannot rot unnoticed: it exits 0, writes its markdown file, prints the same
table, counts something positive for every target, and leaves no process running.

The figures are not judged (too few requests to mean anything), only that they are there.
relay-compiled is included when the tree is compiled in place (`make compiled`, as in
`make test`'s compiled run); otherwise it would compile a copy first (about a minute).
About 25 s on the 2-core development machine (35 s with relay-compiled; valgrind's start-up
is most of it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from bench.targets import REFERENCE, compiled_in_place
from tests.conftest import require_tool
from tests.support.process import assert_session_empty, run_in_session

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 180.0  # the run, then SIGTERM (instructions.py stops what it started), then SIGKILL


@pytest.mark.slow
def test_instructions_counts_every_target(tmp_path: Path) -> None:
    for tool in ("valgrind", "callgrind_control", "haproxy", "iperf3", "redis-server",
                 "redis-benchmark"):
        require_tool(tool)
    keys = [REFERENCE, "relay-pure"] + (["relay-compiled"] if compiled_in_place() else [])
    out = tmp_path / "results"
    proc, stdout, stderr = run_in_session(
        [sys.executable, "bench/instructions.py", "--conns", "50", "--requests", "200",
         "--targets", ",".join(keys), "--out", str(out)], REPO, TIMEOUT, "bench/instructions.py")

    assert_session_empty(proc, "bench/instructions.py", timeout=15)
    assert proc.returncode == 0, f"exit status {proc.returncode}:\n{stderr[-3000:]}"

    (md,) = out.glob("instructions-*.md")
    text = md.read_text()
    assert text.strip() in stdout  # the table is printed too
    assert "\n- kernel: " in text and "-k 0 -n 50, -k 1 -n 200" in text
    rows = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\| (\S+) \| ([\d,]+) \| ([\d,]+) \| (.+) \|", line)
        if m:
            rows[m[1]] = (int(m[2].replace(",", "")), int(m[3].replace(",", "")), m[4])
    assert sorted(rows) == sorted(keys), text
    for key, (per_conn, per_request, ratio) in rows.items():
        assert per_conn > 0 and per_request > 0, (key, per_conn, per_request)
        assert re.fullmatch(r"\d+\.\d\dx / \d+\.\d\dx", ratio), (key, ratio)
    assert rows[REFERENCE][2] == "1.00x / 1.00x"
