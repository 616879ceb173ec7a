"""The README's first command: the demo starts backends and relay, and a client gets answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.wait import wait_listening

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_serves_through_relay_from_the_primary(tmp_path):
    text = (REPO / "conf/relay.toml").read_text()
    ports = {p: _free_port() for p in ("6380", "7001", "7002", "9100")}
    for old, new in ports.items():
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    cfg = tmp_path / "demo.toml"
    cfg.write_text(text)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    demo = subprocess.Popen([sys.executable, "-m", "relay.demo", "-c", str(cfg)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group: the demo and its relay
    try:
        wait_listening(ports["6380"], lambda: demo.poll() is None, "the demo relay", timeout=15)
        with socket.create_connection(("127.0.0.1", ports["6380"]), timeout=5) as conn:
            reader = conn.makefile("rb")
            assert reader.readline() == b"hello from primary; type a line\n"
            conn.sendall(b"ping\n")
            assert reader.readline() == b"primary: ping\n"
            reader.close()
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(20)
        except subprocess.TimeoutExpired:  # never leave them running, whatever failed
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
        demo.communicate()
    assert demo.returncode == 0
