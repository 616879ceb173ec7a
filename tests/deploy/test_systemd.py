"""deploy/systemd/relay.service: accepted by systemd-analyze, and as hardened as the issue says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from relay.config.model import RuntimeConfig
from tests.conftest import require_tool

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "relay.service"


def settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_analyze_verify_is_clean(tmp_path):
    tool = require_tool("systemd-analyze")
    # verify wants the executables to exist: point them at this checkout's relay
    relay = Path(sys.prefix) / "bin" / "relay"
    assert relay.exists(), relay
    unit = tmp_path / "relay.service"
    unit.write_text(UNIT.read_text().replace("/opt/relay/bin/relay", str(relay)))
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "relay.service" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_unit_is_hardened_and_stops_after_the_drain():
    s = settings()
    assert s["Type"] == ["exec"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["DynamicUser"] == ["yes"] and s["NoNewPrivileges"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"] and s["PrivateTmp"] == ["yes"]
    assert s["CapabilityBoundingSet"] == [""] and s["AmbientCapabilities"] == [""]
    runtime = RuntimeConfig()
    assert int(s["TimeoutStopSec"][0]) > runtime.shutdown_grace
    assert int(s["LimitNOFILE"][0]) >= 2 * runtime.max_connections + 64
    assert s["ExecStart"] == ["/opt/relay/bin/relay run -c /etc/relay/relay.toml"]
