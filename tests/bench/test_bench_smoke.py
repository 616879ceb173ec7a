"""Smoke test of the benchmark harness (bench/run.py), so it cannot rot unnoticed.

It runs the whole suite once with tiny counts (every target, every workload, the strace splice
check) and checks what it writes: the exit status, the files, a figure for every workload and
target, the tables and the machine description. The figures themselves are not judged: this is
no benchmark, and there is no timing threshold. The one number checked is a count, the fds per
idle session of relay and of python-floor (2: the client's socket and the backend's). Targets
include python-floor (bench/floor_relay.py, the bare CPython relay the others are compared with;
tests/bench/test_floor_relay.py checks that it moves every byte).

About 50 s on the 2-core development machine.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import METRICS, REFERENCE
from bench.targets import FLOOR, target_specs
from tests.conftest import require_tool
from tests.support.process import assert_session_empty, run_in_session

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 1
ARGS = ["--quick",  # for its 1 s splice check; every count below overrides the rest
        "--rounds", str(ROUNDS), "--iperf-seconds", "1",  # iperf3 -t takes whole seconds
        "--redis-requests", "300", "--conn-requests", "100", "--idle-sessions", "50"]
TIMEOUT = 240.0  # the run, then SIGTERM (run.py stops what it started), then SIGKILL the group
# direct has no proxy to measure
PROXY_ONLY = {"cpu_gb1", "cpu_gb4", "cpu_req", "cpu_conn", "cpu_req_user", "cpu_conn_user",
              "idle_rss", "idle_fds"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run_bench(out: Path) -> tuple[subprocess.Popen[str], str, str]:
    """bench/run.py in its own session, so whatever it leaves behind can be found and killed."""
    return run_in_session([sys.executable, "bench/run.py", *ARGS, "--out", str(out)], REPO,
                          TIMEOUT, "bench/run.py")


@pytest.mark.slow
def test_bench_runs_every_target_and_workload(tmp_path: Path) -> None:
    for tool in ("haproxy", "iperf3", "redis-server", "redis-benchmark", "strace"):
        require_tool(tool)
    out = tmp_path / "results"
    proc, stdout, stderr = _run_bench(out)

    assert_session_empty(proc, "bench/run.py", timeout=5)
    assert proc.returncode == 0, f"exit status {proc.returncode}:\n{stderr[-3000:]}"

    # the files
    mds = [p for p in out.glob("*.md") if p.name != "latest.md"]
    jsons = list(out.glob("*.json"))
    assert len(mds) == 1 and len(jsons) == 1, sorted(p.name for p in out.iterdir())
    assert mds[0].stem == jsons[0].stem and mds[0].stem.endswith("-quick-custom"), mds[0].name
    text = mds[0].read_text()
    assert (out / "latest.md").read_text() == text
    assert (out / "latest.png").read_bytes().startswith(PNG_MAGIC)
    assert text.strip() in stdout  # the tables are printed too

    # the figures: one per round for every workload and target that has it, none left over
    result = json.loads(jsons[0].read_text())
    assert result["errors"] == []
    assert result["profile"]["idle_sessions"] == 50  # not capped
    keys = [s.key for s in target_specs()]
    assert {"direct", REFERENCE, "relay-splice", "relay-copy", FLOOR} <= set(keys), keys
    values = result["values"]
    assert set(values) == {m.key for m in METRICS}
    for metric, by_target in values.items():
        want = [k for k in keys if k != "direct" or metric not in PROXY_ONLY]
        assert sorted(by_target) == sorted(want), metric
        for target, figures in by_target.items():
            assert len(figures) == ROUNDS, (metric, target, figures)
            for v in figures:
                assert isinstance(v, int | float) and math.isfinite(v), (metric, target, v)
                # RSS growth over 50 sessions can be 0 (HAProxy's pools), and so can CPU time
                # counted in 10 ms clock ticks over 300 requests; everything else is > 0
                may_be_zero = metric == "idle_rss" or metric.startswith("cpu_req") or \
                    metric.startswith("cpu_conn")
                assert v > 0 or (may_be_zero and v == 0), (metric, target, v)
    for target in keys:
        if target.startswith("relay-") or target == FLOOR:
            fds = values["idle_fds"][target][0]
            assert 1.5 <= fds <= 2.5, f"{target}: {fds} fds per idle session, not 2"

    # the splice check: strace attached to every proxy (all its processes) and counted
    splice = result["splice"]
    assert sorted(splice) == sorted(k for k in keys if k != "direct")
    for target, check in splice.items():
        assert check["method"] == "strace -f -c" and check["error"] == "", (target, check)
        assert check["splice"] + check["copy"] > 0, (target, check)
    assert splice["relay-copy"]["splice"] == 0, splice["relay-copy"]  # splice = "off"
    assert splice[FLOOR]["splice"] == 0 and splice[FLOOR]["verdict"] == "no (copy)", splice[FLOOR]
    for target in ("relay-splice", "relay-w2"):
        if target in splice:
            assert splice[target]["splice"] > 0, (target, splice[target])

    # the markdown: machine description, tables
    assert "\n- CPU: " in text
    assert f"\n- kernel: {platform.release()}\n" in text
    assert f"## Ratio to HAProxy nbthread 1 (`{REFERENCE}`), medians" in text
    assert "| workload | better | " + " | ".join(keys) + " |" in text
    assert "| workload | unit | better | " + " | ".join(keys) + " |" in text
    assert "## Ratio to direct (no proxy), medians" in text
    assert "## Did it splice?" in text
    assert f"\n- `{FLOOR}`: bare CPython epoll relay (bench/floor_relay.py)" in text
    assert f"| {FLOOR} | strace -f -c | 0 | " in text
    assert "error:" not in text
