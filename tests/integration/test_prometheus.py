"""A real Prometheus scrapes relay every second; the test asks Prometheus what it saw."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request

from tests.conftest import require_tool
from tests.support.named import Named
from tests.support.process import stop_process
from tests.support.redis import free_port


def query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        doc = json.load(response)
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def wait_value(port: int, expr: str, expected: float, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: list[dict] = []
    while time.monotonic() < deadline:
        try:
            last = query(port, expr)
        except OSError:
            last = []
        if last and float(last[0]["value"][1]) == expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"{expr} never became {expected}; last answer {last}")


def test_prometheus_sees_backend_up_sessions_and_the_backend_dying(tmp_path, start_relay):
    prometheus = require_tool("prometheus")
    backend = Named("primary")
    relay = start_relay([{"name": "db", "listen": "127.0.0.1:0",
                          "health": {"kind": "send_expect", "send": "PING\n", "expect": "+PONG",
                                     "interval": "200ms", "timeout": "100ms", "rise": 1,
                                     "fall": 1},
                          "backends": [{"name": "primary",
                                        "address": f"127.0.0.1:{backend.port}"}]}])
    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: relay\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{relay.admin_port}']\n")
    prom = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    held = socket.create_connection(("127.0.0.1", relay.port()))
    try:
        held.sendall(b"WHO\n")
        assert held.recv(100) == b"primary\n"
        wait_value(prom_port, 'relay_backend_up{listener="db",backend="primary"}', 1)
        wait_value(prom_port, 'relay_connections_active{listener="db",backend="primary"}', 1)
        wait_value(prom_port, 'up{job="relay"}', 1)
        held.close()
        backend.stop()  # the only backend dies: checks fail, relay marks it down
        wait_value(prom_port, 'relay_backend_up{listener="db",backend="primary"}', 0)
        wait_value(prom_port, 'relay_listener_active_tier{listener="db"}', -1)
    finally:
        held.close()
        backend.stop()
        stop_process(prom, grace=20)
