"""The README's first command: the demo starts backends and relay, and a client gets answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.wait import wait_listening

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_demo_serves_through_relay_from_the_primary(tmp_path, sigint):
    """`ignored`: what a non-interactive shell does to a background job (and some CI runners to
    every job); the demo must still stop on SIGINT, having installed its handler itself."""
    text = (REPO / "conf/relay.toml").read_text()
    ports = {p: _free_port() for p in ("6380", "7001", "7002", "9100")}
    for old, new in ports.items():
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    cfg = tmp_path / "demo.toml"
    cfg.write_text(text)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    demo = subprocess.Popen([sys.executable, "-m", "relay.demo", "-c", str(cfg)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own group: the demo and its relay
                            preexec_fn=_ignore_sigint if sigint == "ignored" else None)
    try:
        wait_listening(ports["6380"], lambda: demo.poll() is None, "the demo relay", timeout=15)
        with socket.create_connection(("127.0.0.1", ports["6380"]), timeout=5) as conn:
            reader = conn.makefile("rb")
            assert reader.readline() == b"hello from primary; type a line\n"
            conn.sendall(b"ping\n")
            assert reader.readline() == b"primary: ping\n"
            reader.close()
        # the hint for those without nc: the printed Python one-liner talks to relay too
        assert demo.stdout is not None
        lines = []
        while not any("Ctrl-C stops" in line for line in lines):
            line = demo.stdout.readline()
            assert line, "the demo ended its hints early"
            lines.append(line)
        assert any(line.strip().startswith("python3 -c") for line in lines), lines
        client = next(line.strip() for line in lines if line.strip().startswith("python3 -c"))
        client = client.replace("python3 ", f"{sys.executable} ", 1)
        done = subprocess.run(["sh", "-c", client], input="ping\n", capture_output=True,
                              text=True, timeout=20)
        assert done.stdout == "hello from primary; type a line\nprimary: ping\n", done
        assert any("/backends/demo/primary/maint" in line for line in lines)
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(20)
        except subprocess.TimeoutExpired:  # never leave them running, whatever failed
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
        demo.communicate()
    assert demo.returncode == 0
