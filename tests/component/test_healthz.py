"""/healthz follows the reactor: a loop blocked on purpose fails it, and it recovers."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.support.inproc import InProcessRelay
from tests.support.relayproc import REPO, admin_request, toml_config
from tests.support.wait import wait_for


@pytest.fixture
def relay():
    text = toml_config([{"name": "x", "listen": "127.0.0.1:0", "health": {"kind": "none"},
                         "backends": [{"name": "b", "address": "127.0.0.1:1"}]}])
    r = InProcessRelay(text)
    yield r
    r.stop()


def admin_port(relay: InProcessRelay) -> int:
    assert relay.server.admin is not None and relay.server.admin.sock is not None
    return int(relay.server.admin.sock.getsockname()[1])


def block_the_loop(relay: InProcessRelay, seconds: float) -> None:
    """Block the reactor's thread on purpose; returns once it is blocked."""
    blocked = threading.Event()

    def block() -> None:
        blocked.set()
        time.sleep(seconds)

    relay.server.reactor.call_threadsafe(block)
    assert blocked.wait(10)


def test_healthz_fails_while_the_loop_is_stuck_and_recovers(relay):
    """Real sockets while the loop is stuck. The verdict's timing (how long a stall must be,
    how long it is remembered): tests/unit/test_heartbeat.py on a fake clock."""
    port = admin_port(relay)
    first = relay.call(lambda: relay.server.heartbeat)
    wait_for(lambda: relay.call(lambda: relay.server.heartbeat) > first)  # just after a beat
    assert admin_request(port, "GET", "/healthz") == (200, "ok\n")
    block_the_loop(relay, 4.5)  # the next beat comes > HEARTBEAT_STALE late
    with pytest.raises(TimeoutError):  # what a liveness probe with a 1 s timeout sees
        admin_request(port, "GET", "/healthz", timeout=1.0)
    # a request that waited through the block is answered once the loop turns: 503
    status, body = admin_request(port, "GET", "/healthz", timeout=10)
    assert status == 503 and "stalled" in body
    wait_for(lambda: admin_request(port, "GET", "/healthz")[0] == 200, timeout=10, step=0.2)


def test_relay_probe_and_status_commands(relay, tmp_path):
    port = admin_port(relay)
    cfg = tmp_path / "p.toml"
    cfg.write_text(toml_config([{"name": "x", "listen": "127.0.0.1:0",
                                 "backends": [{"name": "b", "address": "127.0.0.1:1"}]}],
                               admin_port=port))
    probe = subprocess.run([sys.executable, "-m", "relay", "probe", "-c", str(cfg)], cwd=REPO,
                           capture_output=True, text=True, timeout=30)
    assert probe.returncode == 0, probe.stderr
    status = subprocess.run([sys.executable, "-m", "relay", "status", "-c", str(cfg)], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith("relay ")
    assert any(line.startswith("listener x ") and "serving tier 0" in line for line in lines)
    header = next(line for line in lines if "BACKEND" in line)
    assert header.split() == ["BACKEND", "TIER", "ADDRESS", "STATE", "ADMIN", "SESSIONS",
                              "CHECKED", "LAST", "ERROR"]
    row = lines[lines.index(header) + 1].split()
    assert row[:5] == ["b", "0", "127.0.0.1:1", "up", "ready"]


def test_probe_fails_while_the_loop_is_stuck(relay, tmp_path):
    port = admin_port(relay)
    cfg = tmp_path / "p.toml"
    cfg.write_text(toml_config([{"name": "x", "listen": "127.0.0.1:0",
                                 "backends": [{"name": "b", "address": "127.0.0.1:1"}]}],
                               admin_port=port))
    block_the_loop(relay, 4.0)
    probe = subprocess.run([sys.executable, "-m", "relay", "probe", "-c", str(cfg)], cwd=REPO,
                           capture_output=True, text=True, timeout=30)
    assert probe.returncode == 1
    with socket.create_connection(("127.0.0.1", port)):
        pass  # the kernel still accepts; only the loop is stuck
