"""A real redis-server behind relay, driven by redis-cli and redis-benchmark."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import one_listener, require_tool
from tests.support.process import stop_process
from tests.support.wait import wait_listening


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_port(tmp_path) -> Iterator[int]:
    server = require_tool("redis-server")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, lambda: proc.poll() is None, "redis-server")
        yield port
    finally:
        stop_process(proc)


@pytest.mark.parametrize("splice", ["auto", "off"])
def test_redis_cli_round_trip_through_relay(redis_port, start_relay, splice):
    cli = require_tool("redis-cli")
    relay = start_relay(one_listener(redis_port), runtime={"splice": splice})
    port = str(relay.port())
    value = "v" * 100_000
    set_out = subprocess.run([cli, "-p", port, "SET", "k", value], capture_output=True,
                             text=True, timeout=30)
    assert set_out.stdout.strip() == "OK", set_out
    get_out = subprocess.run([cli, "-p", port, "GET", "k"], capture_output=True, text=True,
                             timeout=30)
    assert get_out.stdout.strip() == value


@pytest.mark.parametrize("keepalive", ["1", "0"])
def test_redis_benchmark_through_relay(redis_port, start_relay, keepalive):
    bench = require_tool("redis-benchmark")
    relay = start_relay(one_listener(redis_port, access_log=False))
    requests = "20000" if keepalive == "1" else "2000"
    result = subprocess.run(
        [bench, "-p", str(relay.port()), "-n", requests, "-c", "50", "-k", keepalive,
         "-t", "ping,set,get", "-q"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rates = re.findall(r"^(\S+): ([\d.]+) requests per second", result.stdout.replace("\r", "\n"),
                       re.MULTILINE)
    assert {name for name, _ in rates} >= {"PING_INLINE", "PING_MBULK", "SET", "GET"}, result.stdout
    assert all(float(rate) > 0 for _, rate in rates)
    assert relay.count("connect_failed") == 0
    assert relay.proc.poll() is None
