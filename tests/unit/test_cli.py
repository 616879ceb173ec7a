"""The relay command as a user types it: exit codes and messages, never a traceback."""

import subprocess
import sys
from pathlib import Path

from relay import __version__

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=60, env=env)


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"relay {__version__}"


def test_check_example_config_prints_summary():
    result = run("check", "-c", "conf/relay.toml")
    assert result.returncode == 0, result.stderr
    assert "conf/relay.toml: OK" in result.stdout
    assert "listener demo" in result.stdout
    assert "tier 1" in result.stdout and "backup" in result.stdout


def test_check_defaults_to_relay_config_env(tmp_path):
    import os

    cfg = tmp_path / "x.toml"
    cfg.write_text((REPO / "conf/relay.toml").read_text())
    env = dict(os.environ, RELAY_CONFIG=str(cfg))
    result = run("check", env=env)
    assert result.returncode == 0, result.stderr
    assert f"{cfg}: OK" in result.stdout


def test_check_bad_file_exits_2_with_one_line_per_problem(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[runtime]\nworkerz = 2\n\n[[listener]]\nname = "a"\nlisten = "127.0.0.1:0"\n'
        '[listener.health]\nrise = 0\n'
        '[[listener.backend]]\nname = "b"\naddress = "127.0.0.1:99999"\n'
    )
    result = run("check", "-c", str(cfg))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert all(line.startswith(f"relay: {cfg}:") for line in lines)
    assert any("runtime.workerz" in line and "did you mean" in line for line in lines)
    assert any(f"{cfg}:8: listener[0].health.rise" in line for line in lines)
    assert any("listener[0].backend[0].address" in line for line in lines)
    assert "Traceback" not in result.stderr


def test_check_syntax_error_names_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[runtime]\nworkers = = 1\n')
    result = run("check", "-c", str(cfg))
    assert result.returncode == 2
    assert f"relay: {cfg}:2:" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_missing_file_exits_2(tmp_path):
    result = run("check", "-c", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml" in result.stderr and "Traceback" not in result.stderr


def test_check_unresolvable_backend_is_a_config_error(tmp_path):
    cfg = tmp_path / "dns.toml"
    cfg.write_text('[[listener]]\nname = "a"\nlisten = "127.0.0.1:0"\n'
                   '[[listener.backend]]\nname = "b"\naddress = "no-such-host.invalid:6379"\n')
    result = run("check", "-c", str(cfg))
    assert result.returncode == 2
    assert "listener[0].backend[0].address" in result.stderr
    assert "cannot resolve" in result.stderr


def test_run_with_bad_config_exits_2(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[[listener]]\n")
    result = run("run", "-c", str(cfg))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_probe_fails_when_nothing_answers(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'[admin]\nlisten = "127.0.0.1:{port}"\n[[listener]]\nname = "a"\n'
                   'listen = "127.0.0.1:0"\n[[listener.backend]]\nname = "b"\n'
                   'address = "127.0.0.1:1"\n')
    result = run("probe", "-c", str(cfg))
    assert result.returncode == 1
    assert "probe" in result.stderr
