"""PROXY protocol against a real HAProxy, both ways (issue 16).

Behind relay: HAProxy binds with ``accept-proxy`` and answers (http mode) with the address it
believes, ``%[src]:%[src_port]``, or logs it (tcp mode). In front of relay: HAProxy's servers
``send-proxy`` / ``send-proxy-v2`` from a source address relay trusts, or from one it does not.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.component.test_edge import connect_from, metric
from tests.conftest import require_tool
from tests.support.process import stop_process
from tests.support.servers import EchoServer
from tests.support.wait import wait_for


def _free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class HAProxy:
    """haproxy -db on a config written by the test; its stdout log lines collected."""

    def __init__(self, config: str, tmp_path: Path, ports: list[tuple[str, int]]) -> None:
        binary = require_tool("haproxy")
        path = tmp_path / f"haproxy-{ports[0][1]}.cfg"
        path.write_text(config)
        check = subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen([binary, "-db", "-f", str(path)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        for host, port in ports:
            wait_for(lambda h=host, p=port: _connects(h, p), timeout=10)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def stop(self) -> None:
        stop_process(self.proc)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _connects(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(1)
        try:
            s.connect((host, port))
        except OSError:
            return False
    return True


GLOBAL = """\
global
    log stdout format raw local0
defaults
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
"""


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Any]:
    started: list[HAProxy] = []

    def start(config: str, ports: list[tuple[str, int]]) -> HAProxy:
        proc = HAProxy(GLOBAL + config, tmp_path, ports)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def _http_get(sock: socket.socket) -> str:
    sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    return body.decode().strip()


def _src_answering_backend(haproxy: Any) -> int:
    port = _free_port()
    haproxy(f"""
frontend who
    mode http
    bind 127.0.0.1:{port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "%[src]:%[src_port]"
""", [("127.0.0.1", port)])
    return port


def _listener(backend_port: int, listen: str, **settings: object) -> list[dict[str, object]]:
    listener: dict[str, object] = {"name": "edge", "listen": listen, "health": {"kind": "none"},
                                   "backends": [{"name": "h", "address":
                                                 f"127.0.0.1:{backend_port}"}]}
    listener.update(settings)
    return [listener]


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_haproxy_behind_relay_sees_the_client(start_relay: Any, haproxy: Any, version: str,
                                              family: str) -> None:
    backend = _src_answering_backend(haproxy)
    listen, source, host = (("127.0.0.1:0", "127.0.0.5", "127.0.0.1") if family == "ipv4"
                            else ("[::1]:0", "::1", "::1"))
    relay = start_relay(_listener(backend, listen, proxy_protocol=version))
    with connect_from(source, relay.port(), host=host) as client:
        port = client.getsockname()[1]
        assert _http_get(client) == f"{source}:{port}"


def test_haproxy_tcp_mode_behind_relay_logs_the_client(start_relay: Any, haproxy: Any,
                                                       echo: EchoServer) -> None:
    port = _free_port()
    proxy = haproxy(f"""
frontend tcpin
    mode tcp
    bind 127.0.0.1:{port} accept-proxy
    log-format "client=%ci:%cp"
    default_backend echo
backend echo
    mode tcp
    server e 127.0.0.1:{echo.port}
""", [("127.0.0.1", port)])
    relay = start_relay(_listener(port, "127.0.0.1:0", proxy_protocol="v2"))
    with connect_from("127.0.0.6", relay.port()) as client:
        client_port = client.getsockname()[1]
        client.sendall(b"through haproxy\n")
        assert client.recv(100) == b"through haproxy\n"
    wait_for(lambda: f"client=127.0.0.6:{client_port}" in proxy.lines, timeout=10)


@pytest.mark.parametrize("send_proxy", [True, False])
def test_checks_with_send_proxy_against_haproxy(start_relay: Any, haproxy: Any,
                                                send_proxy: bool) -> None:
    backend = _src_answering_backend(haproxy)
    relay = start_relay(_listener(backend, "127.0.0.1:0", proxy_protocol="v2", health={
        "kind": "http", "path": "/", "interval": "100ms", "timeout": "1s", "rise": 1,
        "fall": 1, "initial": "down", "send_proxy": send_proxy}))
    result = "success" if send_proxy else "failure"
    wait_for(lambda: metric(relay, "relay_health_checks_total", 0.0, listener="edge", backend="h",
                            result=result) >= 3, timeout=15)
    assert metric(relay, "relay_backend_up", listener="edge", backend="h") == (
        1 if send_proxy else 0)
    other = "failure" if send_proxy else "success"
    assert metric(relay, "relay_health_checks_total", 0.0, listener="edge", backend="h",
                  result=other) == 0


def _haproxy_in_front(haproxy: Any, relay_port: int, send: str, source: str) -> int:
    port = _free_port()
    haproxy(f"""
frontend front
    mode tcp
    bind 127.0.0.1:{port}
    default_backend to_relay
backend to_relay
    mode tcp
    server relay 127.0.0.1:{relay_port} {send} source {source}
""", [("127.0.0.1", port)])
    return port


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_relay_behind_haproxy_sees_the_original_client(start_relay: Any, haproxy: Any,
                                                       echo: EchoServer, send: str) -> None:
    relay = start_relay(_listener(echo.port, "127.0.0.1:0", accept_proxy="any",
                                  trusted_proxies=["127.0.0.2/32"], access_log=True,
                                  max_connections_per_source=1))
    front = _haproxy_in_front(haproxy, relay.port(), send, "127.0.0.2")
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(connect_from("127.0.0.7", front))
        client_port = client.getsockname()[1]
        client.sendall(b"hello\n")
        assert client.recv(100) == b"hello\n"
        # the per-source limit counts the original client, not HAProxy's one address
        other = stack.enter_context(connect_from("127.0.0.8", front))
        other.sendall(b"other\n")
        assert other.recv(100) == b"other\n"
        again = stack.enter_context(connect_from("127.0.0.7", front))
        again.sendall(b"again\n")
        with contextlib.suppress(ConnectionResetError):
            assert again.recv(100) == b""  # HAProxy passes relay's reset on as a close
    assert metric(relay, "relay_connections_rejected_total", listener="edge",
                  reason="per_source") == 1
    access = relay.wait_event(lambda e: e.get("event") == "access"
                              and e.get("client") == f"127.0.0.7:{client_port}")
    assert access["bytes_up"] == len(b"hello\n")


def test_the_same_header_from_an_untrusted_address_is_not_believed(
        start_relay: Any, haproxy: Any, echo: EchoServer) -> None:
    relay = start_relay(_listener(echo.port, "127.0.0.1:0", accept_proxy="any",
                                  trusted_proxies=["127.0.0.2/32"], access_log=True))
    front = _haproxy_in_front(haproxy, relay.port(), "send-proxy", "127.0.0.3")
    with connect_from("127.0.0.7", front) as client:
        client.sendall(b"hello\n")
        # relay took HAProxy's header as the client's bytes: the echo sends it back
        echoed = b""
        deadline = time.monotonic() + 10
        while b"hello\n" not in echoed and time.monotonic() < deadline:
            echoed += client.recv(200)
        assert echoed.startswith(b"PROXY TCP4 127.0.0.7 ")
    access = relay.wait_event(lambda e: e.get("event") == "access")
    assert str(access["client"]).startswith("127.0.0.3:")
