"""Conformance of a Toxiproxy 2.x server with the API and data path relay's chaos tests use.

The reference is docs/toxiproxy-api.md (shared docs). The tests run against the Python
stand-in (tests/toxiproxy_server) in-process, or against a real Toxiproxy when TOXIPROXY_URL
is set. They use the unmodified toxiproxy-python client wherever it covers an operation, and
raw HTTP for status codes and bodies the client hides. Toxics are checked by their effect on
real bytes through real sockets to a small echo/sink server. Timing checks are lower bounds
(the machine is noisy); where a test must show that an effect is *gone*, it compares with
a configured delay many times longer than the work takes.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from toxiproxy import Proxy, Toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from tests.support.wait import wait_for
from tests.toxiproxy_server import ToxiproxyServer

TIMEOUT = 5.0  # guard on every blocking call: a broken server fails a test, never hangs it
SLACK = 0.005  # clock granularity allowed on lower bounds
REPO = Path(__file__).resolve().parents[2]


# --- helpers -----------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    content_type: str | None
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    """Raw HTTP to the Toxiproxy API."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 8474

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Reply:
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, response.getheader("Content-Type"), response.read())
        finally:
            conn.close()

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        reply = self.request(method, path, body)
        assert reply.status == status, reply
        return reply.json() if reply.body else None


class Backend:
    """A TCP server on 127.0.0.1 port 0: echoes what it reads (after ``delay`` seconds), or
    just records it (``echo=False``). Every read is recorded with its time."""

    def __init__(self, echo: bool = True, delay: float = 0.0) -> None:
        self.echo, self.delay = echo, delay
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.reads: list[tuple[float, bytes]] = []
        self.accepted = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                with self._lock:
                    self.reads.append((time.monotonic(), data))
                if self.echo:
                    if self.delay:
                        self._stop.wait(self.delay)
                    conn.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.remove(conn)
                conn.close()

    def received(self) -> bytes:
        with self._lock:
            return b"".join(data for _, data in self.reads)

    def wait_received(self, size: int) -> bytes:
        with contextlib.suppress(AssertionError):  # the caller compares what came
            wait_for(lambda: len(self.received()) >= size, timeout=TIMEOUT, step=0.01)
        return self.received()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(TIMEOUT)
        self.sock.close()


class Proxies:
    """Creates uniquely named proxies and deletes them all at the end of the test."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.names: list[str] = []

    def name(self) -> str:
        name = f"conformance_{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name

    def create(self, upstream: str, listen: str = "127.0.0.1:0", **fields: Any) -> dict[str, Any]:
        body = {"name": self.name(), "upstream": upstream, "listen": listen, **fields}
        proxy: dict[str, Any] = self.api.ok("POST", "/proxies", body, status=201)
        return proxy

    def add_toxic(self, proxy: dict[str, Any], type: str, stream: str = "downstream",
                  toxicity: float = 1.0, **attributes: int) -> dict[str, Any]:
        body = {"type": type, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        toxic: dict[str, Any] = self.api.ok("POST", f"/proxies/{proxy['name']}/toxics", body)
        return toxic

    def cleanup(self) -> None:
        for name in self.names:
            self.api.request("DELETE", f"/proxies/{name}")


def address(listen: str) -> tuple[str, int]:
    host, port = listen.rsplit(":", 1)
    return host.strip("[]"), int(port)


def connect(proxy: dict[str, Any] | Proxy) -> socket.socket:
    listen = proxy["listen"] if isinstance(proxy, dict) else proxy.listen
    return socket.create_connection(address(listen), timeout=TIMEOUT)


def recv_all(sock: socket.socket, limit: int = 1 << 24) -> bytes:
    """Everything until EOF."""
    data = bytearray()
    while len(data) < limit and (chunk := sock.recv(65536)):
        data += chunk
    return bytes(data)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size and (chunk := sock.recv(size - len(data))):
        data += chunk
    return bytes(data)


def roundtrip(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Seconds to echo ``payload`` through ``sock``; checks the bytes came back intact."""
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refused(listen: str) -> bool:
    try:
        socket.create_connection(address(listen), timeout=TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    return False


def assert_error(reply: Reply, status: int, message: str | None = None,
                 prefix: str | None = None) -> None:
    """An API error: text/plain body ``{"error": ..., "status": N}`` plus a newline."""
    assert reply.status == status, reply
    assert reply.content_type == "text/plain; charset=utf-8", reply
    assert reply.body.endswith(b"\n"), reply
    body = reply.json()
    assert body["status"] == status
    if message is not None:
        assert body["error"] == message
    if prefix is not None:
        assert body["error"].startswith(prefix), body


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def api(toxiproxy_url: str) -> Api:
    return Api(toxiproxy_url)


@pytest.fixture
def proxies(api: Api) -> Iterator[Proxies]:
    tracker = Proxies(api)
    yield tracker
    tracker.cleanup()


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


@pytest.fixture
def proxy(proxies: Proxies, backend: Backend) -> dict[str, Any]:
    """An enabled proxy in front of the echo backend."""
    return proxies.create(backend.address)


# --- /version, /proxies ------------------------------------------------------------------


def test_version_route_and_client(api: Api, toxiproxy: Toxiproxy) -> None:
    reply = api.request("GET", "/version")
    assert reply.status == 200
    assert reply.content_type is not None and reply.content_type.startswith("application/json")
    assert isinstance(reply.json()["version"], str)
    assert toxiproxy.running() is True
    version = toxiproxy.version()
    assert isinstance(version, bytes)
    assert json.loads(version) == reply.json()


def test_fresh_server_lists_no_proxies() -> None:
    with ToxiproxyServer("127.0.0.1", 0) as server:
        reply = Api(server.url).request("GET", "/proxies")
        assert (reply.status, reply.content_type, reply.body) == (200, "application/json", b"{}")


def test_create_proxy_returns_201_and_binds(api: Api, proxies: Proxies,
                                           backend: Backend) -> None:
    name = proxies.name()
    reply = api.request("POST", "/proxies",
                        {"name": name, "upstream": backend.address, "listen": "127.0.0.1:0"})
    assert reply.status == 201
    assert reply.content_type == "application/json"
    body = reply.json()
    host, port = address(body["listen"])
    assert (host, body["name"], body["upstream"]) == ("127.0.0.1", name, backend.address)
    assert port != 0
    assert body["enabled"] is True
    assert body["toxics"] == []
    assert api.ok("GET", "/proxies")[name] == body
    assert api.ok("GET", f"/proxies/{name}") == body


def test_create_duplicate_name_is_409(api: Api, proxies: Proxies, proxy: dict[str, Any],
                                      toxiproxy: Toxiproxy) -> None:
    reply = api.request("POST", "/proxies",
                        {"name": proxy["name"], "upstream": proxy["upstream"]})
    assert_error(reply, 409, "proxy already exists")
    assert reply.body == b'{"error":"proxy already exists","status":409}\n'
    with pytest.raises(ProxyExists):
        toxiproxy.create(upstream=proxy["upstream"], name=proxy["name"])


@pytest.mark.parametrize(("body", "message"), [
    ({"upstream": "127.0.0.1:1"}, "missing required field: name"),
    ({"name": "", "upstream": "127.0.0.1:1"}, "missing required field: name"),
    ({"name": "conformance_noupstream"}, "missing required field: upstream"),
    ({}, "missing required field: name"),
])
def test_create_missing_field_is_400(api: Api, body: dict[str, Any], message: str) -> None:
    assert_error(api.request("POST", "/proxies", body), 400, message)
    assert "conformance_noupstream" not in api.ok("GET", "/proxies")


@pytest.mark.parametrize("body", [
    "{not json", "", "[1, 2]", '{"name": 5, "upstream": "127.0.0.1:1"}',
    '{"name": "conformance_badtype", "upstream": "127.0.0.1:1", "enabled": "yes"}',
])
def test_create_bad_body_is_400(api: Api, body: str) -> None:
    assert_error(api.request("POST", "/proxies", body), 400, prefix="bad request body: ")
    assert "conformance_badtype" not in api.ok("GET", "/proxies")


def test_create_bind_failure_is_500_and_not_added(api: Api, proxies: Proxies,
                                                  backend: Backend) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        name = proxies.name()
        reply = api.request("POST", "/proxies", {"name": name, "upstream": backend.address,
                                                 "listen": f"127.0.0.1:{port}"})
        assert_error(reply, 500, f"listen tcp 127.0.0.1:{port}: bind: address already in use")
        assert_error(api.request("GET", f"/proxies/{name}"), 404, "proxy not found")


def test_create_disabled_binds_nothing(api: Api, proxies: Proxies, backend: Backend) -> None:
    listen = f"127.0.0.1:{free_port()}"
    proxy = proxies.create(backend.address, listen=listen, enabled=False)
    assert proxy["enabled"] is False
    assert proxy["listen"] == listen
    assert refused(listen)


def test_get_proxy_404(api: Api) -> None:
    assert_error(api.request("GET", "/proxies/conformance_missing"), 404, "proxy not found")


def test_client_create_list_get_and_destroy(toxiproxy: Toxiproxy, proxies: Proxies,
                                            backend: Backend, api: Api) -> None:
    name = proxies.name()
    created = toxiproxy.create(upstream=backend.address, name=name)
    assert isinstance(created, Proxy)
    assert (created.name, created.upstream, created.enabled) == (name, backend.address, True)
    assert address(created.listen)[1] != 0
    listed = toxiproxy.proxies()[name]
    assert (listed.listen, listed.enabled) == (created.listen, True)
    assert toxiproxy.get_proxy(name).listen == created.listen
    assert toxiproxy.get_proxy("conformance_missing") is None
    with contextlib.closing(connect(created)) as sock:
        assert roundtrip(sock) >= 0
    assert toxiproxy.destroy(name) is False  # the client only destroys Proxy objects
    assert toxiproxy.destroy(created) is True
    assert toxiproxy.get_proxy(name) is None
    with pytest.raises(NotFound):
        created.destroy()


def test_client_create_disabled(toxiproxy: Toxiproxy, proxies: Proxies,
                                backend: Backend) -> None:
    listen = f"127.0.0.1:{free_port()}"
    created = toxiproxy.create(upstream=backend.address, name=proxies.name(), listen=listen,
                               enabled=False)
    assert (created.enabled, created.listen) == (False, listen)
    assert refused(listen)


# --- update, enable/disable, delete ------------------------------------------------------


def test_update_upstream_keeps_omitted_fields(api: Api, proxies: Proxies,
                                              proxy: dict[str, Any]) -> None:
    other = Backend()
    try:
        with contextlib.closing(connect(proxy)) as sock:
            roundtrip(sock)
            updated = api.ok("POST", f"/proxies/{proxy['name']}", {"upstream": other.address})
            assert updated["upstream"] == other.address
            assert (updated["listen"], updated["enabled"]) == (proxy["listen"], True)
            assert recv_all(sock) == b""  # a changed upstream drops open connections
        with contextlib.closing(connect(proxy)) as sock:
            roundtrip(sock, b"to the other one")
        assert other.received() == b"to the other one"
        patched = api.ok("PATCH", f"/proxies/{proxy['name']}", {})
        assert patched == updated
    finally:
        other.close()


def test_update_errors(api: Api, proxy: dict[str, Any]) -> None:
    assert_error(api.request("POST", "/proxies/conformance_missing", {"enabled": False}),
                 404, "proxy not found")
    assert_error(api.request("PATCH", "/proxies/conformance_missing", {}), 404,
                 "proxy not found")
    assert_error(api.request("POST", f"/proxies/{proxy['name']}", "{oops"), 400,
                 prefix="bad request body: ")
    assert_error(api.request("POST", f"/proxies/{proxy['name']}", {"enabled": "no"}), 400,
                 prefix="bad request body: ")
    assert api.ok("GET", f"/proxies/{proxy['name']}")["enabled"] is True


def test_update_listen_bind_failure_is_500_and_leaves_it_disabled(
        api: Api, proxy: dict[str, Any]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        reply = api.request("POST", f"/proxies/{proxy['name']}", {"listen": listen})
        assert_error(reply, 500, f"listen tcp {listen}: bind: address already in use")
    after = api.ok("GET", f"/proxies/{proxy['name']}")
    assert (after["listen"], after["enabled"]) == (listen, False)


def test_disable_refuses_and_drops_then_enable_rebinds_same_port(
        api: Api, proxy: dict[str, Any]) -> None:
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock)
        disabled = api.ok("POST", f"/proxies/{proxy['name']}", {"enabled": False})
        assert (disabled["enabled"], disabled["listen"]) == (False, proxy["listen"])
        assert recv_all(sock) == b""
    assert refused(proxy["listen"])
    enabled = api.ok("PATCH", f"/proxies/{proxy['name']}", {"enabled": True})
    assert (enabled["enabled"], enabled["listen"]) == (True, proxy["listen"])
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock)


def test_client_disable_enable_and_down(toxiproxy: Toxiproxy, proxy: dict[str, Any],
                                        api: Api) -> None:
    client_proxy = toxiproxy.get_proxy(proxy["name"])
    client_proxy.add_toxic(type="latency", attributes={"latency": 1})
    assert client_proxy.disable() is None
    assert client_proxy.enabled is False
    assert refused(proxy["listen"])
    assert toxiproxy.get_proxy(proxy["name"]).enabled is False
    client_proxy.enable()
    assert client_proxy.enabled is True
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock)
    with client_proxy.down():
        assert refused(proxy["listen"])
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock)
    assert list(client_proxy.toxics()) == ["latency_downstream"]  # toxics survive disable


def test_delete_proxy_is_204_and_drops_connections(api: Api, proxy: dict[str, Any]) -> None:
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock)
        reply = api.request("DELETE", f"/proxies/{proxy['name']}")
        assert (reply.status, reply.body) == (204, b"")
        assert recv_all(sock) == b""
    assert refused(proxy["listen"])
    assert_error(api.request("DELETE", f"/proxies/{proxy['name']}"), 404, "proxy not found")


# --- data path without toxics ------------------------------------------------------------


def test_bytes_pass_unchanged(proxy: dict[str, Any]) -> None:
    payload = random.randbytes(1 << 20)
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock, b"small")
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        try:
            assert recv_exactly(sock, len(payload)) == payload
        finally:
            sender.join(TIMEOUT)


def test_dead_upstream_accepts_then_closes(proxies: Proxies) -> None:
    proxy = proxies.create(f"127.0.0.1:{free_port()}")
    with contextlib.closing(connect(proxy)) as sock:
        assert recv_all(sock) == b""
    with contextlib.closing(connect(proxy)) as sock:  # the proxy is still up
        assert recv_all(sock) == b""


def test_client_shutdown_write_tears_the_connection_down(proxies: Proxies) -> None:
    slow_echo = Backend(delay=0.3)
    try:
        proxy = proxies.create(slow_echo.address)
        with contextlib.closing(connect(proxy)) as sock:
            sock.sendall(b"hello")
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock) == b""  # no half-close: the late reply is lost
        assert slow_echo.wait_received(5) == b"hello"
    finally:
        slow_echo.close()


# --- toxics API --------------------------------------------------------------------------


TOXIC_ATTRIBUTES = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
    "noop": {},
}


@pytest.mark.parametrize("toxic_type", sorted(TOXIC_ATTRIBUTES))
def test_toxic_defaults(api: Api, proxy: dict[str, Any], toxic_type: str) -> None:
    reply = api.request("POST", f"/proxies/{proxy['name']}/toxics", {"type": toxic_type})
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert reply.json() == {
        "name": f"{toxic_type}_downstream", "type": toxic_type, "stream": "downstream",
        "toxicity": 1, "attributes": TOXIC_ATTRIBUTES[toxic_type]}


def test_toxic_fields_as_sent(api: Api, proxy: dict[str, Any]) -> None:
    path = f"/proxies/{proxy['name']}/toxics"
    toxic = api.ok("POST", path, {"type": "latency", "stream": "UPSTREAM", "toxicity": 0,
                                  "attributes": {"latency": 5, "unknown": 1}, "extra": True})
    assert toxic == {"name": "latency_UPSTREAM", "type": "latency", "stream": "UPSTREAM",
                     "toxicity": 0, "attributes": {"latency": 5, "jitter": 0}}
    named = api.ok("POST", path, {"type": "limit_data", "name": "cap", "toxicity": 0.5,
                                  "attributes": {"bytes": 9}})
    assert (named["name"], named["toxicity"], named["attributes"]) == ("cap", 0.5, {"bytes": 9})


def test_toxic_errors(api: Api, proxy: dict[str, Any]) -> None:
    path = f"/proxies/{proxy['name']}/toxics"
    assert_error(api.request("POST", path, {"type": "latency", "stream": "sideways"}), 400,
                 "stream was invalid, can be either upstream or downstream")
    assert_error(api.request("POST", path, {"type": "nope"}), 400, "invalid toxic type")
    assert_error(api.request("POST", path, {}), 400, "invalid toxic type")
    assert_error(api.request("POST", path, "{nope"), 400, prefix="bad request body: ")
    assert_error(api.request("POST", path, {"type": "latency", "attributes": {"latency": "1"}}),
                 400, prefix="bad request body: ")
    assert_error(api.request("POST", path, {"type": "latency", "attributes": {"latency": 1.5}}),
                 400, prefix="bad request body: ")
    api.ok("POST", path, {"type": "latency", "name": "shared", "stream": "upstream"})
    assert_error(api.request("POST", path, {"type": "latency", "name": "shared",
                                            "stream": "upstream"}), 409, "toxic already exists")
    assert_error(api.request("POST", path, {"type": "bandwidth", "name": "shared"}), 409,
                 "toxic already exists")  # names are unique across both streams
    assert [toxic["name"] for toxic in api.ok("GET", path)] == ["shared"]
    missing = "/proxies/conformance_missing/toxics"
    assert_error(api.request("POST", missing, {"type": "latency"}), 404, "proxy not found")
    assert_error(api.request("GET", missing), 404, "proxy not found")
    assert_error(api.request("GET", f"{missing}/shared"), 404, "proxy not found")
    assert_error(api.request("GET", f"{path}/nope"), 404, "toxic not found")


def test_toxic_list_order(api: Api, proxies: Proxies, proxy: dict[str, Any]) -> None:
    path = f"/proxies/{proxy['name']}/toxics"
    assert api.ok("GET", path) == []
    for name, stream in [("a", "downstream"), ("b", "upstream"), ("c", "downstream"),
                         ("d", "upstream")]:
        api.ok("POST", path, {"type": "noop", "name": name, "stream": stream})
    assert [toxic["name"] for toxic in api.ok("GET", path)] == ["b", "d", "a", "c"]
    assert [t["name"] for t in api.ok("GET", f"/proxies/{proxy['name']}")["toxics"]] == \
        ["b", "d", "a", "c"]


def test_toxic_get_update_delete(api: Api, proxy: dict[str, Any]) -> None:
    path = f"/proxies/{proxy['name']}/toxics"
    created = api.ok("POST", path, {"type": "latency", "toxicity": 0.5,
                                    "attributes": {"latency": 100, "jitter": 3}})
    toxic = f"{path}/latency_downstream"
    assert api.ok("GET", toxic) == created
    updated = api.ok("POST", toxic, {"attributes": {"latency": 7}})
    assert updated["attributes"] == {"latency": 7, "jitter": 3}
    assert updated["toxicity"] == 0.5
    updated = api.ok("PATCH", toxic, {"toxicity": 1, "name": "renamed", "stream": "upstream",
                                      "type": "bandwidth"})
    assert updated == {**created, "toxicity": 1, "attributes": {"latency": 7, "jitter": 3}}
    assert api.ok("GET", toxic) == updated
    assert_error(api.request("POST", toxic, "{oops"), 400, prefix="bad request body: ")
    assert_error(api.request("POST", toxic, {"attributes": {"jitter": "x"}}), 400,
                 prefix="bad request body: ")
    assert_error(api.request("PATCH", f"{path}/nope", {}), 404, "toxic not found")
    assert_error(api.request("POST", "/proxies/conformance_missing/toxics/latency_downstream",
                             {}), 404, "proxy not found")
    reply = api.request("DELETE", toxic)
    assert (reply.status, reply.body) == (204, b"")
    assert_error(api.request("DELETE", toxic), 404, "toxic not found")
    assert_error(api.request("DELETE", "/proxies/conformance_missing/toxics/x"), 404,
                 "proxy not found")
    assert api.ok("GET", path) == []


def test_client_toxic_api(toxiproxy: Toxiproxy, proxy: dict[str, Any]) -> None:
    client_proxy = toxiproxy.get_proxy(proxy["name"])
    assert client_proxy.add_toxic(type="latency", attributes={"latency": 10}) is None
    client_proxy.add_toxic(type="bandwidth", stream="upstream", name="bw", toxicity=0.25,
                           attributes={"rate": 1000})
    toxics = client_proxy.toxics()
    assert sorted(toxics) == ["bw", "latency_downstream"]
    latency = client_proxy.get_toxic("latency_downstream")
    assert (latency.type, latency.stream, latency.toxicity) == ("latency", "downstream", 1)
    assert latency.attributes == {"latency": 10, "jitter": 0}
    bandwidth = toxics["bw"]
    assert (bandwidth.stream, bandwidth.toxicity, bandwidth.attributes) == \
        ("upstream", 0.25, {"rate": 1000})
    with pytest.raises(ProxyExists):
        client_proxy.add_toxic(type="latency")
    with pytest.raises(InvalidToxic):
        client_proxy.add_toxic(type="nope")
    with pytest.raises(InvalidToxic):
        client_proxy.add_toxic(type="latency", stream="sideways", name="x")
    assert client_proxy.destroy_toxic("bw") is True
    assert client_proxy.get_toxic("bw") is None
    with pytest.raises(NotFound):
        client_proxy.destroy_toxic("bw")


# --- /reset and /populate ----------------------------------------------------------------


def test_reset_enables_all_and_removes_toxics(api: Api, toxiproxy: Toxiproxy,
                                              proxies: Proxies, backend: Backend) -> None:
    first = proxies.create(backend.address)
    second = proxies.create(backend.address)
    proxies.add_toxic(first, "latency", latency=1000)
    proxies.add_toxic(second, "timeout", stream="upstream")
    api.ok("POST", f"/proxies/{second['name']}", {"enabled": False})
    reply = api.request("POST", "/reset")
    assert (reply.status, reply.body) == (204, b"")
    for before in (first, second):
        after = api.ok("GET", f"/proxies/{before['name']}")
        assert (after["enabled"], after["listen"], after["toxics"]) == \
            (True, before["listen"], [])
        with contextlib.closing(connect(after)) as sock:
            roundtrip(sock)
    proxies.add_toxic(first, "latency")
    assert toxiproxy.reset() is True
    assert api.ok("GET", f"/proxies/{first['name']}/toxics") == []


def test_populate(api: Api, proxies: Proxies, backend: Backend) -> None:
    one, two = proxies.name(), proxies.name()
    reply = api.request("POST", "/populate", [
        {"name": one, "upstream": backend.address, "listen": "127.0.0.1:0"},
        {"name": two, "upstream": backend.address, "listen": "127.0.0.1:0", "enabled": False},
    ])
    assert reply.status == 201
    assert reply.content_type == "application/json"
    created = reply.json()["proxies"]
    assert [(p["name"], p["enabled"]) for p in created] == [(one, True), (two, False)]
    api.ok("POST", f"/proxies/{one}/toxics", {"type": "latency"})
    other = f"127.0.0.1:{free_port()}"
    again = api.ok("POST", "/populate", [
        {"name": one, "upstream": backend.address, "listen": created[0]["listen"]},
        {"name": two, "upstream": other, "listen": "127.0.0.1:0"},
    ], status=201)["proxies"]
    assert again[0] == api.ok("GET", f"/proxies/{one}")  # same upstream and listen: untouched
    assert [t["name"] for t in again[0]["toxics"]] == ["latency_downstream"]
    assert (again[1]["upstream"], again[1]["enabled"]) == (other, True)  # replaced
    assert api.ok("POST", "/populate", [], status=201) == {"proxies": None}


def test_populate_errors(api: Api, proxies: Proxies, backend: Backend) -> None:
    name = proxies.name()
    reply = api.request("POST", "/populate", [{"name": name, "upstream": backend.address},
                                              {"upstream": backend.address}])
    assert reply.status == 400
    assert reply.json() == {"error": "missing required field: name at proxy 2",
                            "status": 400, "proxies": None}
    assert_error(api.request("GET", f"/proxies/{name}"), 404, "proxy not found")
    reply = api.request("POST", "/populate", [{"name": name}])
    assert (reply.status, reply.json()["error"]) == (400, "missing required field: upstream "
                                                          "at proxy 1")
    reply = api.request("POST", "/populate", {"name": name, "upstream": backend.address})
    assert reply.status == 400
    assert reply.json()["error"].startswith("bad request body: ")


def test_client_populate(toxiproxy: Toxiproxy, proxies: Proxies, backend: Backend) -> None:
    name = proxies.name()
    spec = [{"name": name, "upstream": backend.address, "listen": "127.0.0.1:0"}]
    first = toxiproxy.populate(spec)
    assert [p.name for p in first] == [name]
    with contextlib.closing(connect(first[0])) as sock:
        roundtrip(sock)
    # The client compares listen as text: "127.0.0.1:0" never matches, so it is recreated.
    assert [p.name for p in toxiproxy.populate(spec)] == [name]
    same = [{"name": name, "upstream": backend.address,
             "listen": toxiproxy.get_proxy(name).listen}]
    assert toxiproxy.populate(same) == []


# --- routing -----------------------------------------------------------------------------


def test_unmatched_paths_and_methods(api: Api) -> None:
    for path in ("/nope", "/proxies/", "/version/", "/proxies/a/toxics/b/c"):
        reply = api.request("GET", path)
        assert (reply.status, reply.body) == (404, b"404 page not found\n"), path
        assert reply.content_type == "text/plain; charset=utf-8"
    for method, path in [("DELETE", "/version"), ("PUT", "/proxies"), ("GET", "/reset"),
                         ("GET", "/populate"), ("PUT", "/proxies/x/toxics")]:
        reply = api.request(method, path)
        assert (reply.status, reply.body) == (405, b""), (method, path)


def test_browsers_are_refused(api: Api) -> None:
    reply = api.request("GET", "/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert reply.status == 403


# --- toxics on real bytes ----------------------------------------------------------------


def test_latency_delays_each_way_and_stacks(proxies: Proxies, proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "latency", latency=200)
    with contextlib.closing(connect(proxy)) as sock:
        assert roundtrip(sock) >= 0.2 - SLACK
    proxies.add_toxic(proxy, "latency", stream="upstream", latency=100)
    with contextlib.closing(connect(proxy)) as sock:
        assert roundtrip(sock) >= 0.3 - SLACK
        assert roundtrip(sock, b"x" * 100_000) >= 0.3 - SLACK


def test_latency_jitter_stays_in_range(proxies: Proxies, proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "latency", latency=100, jitter=50)
    with contextlib.closing(connect(proxy)) as sock:
        for _ in range(3):
            assert roundtrip(sock) >= 0.05 - SLACK


def test_latency_joins_open_connections_and_removal_flushes(
        api: Api, proxies: Proxies, proxy: dict[str, Any]) -> None:
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock)
        proxies.add_toxic(proxy, "latency", latency=300)
        assert roundtrip(sock) >= 0.3 - SLACK
        api.ok("POST", f"/proxies/{proxy['name']}/toxics/latency_downstream",
               {"attributes": {"latency": 2000}})
        start = time.monotonic()
        sock.sendall(b"held")
        time.sleep(0.1)
        reply = api.request("DELETE", f"/proxies/{proxy['name']}/toxics/latency_downstream")
        assert reply.status == 204
        assert recv_exactly(sock, 4) == b"held"
        assert time.monotonic() - start < 2.0  # the 2 s wait was cut short by the removal
        assert roundtrip(sock) < 2.0


def test_bandwidth_limits_rate(proxies: Proxies, proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "bandwidth", rate=100)  # 100 KB/s
    payload = random.randbytes(50_000)
    with contextlib.closing(connect(proxy)) as sock:
        assert roundtrip(sock, payload) >= 0.5 - 0.05


def test_bandwidth_upstream_limits_rate(proxies: Proxies) -> None:
    sink = Backend(echo=False)
    try:
        proxy = proxies.create(sink.address)
        proxies.add_toxic(proxy, "bandwidth", stream="upstream", rate=50)
        payload = random.randbytes(20_000)
        with contextlib.closing(connect(proxy)) as sock:
            start = time.monotonic()
            sock.sendall(payload)
            assert sink.wait_received(len(payload)) == payload
            assert sink.reads[-1][0] - start >= 0.4 - 0.05
    finally:
        sink.close()


def test_slow_close_delays_the_close(proxies: Proxies, proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "slow_close", delay=300)
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock)  # data still passes
        start = time.monotonic()
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b""
        assert time.monotonic() - start >= 0.3 - SLACK


def test_timeout_swallows_data_and_closes_after_timeout(proxies: Proxies,
                                                        proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "timeout", timeout=300)
    with contextlib.closing(connect(proxy)) as sock:
        start = time.monotonic()
        sock.sendall(b"swallowed")
        assert recv_all(sock) == b""
        assert time.monotonic() - start >= 0.3 - SLACK


def test_timeout_zero_swallows_until_removed(api: Api, proxies: Proxies,
                                             backend: Backend, proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "timeout", stream="upstream", timeout=0)
    with contextlib.closing(connect(proxy)) as sock:
        sock.sendall(b"swallowed")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert backend.received() == b""  # never reached the server
        sock.settimeout(TIMEOUT)
        reply = api.request("DELETE", f"/proxies/{proxy['name']}/toxics/timeout_upstream")
        assert reply.status == 204
        assert recv_all(sock) == b""  # removing a timeout closes its connections
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock)


def test_reset_peer_sends_rst(proxies: Proxies, proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "reset_peer", timeout=100)
    with contextlib.closing(connect(proxy)) as sock:
        start = time.monotonic()
        sock.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            recv_all(sock)
        assert time.monotonic() - start >= 0.1 - SLACK


def test_reset_peer_added_later_closes_plainly(proxies: Proxies, proxy: dict[str, Any]) -> None:
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock)
        proxies.add_toxic(proxy, "reset_peer")
        sock.sendall(b"x")
        assert recv_all(sock) == b""


def test_limit_data_closes_after_exactly_n_bytes(proxies: Proxies,
                                                 proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "limit_data", bytes=5)
    with contextlib.closing(connect(proxy)) as sock:
        sock.sendall(b"0123456789")
        assert recv_all(sock) == b"01234"


def test_limit_data_upstream_and_count_survives_update(
        api: Api, proxies: Proxies, proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "limit_data", bytes=10)
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock, b"abcdef")
        api.ok("POST", f"/proxies/{proxy['name']}/toxics/limit_data_downstream",
               {"attributes": {"bytes": 8}})
        sock.sendall(b"ghijkl")
        assert recv_all(sock) == b"gh"
    sink = Backend(echo=False)
    try:
        upstream = proxies.create(sink.address)
        proxies.add_toxic(upstream, "limit_data", stream="upstream", bytes=3)
        with contextlib.closing(connect(upstream)) as sock:
            sock.sendall(b"abcdef")
            assert recv_all(sock) == b""
        assert sink.wait_received(3) == b"abc"
    finally:
        sink.close()


def test_slicer_slices_and_keeps_bytes(proxies: Proxies) -> None:
    sink = Backend(echo=False)
    try:
        proxy = proxies.create(sink.address)
        proxies.add_toxic(proxy, "slicer", stream="upstream", average_size=10,
                          size_variation=0, delay=20_000)
        payload = random.randbytes(160)  # 16 pieces of 10 bytes, 20 ms apart
        with contextlib.closing(connect(proxy)) as sock:
            start = time.monotonic()
            sock.sendall(payload)
            assert sink.wait_received(len(payload)) == payload
        assert len(sink.reads) >= 2
        assert sink.reads[-1][0] - start >= 15 * 0.02 - SLACK
    finally:
        sink.close()


def test_slicer_with_variation_keeps_bytes(proxies: Proxies, proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "slicer", average_size=100, size_variation=40, delay=10)
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock, random.randbytes(20_000))


def test_noop_passes_data(proxies: Proxies, proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "noop")
    proxies.add_toxic(proxy, "noop", stream="upstream")
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock, b"unchanged")


# The end of a stream (EOF) queues behind the data: each toxic first passes on what it holds,
# then the close. Checked with a payload far larger than one 32 KiB chunk, one toxic at a time.
# Only the direction that ends is checked: a client's SHUT_WR still tears the whole connection
# down (no half-close, see test_client_shutdown_write_tears_the_connection_down).
DRAIN_PAYLOAD = 512 * 1024
DRAINING_TOXICS = {
    "latency": {"latency": 300},  # everything read is still held when the EOF comes in
    "bandwidth": {"rate": 2048},  # KB/s: 512 KiB take >= 0.256 s
    "slicer": {"average_size": 100, "size_variation": 50, "delay": 0},
}


def _digest(data: bytes) -> str:
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}"


@contextlib.contextmanager
def _sender(payload: bytes) -> Iterator[str]:
    """A server on 127.0.0.1 port 0 that writes ``payload`` to its first client, then closes."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(TIMEOUT)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                conn.sendall(payload)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        thread.join(TIMEOUT + 1)
        server.close()


@pytest.mark.parametrize("toxic_type", sorted(DRAINING_TOXICS))
def test_downstream_toxic_delivers_what_it_holds_before_the_server_close(
        proxies: Proxies, toxic_type: str) -> None:
    payload = random.randbytes(DRAIN_PAYLOAD)
    with _sender(payload) as upstream:
        proxy = proxies.create(upstream)
        proxies.add_toxic(proxy, toxic_type, **DRAINING_TOXICS[toxic_type])
        start = time.monotonic()
        with contextlib.closing(connect(proxy)) as sock:
            got = recv_all(sock)
        took = time.monotonic() - start
    assert _digest(got) == _digest(payload)
    if toxic_type == "latency":
        assert took >= 0.3 - SLACK
    if toxic_type == "bandwidth":
        assert took >= DRAIN_PAYLOAD / 2_048_000 * 0.8


@pytest.mark.parametrize("toxic_type", sorted(DRAINING_TOXICS))
def test_upstream_toxic_delivers_what_it_holds_before_the_client_eof(
        proxies: Proxies, toxic_type: str) -> None:
    sink = Backend(echo=False)
    try:
        proxy = proxies.create(sink.address)
        proxies.add_toxic(proxy, toxic_type, stream="upstream", **DRAINING_TOXICS[toxic_type])
        payload = random.randbytes(DRAIN_PAYLOAD)
        with contextlib.closing(connect(proxy)) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock) == b""  # closed once the sink got everything
            # every byte reached the sink before the proxy closed the sink's connection
            assert _digest(sink.wait_received(len(payload))) == _digest(payload)
    finally:
        sink.close()


def _echoes(proxy: dict[str, Any]) -> bool:
    """Whether one connection echoes one byte (False: closed by limit_data 0)."""
    with contextlib.closing(connect(proxy)) as sock:
        sock.sendall(b"x")
        return recv_all(sock, limit=1) == b"x"


def test_toxicity_zero_never_applies(proxies: Proxies, proxy: dict[str, Any]) -> None:
    toxic = proxies.add_toxic(proxy, "limit_data", toxicity=0, bytes=0)
    assert toxic["toxicity"] == 0
    assert all(_echoes(proxy) for _ in range(20))


def test_toxicity_one_always_applies(proxies: Proxies, proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "limit_data", toxicity=1, bytes=0)
    assert not any(_echoes(proxy) for _ in range(20))


def test_toxicity_half_applies_to_about_half(proxies: Proxies, proxy: dict[str, Any]) -> None:
    proxies.add_toxic(proxy, "limit_data", toxicity=0.5, bytes=0)
    hit = sum(not _echoes(proxy) for _ in range(100))
    assert 15 <= hit <= 85  # binomial(100, 0.5): outside this about once in 10**11 runs


# --- an empty listen, and toxic updates, as Go decodes them -----------------------------


def assert_wildcard(listen: str) -> int:
    """``listen`` is what Go reports for a wildcard bind (one dual-stack socket): ``[::]:P``,
    P a real port, reachable over both 127.0.0.1 and ::1. Returns P."""
    host, port = address(listen)
    assert (listen.startswith("[::]:"), host, port != 0) == (True, "::", True), listen
    for ip in ("127.0.0.1", "::1"):
        with contextlib.closing(socket.create_connection((ip, port), timeout=TIMEOUT)) as sock:
            roundtrip(sock)
    return port


@pytest.mark.parametrize("listen", [None, "", ":", ":0", "0.0.0.0:0", "[::]:0",
                                    "[::ffff:0.0.0.0]:0"])
def test_create_with_empty_or_wildcard_listen_binds_a_random_port(
        api: Api, proxies: Proxies, backend: Backend, listen: str | None) -> None:
    body = {"name": proxies.name(), "upstream": backend.address}
    if listen is not None:
        body["listen"] = listen
    reply = api.request("POST", "/proxies", body)
    assert reply.status == 201, reply
    created = reply.json()
    assert created["enabled"] is True
    assert_wildcard(created["listen"])
    assert api.ok("GET", f"/proxies/{body['name']}") == created


def test_ipv4_mapped_listen_is_the_ipv4_address(proxies: Proxies, backend: Backend) -> None:
    created = proxies.create(backend.address, listen="[::ffff:127.0.0.1]:0")
    host, port = address(created["listen"])
    assert (host, port != 0) == ("127.0.0.1", True)
    with contextlib.closing(connect(created)) as sock:
        roundtrip(sock)


def test_update_to_empty_listen_rebinds_a_random_port(api: Api, proxy: dict[str, Any]) -> None:
    path = f"/proxies/{proxy['name']}"
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock)
        moved = api.ok("PATCH", path, {"listen": ""})
        assert recv_all(sock) == b""  # a changed listen drops open connections
    assert moved["enabled"] is True
    port = assert_wildcard(moved["listen"])
    assert refused(proxy["listen"])
    # Disabled and enabled again, it keeps that port; the same listen again changes nothing.
    assert api.ok("PATCH", path, {"enabled": False})["listen"] == moved["listen"]
    assert api.ok("POST", path, {"enabled": True})["listen"] == moved["listen"]
    assert api.ok("PATCH", path, {"listen": f"[::]:{port}"}) == moved


def test_disabled_proxy_without_listen_binds_on_enable_and_on_reset(
        api: Api, proxies: Proxies, backend: Backend) -> None:
    first = proxies.create(backend.address, listen="", enabled=False)
    second = proxies.create(backend.address, listen="", enabled=False)
    assert (first["listen"], first["enabled"]) == ("", False)  # nothing bound: echoed as sent
    enabled = api.ok("PATCH", f"/proxies/{first['name']}", {"enabled": True})
    assert_wildcard(enabled["listen"])
    reply = api.request("POST", "/reset")
    assert (reply.status, reply.body) == (204, b"")
    after = api.ok("GET", f"/proxies/{second['name']}")
    assert after["enabled"] is True
    assert_wildcard(after["listen"])
    assert api.ok("GET", f"/proxies/{first['name']}") == enabled


def test_populate_without_listen_binds_a_random_port(api: Api, proxies: Proxies,
                                                     backend: Backend) -> None:
    name = proxies.name()
    entry = {"name": name, "upstream": backend.address}
    created = api.ok("POST", "/populate", [entry], status=201)["proxies"][0]
    assert_wildcard(created["listen"])
    api.ok("POST", f"/proxies/{name}/toxics", {"type": "noop"})
    # No listen resolves to ":0", which never equals a bound address: replaced, new port.
    again = api.ok("POST", "/populate", [entry], status=201)["proxies"][0]
    assert again["toxics"] == []
    assert_wildcard(again["listen"])
    # The address it reports is kept as it is.
    api.ok("POST", f"/proxies/{name}/toxics", {"type": "noop"})
    kept = api.ok("POST", "/populate", [{**entry, "listen": again["listen"]}],
                  status=201)["proxies"][0]
    assert (kept["listen"], len(kept["toxics"])) == (again["listen"], 1)


def test_toxic_update_with_a_bad_attribute_stores_the_good_ones(
        api: Api, proxy: dict[str, Any]) -> None:
    path = f"/proxies/{proxy['name']}/toxics"
    api.ok("POST", path, {"type": "latency", "toxicity": 1,
                          "attributes": {"latency": 0, "jitter": 0}})
    toxic = f"{path}/latency_downstream"
    with contextlib.closing(connect(proxy)) as sock:
        roundtrip(sock)
        reply = api.request("PATCH", toxic, {"attributes": {"jitter": "x", "latency": 300},
                                             "toxicity": 0.5})
        assert_error(reply, 400, "bad request body: json: cannot unmarshal string into Go "
                                 "struct field LatencyToxic.attributes.jitter of type int64")
        after = api.ok("GET", toxic)
        # latency, after the bad jitter, is stored; the toxicity is not (the update failed).
        assert (after["attributes"], after["toxicity"]) == ({"latency": 300, "jitter": 0}, 1)
        # The toxic running on the open connection reads the stored value.
        assert roundtrip(sock) >= 0.3 - SLACK


UPDATE_TYPE = ('struct { Attributes interface {} "json:\\"attributes\\""; '
               'Toxicity float32 "json:\\"toxicity\\"" }')
POPULATE_ENTRY = 'struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'
CANNOT = "bad request body: json: cannot unmarshal"


@pytest.mark.parametrize(("body", "error", "stored"), [
    ('{"toxicity": "x", "attributes": {"latency": 77}}',
     "string into Go struct field .toxicity of type float32", (77, 2, 1)),
    ('{"attributes": {"latency": 3, "latency": "x"}}',
     "string into Go struct field LatencyToxic.attributes.latency of type int64", (3, 2, 1)),
    ('{"attributes": {"latency": "x", "LATENCY": 4}}',
     "string into Go struct field LatencyToxic.attributes.latency of type int64", (4, 2, 1)),
    ('{"attributes": {"latency": 1.50, "jitter": 9}}',
     "number 1.50 into Go struct field LatencyToxic.attributes.latency of type int64",
     (1, 9, 1)),
    ('{"attributes": {"latency": [1], "jitter": true}}',
     "array into Go struct field LatencyToxic.attributes.latency of type int64", (1, 2, 1)),
    ('{"attributes": [1], "toxicity": 0.25}',
     "array into Go struct field .attributes of type toxics.LatencyToxic", (1, 2, 1)),
    ('{"toxicity": 1e40}', "number 1e40 into Go struct field .toxicity of type float32",
     (1, 2, 1)),
    ('[1]', f"array into Go value of type {UPDATE_TYPE}", (1, 2, 1)),
    ('{"attributes": {"latency": 5, "jitter": "x"', None, (1, 2, 1)),  # syntax: nothing
    ('{"attributes": null, "toxicity": 0.75}', "", (1, 2, 0.75)),
    ('{"attributes": {"latency": null, "jitter": 8}}', "", (1, 8, 1)),
])
def test_toxic_update_decodes_in_place_like_go(api: Api, proxy: dict[str, Any], body: str,
                                               error: str | None,
                                               stored: tuple[int, int, float]) -> None:
    path = f"/proxies/{proxy['name']}/toxics"
    api.ok("POST", path, {"type": "latency", "attributes": {"latency": 1, "jitter": 2}})
    reply = api.request("PATCH", f"{path}/latency_downstream", body)
    if error == "":
        assert reply.status == 200, reply
    elif error is None:
        assert_error(reply, 400, prefix="bad request body: ")
    else:
        assert_error(reply, 400, f"{CANNOT} {error}")
    after = api.ok("GET", f"{path}/latency_downstream")
    assert (after["attributes"]["latency"], after["attributes"]["jitter"],
            after["toxicity"]) == stored


@pytest.mark.parametrize(("route", "body", "error"), [
    ("toxics", {"type": "slicer", "attributes": {"average_size": "x"}},
     "string into Go struct field SlicerToxic.attributes.average_size of type int"),
    ("toxics", {"type": "reset_peer", "attributes": {"timeout": "x"}},
     "string into Go struct field ResetToxic.attributes.timeout of type int64"),
    ("toxics", {"type": "bandwidth", "attributes": {"rate": 2.5}},
     "number 2.5 into Go struct field BandwidthToxic.attributes.rate of type int64"),
    ("toxics", {"type": "latency", "attributes": 5},
     "number into Go struct field ToxicWrapper.attributes of type toxics.NoopToxic"),
    ("toxics", {"type": 5, "toxicity": "x"},
     "number into Go struct field ToxicWrapper.type of type string"),
    ("populate", [{"name": 5}], "number into Go struct field .name of type string"),
    ("populate", [{"name": "a", "upstream": "b", "enabled": "x"}],
     "string into Go struct field .enabled of type bool"),
    ("populate", [5], f"number into Go value of type {POPULATE_ENTRY}"),
    ("populate", [{"name": "a", "upstream": "b", "logger": 5}],
     "number into Go struct field .Logger of type zerolog.Logger"),
    ("proxies", {"name": "a", "upstream": "b", "LOGGER": []},
     "array into Go struct field Proxy.Logger of type zerolog.Logger"),
    ("populate", {}, f"object into Go value of type []{POPULATE_ENTRY}"),
])
def test_decode_errors_name_the_go_types(api: Api, proxy: dict[str, Any], route: str,
                                         body: Any, error: str) -> None:
    path = f"/proxies/{proxy['name']}/toxics" if route == "toxics" else f"/{route}"
    reply = api.request("POST", path, body)
    assert reply.status == 400, reply
    assert reply.json()["error"] == f"{CANNOT} {error}"
    if route == "toxics":
        assert api.ok("GET", path) == []
    else:
        assert "a" not in api.ok("GET", "/proxies")
    # A Logger object is decoded into the Go struct and then ignored.
    logged = {"name": proxy["name"], "upstream": proxy["upstream"], "logger": {"level": 1}}
    assert_error(api.request("POST", "/proxies", logged), 409, "proxy already exists")


# --- what the toxiproxy-python client's own test suite exercises -------------------------


def test_client_validate_response_on_raw_requests(toxiproxy_url: str,
                                                  proxies: Proxies) -> None:
    """Its API tests send raw requests (no listen) and check the client's status mapping."""
    import requests
    from toxiproxy.api import validate_response

    with pytest.raises(NotFound):
        validate_response(requests.get(f"{toxiproxy_url}/not_found", timeout=TIMEOUT))
    body = {"upstream": "localhost:3306", "name": proxies.name()}
    created = validate_response(requests.post(f"{toxiproxy_url}/proxies", json=body,
                                              timeout=TIMEOUT))
    assert created.status_code == 201
    assert created.json()["upstream"] == "localhost:3306"  # never resolved nor dialled yet
    with pytest.raises(ProxyExists):
        validate_response(requests.post(f"{toxiproxy_url}/proxies", json=body,
                                        timeout=TIMEOUT))


def test_client_with_no_server_there(toxiproxy: Toxiproxy) -> None:
    toxiproxy.update_api_consumer("127.0.0.1", free_port())
    assert toxiproxy.running() is False
    assert toxiproxy.version() is None


def test_client_with_localhost_names(toxiproxy: Toxiproxy, proxies: Proxies,
                                     backend: Backend) -> None:
    upstream = f"localhost:{address(backend.address)[1]}"
    created = toxiproxy.create(upstream=upstream, name=proxies.name())
    assert created.upstream == upstream
    with contextlib.closing(connect(created)) as sock:  # dialled by name per client
        roundtrip(sock, b"omg\n")
    name = proxies.name()
    first, second = free_port(), free_port()
    made = toxiproxy.populate([{"name": name, "upstream": upstream,
                                "listen": f"localhost:{first}"}])
    assert [p.listen for p in made] == [f"127.0.0.1:{first}"]  # reported resolved
    with contextlib.closing(connect(made[0])) as sock:
        roundtrip(sock)
    moved = toxiproxy.populate([{"name": name, "upstream": upstream,
                                 "listen": f"localhost:{second}"}])
    assert [p.listen for p in moved] == [f"127.0.0.1:{second}"]
    assert refused(f"127.0.0.1:{first}")


def test_client_reset_after_a_toxic_added_while_disabled(toxiproxy: Toxiproxy,
                                                         proxies: Proxies,
                                                         backend: Backend) -> None:
    created = toxiproxy.create(upstream=backend.address, name=proxies.name())
    created.disable()
    assert refused(created.listen)
    created.add_toxic(type="latency", attributes={"latency": 123})
    assert created.get_toxic("latency_downstream").attributes["latency"] == 123
    assert toxiproxy.reset() is True
    assert created.toxics() == {}
    assert toxiproxy.get_proxy(created.name).listen == created.listen
    with contextlib.closing(connect(created)) as sock:
        roundtrip(sock)


# --- the stand-in itself -----------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_standin_stop_closes_every_socket_and_thread() -> None:
    echo = Backend()
    threads, fds = threading.active_count(), _open_fds()
    server = ToxiproxyServer("127.0.0.1", 0)
    server.start()
    api = Api(server.url)
    proxy = api.ok("POST", "/proxies", {"name": "p", "upstream": echo.address,
                                        "listen": "127.0.0.1:0"}, status=201)
    api.ok("POST", "/proxies/p/toxics", {"type": "latency", "attributes": {"latency": 1000}})
    api.ok("POST", "/proxies/p/toxics", {"type": "timeout", "stream": "upstream"})
    wildcard = api.ok("POST", "/proxies", {"name": "w", "upstream": echo.address},
                      status=201)  # two listening sockets, 127.0.0.1 and ::1
    clients = [connect(proxy) for _ in range(3)] + [connect(wildcard)]
    try:
        for sock in clients[:3]:
            sock.sendall(b"in flight")
        roundtrip(clients[3])
        server.stop()
        for sock in clients:  # EOF, or RST if the kernel still held unread bytes
            with contextlib.suppress(ConnectionResetError):
                assert recv_all(sock) == b""
    finally:
        for sock in clients:
            sock.close()
        server.stop()
        echo.close()
    assert threading.active_count() <= threads
    assert _open_fds() <= fds


def test_standin_command_line() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.toxiproxy_server", "--host",
                             "127.0.0.1", "--port", "0"], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "no 'listening' line within 10 s"
        word, listen = proc.stdout.readline().split()
        assert word == "listening"
        assert address(listen)[0] == "127.0.0.1"
        assert Api(f"http://{listen}").ok("GET", "/version")["version"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_standin_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ToxiproxyServer("0.0.0.0", 0)
    with ToxiproxyServer("127.0.0.1", 0) as server:
        api = Api(server.url)
        reply = api.request("POST", "/proxies", {"name": "p", "upstream": "127.0.0.1:1",
                                                 "listen": "192.0.2.1:0"})
        assert_error(reply, 500, prefix="listen tcp 192.0.2.1:0: bind: ")
        # A wildcard is reported as Go reports its dual-stack socket, but only loopback is bound.
        for name, listen in [("q", "0.0.0.0:0"), ("r", ""), ("s", "[::]:0")]:
            wildcard = api.ok("POST", "/proxies", {"name": name, "upstream": "127.0.0.1:1",
                                                   "listen": listen}, status=201)
            host, port = address(wildcard["listen"])
            assert host == "::"
            assert sorted(_listening_on(port)) == ["127.0.0.1", "::1"]


def _listening_on(port: int) -> list[str]:
    """The local addresses of the sockets listening on ``port`` (from /proc/net/tcp{,6})."""
    found = []
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, _remote, state = line.split()[1:4]
            host, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(host)
                # The kernel prints each 32-bit word in host (little-endian) order.
                packed = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
                found.append(socket.inet_ntop(socket.AF_INET if size == 4 else socket.AF_INET6,
                                              packed))
    return found
