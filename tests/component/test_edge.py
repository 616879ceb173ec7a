"""The edge: PROXY headers both ways, allow/deny and per-source limits (product.md §3, issue 16).

Clients bind to different 127.0.0.0/8 source addresses (every one of them is loopback on
Linux), so one machine has many client addresses without any namespace.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from relay.core.proxy_header import V2_SIGNATURE, encode_v1, encode_v2
from tests.support.servers import EchoServer, ThreadServer
from tests.support.wait import wait_for


class HeaderServer(ThreadServer):
    """A backend that reads the PROXY header relay sends, answers with what it says, then echoes."""

    def __init__(self, family: int = socket.AF_INET) -> None:
        self.headers: list[bytes] = []
        super().__init__(self._handle, family=family)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        header = read_header(conn)
        self.headers.append(header)
        conn.sendall(b"header " + header + b"\n")
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)  # the client said goodbye: so does the backend


def read_header(conn: socket.socket) -> bytes:
    """The first bytes a backend got: a v1 line (without CRLF) or a v2 binary header."""
    first = conn.recv(16, socket.MSG_PEEK)
    if first.startswith(V2_SIGNATURE[:12]):
        fixed = recv_exact(conn, 16)
        return fixed + recv_exact(conn, int.from_bytes(fixed[14:16], "big"))
    line = b""
    while not line.endswith(b"\r\n") and len(line) < 120:
        chunk = conn.recv(1)
        if not chunk:
            break
        line += chunk
    return line[:-2]


def recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def connect_from(source: str, port: int, host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    try:
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def is_reset(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True when the peer reset the connection (not a clean EOF, not bytes)."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(100)
    except ConnectionResetError:
        return True
    except OSError:
        return False
    assert data == b"", f"relayed {data!r} where a reset was expected"
    return False


def refused(source: str, port: int, host: str = "127.0.0.1") -> bool:
    """Connect from `source` and see relay reset the connection (on loopback the reset can
    beat connect()'s return: that counts too)."""
    try:
        sock = connect_from(source, port, host)
    except ConnectionResetError:
        return True
    with sock:
        return is_reset(sock)


def line_of(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        line += chunk
    return line


def metric(relay: Any, name: str, absent: float | None = None, **labels: str) -> float:
    """A sample's value; `absent` when it is not there (a backend's series that have never
    been non-zero are left out), or AssertionError when absent is None."""
    status, body = relay.http("GET", "/metrics")
    assert status == 200
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    if absent is not None:
        return absent
    raise AssertionError(f"{name}{{{want}}} not in /metrics")


@pytest.fixture
def header_server() -> Iterator[HeaderServer]:
    server = HeaderServer()
    yield server
    server.close()


def edge_listener(port: int, **settings: object) -> list[dict[str, object]]:
    listener: dict[str, object] = {"name": "edge", "listen": "127.0.0.1:0",
                                   "health": {"kind": "none"}, "connect_timeout": "500ms",
                                   "backends": [{"name": "b1", "address": f"127.0.0.1:{port}"}]}
    listener.update(settings)
    return [listener]


# -- sending ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_backend_sees_the_clients_own_address(start_relay: Any, header_server: HeaderServer,
                                              version: str, family: str) -> None:
    """The source is the address accept gave (no getpeername): over IPv6 it must read as the
    peer does, without flowinfo or scope."""
    if family == "ipv6":
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            pytest.skip("no IPv6 loopback here")
        relay = start_relay(edge_listener(header_server.port, proxy_protocol=version,
                                          listen="[::1]:0"))
        client, source, local = socket.create_connection(("::1", relay.port())), "::1", "::1"
    else:
        relay = start_relay(edge_listener(header_server.port, proxy_protocol=version))
        client, source, local = connect_from("127.0.0.5", relay.port()), "127.0.0.5", "127.0.0.1"
    with client:
        port = client.getsockname()[1]
        client.sendall(b"hello\n")
        answer = client.recv(200)
    encode = encode_v1 if version == "v1" else encode_v2
    expected = encode((source, port), (local, relay.port()))
    assert header_server.headers == [expected.removesuffix(b"\r\n")]
    assert answer.startswith(b"header ")


def test_no_header_is_sent_when_off(start_relay: Any, echo: EchoServer) -> None:
    relay = start_relay(edge_listener(echo.port))
    with connect_from("127.0.0.5", relay.port()) as client:
        client.sendall(b"plain\n")
        assert client.recv(100) == b"plain\n"


# -- accepting ----------------------------------------------------------------------------


def test_a_trusted_proxys_header_names_the_client(start_relay: Any,
                                                  header_server: HeaderServer) -> None:
    relay = start_relay(edge_listener(header_server.port, proxy_protocol="v1", accept_proxy="any",
                                      trusted_proxies=["127.0.0.2/32"], access_log=True))
    for header in (b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 6379\r\n",
                   encode_v2(("203.0.113.7", 40000), ("198.51.100.1", 6379))):
        with connect_from("127.0.0.2", relay.port()) as client:
            client.sendall(header + b"payload\n")
            assert line_of(client) == b"header PROXY TCP4 203.0.113.7 198.51.100.1 40000 6379\n"
            assert line_of(client) == b"payload\n"  # the bytes after the header, untouched
    access = relay.wait_event(lambda e: e.get("event") == "access")
    assert access["client"] == "203.0.113.7:40000"


def test_an_untrusted_peers_header_is_not_believed(start_relay: Any,
                                                   header_server: HeaderServer) -> None:
    relay = start_relay(edge_listener(header_server.port, proxy_protocol="v1", accept_proxy="any",
                                      trusted_proxies=["127.0.0.2/32"]))
    forged = b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 6379\r\n"
    with connect_from("127.0.0.3", relay.port()) as client:
        port = client.getsockname()[1]
        client.sendall(forged)
        assert line_of(client) == (
            f"header PROXY TCP4 127.0.0.3 127.0.0.1 {port} {relay.port()}\n".encode())
        assert line_of(client) == forged  # echoed back as the plain bytes they are


def test_a_trusted_client_without_a_header_is_reset_and_counted(start_relay: Any,
                                                                echo: EchoServer) -> None:
    relay = start_relay(edge_listener(echo.port, accept_proxy="v1",
                                      trusted_proxies=["127.0.0.2"]))
    with connect_from("127.0.0.2", relay.port()) as client:
        client.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert is_reset(client)
    with connect_from("127.0.0.2", relay.port()) as client:  # v2 where only v1 is accepted
        client.sendall(encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2)))
        assert is_reset(client)
    assert metric(relay, "relay_connections_rejected_total", listener="edge",
                  reason="proxy_header") == 2


def _bad_headers() -> list[tuple[str, bytes, float]]:
    """(name, bytes, seconds between bytes): malformed, truncated, oversized and slow."""
    rng = random.Random(16)
    good_v1 = b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 6379\r\n"
    good_v2 = encode_v2(("203.0.113.7", 40000), ("198.51.100.1", 6379))
    cases: list[tuple[str, bytes, float]] = []
    for cut in range(1, len(good_v1) - 1, 4):  # truncated: waits, then connect_timeout
        cases.append((f"v1_cut_{cut}", good_v1[:cut], 0.0))
    for cut in range(1, len(good_v2) - 1, 3):
        cases.append((f"v2_cut_{cut}", good_v2[:cut], 0.0))
    for i in range(100):  # one byte flipped
        data = bytearray(good_v1 if i % 2 else good_v2)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        cases.append((f"flip_{i}", bytes(data) + b"ping", 0.0))  # still valid: "ping" echoed
    for i in range(100):  # noise
        cases.append((f"noise_{i}", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))),
                      0.0))
    cases.append(("v1_oversized", b"PROXY TCP4 " + b"1" * 200 + b"\r\n", 0.0))
    cases.append(("v1_lf_only", good_v1.replace(b"\r\n", b"\n"), 0.0))
    cases.append(("v2_huge_length", V2_SIGNATURE + b"\x21\x11\xff\xff" + bytes(64), 0.0))
    cases.append(("v2_bad_family", V2_SIGNATURE + b"\x21\x99\x00\x0c" + bytes(12), 0.0))
    cases.append(("slow_v1", good_v1[:-1], 0.02))  # a byte at a time, never finished
    cases.append(("slow_v2", good_v2[:-1], 0.02))
    cases.append(("empty_close", b"", 0.0))
    return cases


BAD_HEADERS = _bad_headers()


def test_the_bad_header_corpus_is_large() -> None:
    assert len(BAD_HEADERS) >= 200


def _send_bad(port: int, data: bytes, pause: float, outcomes: list[str]) -> None:
    try:
        with connect_from("127.0.0.2", port) as client:
            if pause:
                for i in range(len(data)):
                    client.sendall(data[i:i + 1])
                    time.sleep(pause)
            elif data:
                client.sendall(data)
            else:
                client.shutdown(socket.SHUT_WR)
            client.settimeout(10)
            try:
                got = client.recv(100)
                outcomes.append("eof" if got == b"" else "data")
            except ConnectionResetError:
                outcomes.append("reset")
    except OSError as exc:  # a reset while still sending counts as a reset too
        outcomes.append("reset" if isinstance(exc, ConnectionResetError | BrokenPipeError)
                        else f"error {exc}")


def test_malformed_truncated_oversized_and_slow_headers_are_reset(
        start_relay: Any, echo: EchoServer) -> None:
    relay = start_relay(edge_listener(echo.port, accept_proxy="any",
                                      trusted_proxies=["127.0.0.2"], connect_timeout="300ms"))
    port = relay.port()
    with connect_from("127.0.0.9", port) as bystander:  # an ordinary client throughout
        bystander.sendall(b"before\n")
        assert bystander.recv(100) == b"before\n"
        fds, rss = relay.fds(), relay.rss_kib()
        outcomes: dict[str, list[str]] = {}
        for start in range(0, len(BAD_HEADERS), 50):  # 50 at a time: the whole corpus in seconds
            threads = []
            for name, data, pause in BAD_HEADERS[start:start + 50]:
                outcomes[name] = []
                t = threading.Thread(target=_send_bad, args=(port, data, pause, outcomes[name]))
                t.start()
                threads.append(t)
            for t in threads:
                t.join(30)
            bystander.sendall(b"during\n")
            assert bystander.recv(100) == b"during\n"
        # a byte flip may leave a header valid (a different address): those may be relayed
        wrong = {name: got for name, got in outcomes.items()
                 if got != ["reset"] and not (name.startswith("flip_") and got == ["data"])}
        assert not wrong, wrong
        bystander.sendall(b"after\n")
        assert bystander.recv(100) == b"after\n"
        wait_for(lambda: relay.fds() <= fds, timeout=10)
        assert relay.rss_kib() - rss < 8 * 1024, "RSS grew by more than 8 MB"
    assert not any("Traceback" in line for line in relay.raw)
    rejected = metric(relay, "relay_connections_rejected_total", listener="edge",
                      reason="proxy_header")
    assert rejected >= len(BAD_HEADERS) - sum(1 for got in outcomes.values() if got == ["data"])
    # one line per interval, not one per client
    assert relay.count("connections_rejected") <= 2


# -- who may connect ------------------------------------------------------------------------


def test_deny_wins_over_allow_and_others_are_not_allowed(start_relay: Any, echo: EchoServer) -> None:
    relay = start_relay(edge_listener(echo.port, listen="[::]:0", allow=["127.0.0.0/8"],
                                      deny=["127.0.0.3/32"]))
    port = relay.port()
    with connect_from("127.0.0.4", port) as client:
        client.sendall(b"ok\n")
        assert client.recv(10) == b"ok\n"
    assert refused("127.0.0.3", port)
    assert refused("::1", port, host="::1")  # IPv6: not in allow
    assert metric(relay, "relay_connections_rejected_total", listener="edge",
                  reason="denied") == 2


def test_ipv6_allow(start_relay: Any, echo: EchoServer) -> None:
    relay = start_relay(edge_listener(echo.port, listen="[::1]:0", allow=["::1/128"]))
    with connect_from("::1", relay.port(), host="::1") as client:
        client.sendall(b"v6\n")
        assert client.recv(10) == b"v6\n"


def test_per_source_limit(start_relay: Any, echo: EchoServer) -> None:
    relay = start_relay(edge_listener(echo.port, max_connections_per_source=2))
    port = relay.port()
    held = [connect_from("127.0.0.6", port) for _ in range(2)]
    try:
        for sock in held:
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
        assert refused("127.0.0.6", port)  # the third
        with connect_from("127.0.0.7", port) as other:  # another source has its own count
            other.sendall(b"y")
            assert other.recv(1) == b"y"
        held.pop().close()

        def admitted_again() -> bool:
            try:
                with connect_from("127.0.0.6", port) as again:
                    again.sendall(b"z")
                    return again.recv(1) == b"z"
            except (ConnectionResetError, BrokenPipeError):  # still at the limit: refused
                return False
        wait_for(admitted_again, timeout=10)
    finally:
        for sock in held:
            sock.close()
    assert metric(relay, "relay_connections_rejected_total", listener="edge",
                  reason="per_source") >= 1


def test_per_source_limit_follows_the_proxy_header(start_relay: Any, echo: EchoServer) -> None:
    relay = start_relay(edge_listener(echo.port, max_connections_per_source=1, accept_proxy="v1",
                                      trusted_proxies=["127.0.0.2"]))
    port = relay.port()
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(connect_from("127.0.0.2", port))
        first.sendall(b"PROXY TCP4 203.0.113.1 10.0.0.1 1000 80\r\na")
        assert first.recv(1) == b"a"
        other = stack.enter_context(connect_from("127.0.0.2", port))  # another real client
        other.sendall(b"PROXY TCP4 203.0.113.2 10.0.0.1 1000 80\r\nb")
        assert other.recv(1) == b"b"
        same = stack.enter_context(connect_from("127.0.0.2", port))  # the first client again
        same.sendall(b"PROXY TCP4 203.0.113.1 10.0.0.1 1001 80\r\nc")
        assert is_reset(same)


def test_rejections_are_logged_in_aggregate(start_relay: Any, echo: EchoServer) -> None:
    relay = start_relay(edge_listener(echo.port, deny=["127.0.0.8/32"]))
    for _ in range(100):
        assert refused("127.0.0.8", relay.port())
    assert metric(relay, "relay_connections_rejected_total", listener="edge",
                  reason="denied") == 100
    assert relay.count("connections_rejected") == 1


# -- checks ---------------------------------------------------------------------------------


def _strict_backend(conn: socket.socket) -> None:
    """A backend that requires a PROXY header (as HAProxy's accept-proxy does)."""
    conn.settimeout(5)
    first = conn.recv(16, socket.MSG_PEEK)
    if not (first.startswith(b"PROXY ") or first.startswith(V2_SIGNATURE[:12])):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return
    read_header(conn)
    while data := conn.recv(100):
        if b"PING" in data:
            conn.sendall(b"+PONG\r\n")


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("send_proxy", [True, False])
def test_checks_send_the_header_when_asked(start_relay: Any, version: str,
                                           send_proxy: bool) -> None:
    server = ThreadServer(_strict_backend)
    try:
        relay = start_relay(edge_listener(
            server.port, proxy_protocol=version,
            health={"kind": "send_expect", "send": "PING\r\n", "expect": "+PONG",
                    "interval": "100ms", "timeout": "500ms", "rise": 1, "fall": 1,
                    "initial": "down", "send_proxy": send_proxy}))
        wait_for(lambda: metric(relay, "relay_health_checks_total", 0.0, listener="edge",
                                backend="b1", result="success" if send_proxy else "failure") >= 2)
        assert metric(relay, "relay_backend_up", listener="edge", backend="b1") == (
            1 if send_proxy else 0)
    finally:
        server.close()


def test_a_v1_check_header_names_the_checks_own_address_and_the_backends(
        start_relay: Any) -> None:
    """v1 has no LOCAL: a check's header gives its own socket's address as the source and
    the backend's as the destination, as the backend sees the connection."""
    seen: list[tuple[bytes, str]] = []

    def backend(conn: socket.socket) -> None:
        conn.settimeout(5)
        local, peer = conn.getsockname(), conn.getpeername()
        seen.append((read_header(conn),
                     f"PROXY TCP4 {peer[0]} {local[0]} {peer[1]} {local[1]}"))
        while data := conn.recv(100):
            if b"PING" in data:
                conn.sendall(b"+PONG\r\n")

    server = ThreadServer(backend)
    try:
        relay = start_relay(edge_listener(
            server.port, proxy_protocol="v1",
            health={"kind": "send_expect", "send": "PING\r\n", "expect": "+PONG",
                    "interval": "100ms", "timeout": "500ms", "rise": 1, "fall": 1,
                    "initial": "down", "send_proxy": True}))
        wait_for(lambda: metric(relay, "relay_health_checks_total", 0.0, listener="edge",
                                backend="b1", result="success") >= 2)
        assert seen
        for header, expected in list(seen):
            assert header.decode() == expected
    finally:
        server.close()
