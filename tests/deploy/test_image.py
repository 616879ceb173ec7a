"""The container image: runs as non-root, relays, answers probes, drains on SIGTERM as PID 1
(relay itself, or with workers = 2 the supervisor, which reaps and forwards signals).

.ci/run builds it as relay:ci (see .ci/image.sh); RELAY_IMAGE names another one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import IN_CI, require_tool
from tests.support.redis import free_port
from tests.support.relayproc import admin_request, toml_config
from tests.support.wait import refuses, wait_for

IMAGE = os.environ.get("RELAY_IMAGE", "relay:ci")
GRACE = 3.0


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def image() -> str:
    require_tool("docker")
    found = docker("image", "inspect", IMAGE)
    if found.returncode != 0:
        message = f"image {IMAGE} not found (.ci/image.sh builds it): {found.stderr.strip()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return IMAGE


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def container(request, image, echo, tmp_path) -> Iterator[dict[str, object]]:
    port, admin = free_port(), free_port()
    config = tmp_path / "relay.toml"
    config.write_text(toml_config(
        [{"name": "smoke", "listen": f"127.0.0.1:{port}", "health": {"interval": "500ms"},
          "backends": [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}]}],
        runtime={"shutdown_grace": f"{GRACE}s", "log_format": "text", "workers": request.param},
        admin_port=admin))
    config.chmod(0o644)
    name = f"relay-smoke-{os.getpid()}"
    started = docker("run", "--detach", "--name", name, "--network", "host",
                     "--volume", f"{config}:/etc/relay/relay.toml:ro", image)
    assert started.returncode == 0, started.stderr
    try:
        def healthy() -> bool:
            try:
                return admin_request(admin, "GET", "/healthz", timeout=1)[0] == 200
            except OSError:
                return False

        wait_for(healthy, timeout=30, step=0.2, message=lambda: docker("logs", name).stderr)
        yield {"name": name, "port": port, "admin": admin}
    finally:
        docker("rm", "--force", name)


def test_image_relays_answers_probes_and_runs_as_non_root(container):
    name = str(container["name"])
    with socket.create_connection(("127.0.0.1", int(container["port"])), timeout=10) as conn:
        conn.sendall(b"through the container")
        assert conn.recv(100) == b"through the container"
    # /readyz turns 200 once every worker has said it is ready (a worker still importing
    # says 503 "workers: 1 of 2 running"), which may come a moment after /healthz
    wait_for(lambda: admin_request(int(container["admin"]), "GET", "/readyz")[0] == 200,
             timeout=30, step=0.2,
             message=lambda: str(admin_request(int(container["admin"]), "GET", "/readyz")))
    uid = docker("exec", name, "id", "-u")
    assert uid.returncode == 0 and uid.stdout.strip() == "10001"
    assert docker("inspect", "--format", "{{.Config.User}}", name).stdout.strip() == "10001:10001"
    # the HEALTHCHECK (relay probe, reading the mounted config's admin address) turns healthy
    deadline = time.monotonic() + 40
    while True:
        state = docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
        if state == "healthy":
            break
        assert state in ("starting", "healthy"), state
        assert time.monotonic() < deadline, f"health status still {state}"
        time.sleep(1)


def test_sigterm_to_pid_1_drains_then_exits_0_within_the_grace(container):
    name, port = str(container["name"]), int(container["port"])
    held = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        held.sendall(b"a")
        assert held.recv(1) == b"a"
        t0 = time.monotonic()
        assert docker("kill", "--signal", "TERM", name).returncode == 0
        wait_for(lambda: refuses(port), timeout=2,  # the listener closes at once
                 message="still accepting after SIGTERM")
        held.sendall(b"b")  # the open session goes on during the drain
        assert held.recv(1) == b"b"
        waited = docker("wait", name, timeout=GRACE + 30)
        elapsed = time.monotonic() - t0
        assert waited.stdout.strip() == "0", docker("logs", name).stderr
        assert GRACE - 0.5 <= elapsed <= GRACE + 10
    finally:
        held.close()


def test_the_image_runs_compiled_without_a_compiler(image):
    """The build stage compiles relay with mypyc; the runtime stage ships no gcc or headers."""
    version = docker("run", "--rm", "--entrypoint", "relay", image, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip().endswith("(compiled)"), version.stdout
    tools = docker("run", "--rm", "--entrypoint", "sh", image, "-c",
                   "command -v gcc cc || ls /usr/include/python3*/Python.h || echo none")
    assert tools.stdout.strip() == "none", tools.stdout
