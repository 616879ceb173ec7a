"""The relay command as a user types it: exit codes and messages, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from relay import __version__
from relay.build import flavour

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=60, env=env)


def test_version():
    result = run("--version")
    assert result.returncode == 0
    # (compiled) with `make compiled`'s .so files in the tree, (pure) without (make pure)
    assert result.stdout.strip() == f"relay {__version__} ({flavour()})"


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
    # placed on its line like every other problem (the address is on line 6)
    assert f"relay: {cfg}:6: listener[0].backend[0].address: cannot resolve" in result.stderr


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


# --- files that parse but cannot run: `check` and `run` refuse them alike ----------------

_LISTENER = ('[[listener]]\nname = "a"\nlisten = "127.0.0.1:0"\n'
             '[[listener.backend]]\nname = "b"\naddress = "127.0.0.1:1"\n')


def _cannot_run(tmp_path: Path) -> list[tuple[str, str, str]]:
    """(id, file text, what the one line on stderr must say)."""
    empty = tmp_path / "empty-token"
    empty.write_text("  \n")
    return [
        ("workers_0", f"[runtime]\nworkers = 0\n{_LISTENER}", "runtime.workers"),
        ("workers_257", f"[runtime]\nworkers = 257\n{_LISTENER}", "runtime.workers"),
        ("workers_100000000", f"[runtime]\nworkers = 100000000\n{_LISTENER}", "runtime.workers"),
        ("admin_unresolvable", f'[admin]\nlisten = "no-such-host.invalid:9100"\n{_LISTENER}',
         "admin.listen"),
        ("deep_nesting", "a = " + "[" * 5000 + "]" * 5000 + f"\n{_LISTENER}", "nested too deeply"),
        ("token_file_missing", f'[admin]\ntoken_file = "{tmp_path}/no-such-token"\n{_LISTENER}',
         "admin.token_file"),
        ("token_file_directory", f'[admin]\ntoken_file = "{tmp_path}"\n{_LISTENER}',
         "admin.token_file"),
        ("token_file_empty", f'[admin]\ntoken_file = "{empty}"\n{_LISTENER}', "admin.token_file"),
    ]


CANNOT_RUN_IDS = ["workers_0", "workers_257", "workers_100000000", "admin_unresolvable",
                  "deep_nesting", "token_file_missing", "token_file_directory", "token_file_empty"]


def test_the_cannot_run_table_has_every_case(tmp_path):
    assert [case[0] for case in _cannot_run(tmp_path)] == CANNOT_RUN_IDS


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("case", CANNOT_RUN_IDS)
def test_a_file_that_cannot_run_exits_2_with_one_line_from_check_and_run(tmp_path, command, case):
    text, expected = {c[0]: c[1:] for c in _cannot_run(tmp_path)}[case]
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    result = run(command, "-c", str(cfg))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"relay: {cfg}") and expected in lines[0], lines
    assert "Traceback" not in result.stderr
