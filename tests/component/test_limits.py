"""Connection limits, many sessions, fd exhaustion and fd hygiene."""

from __future__ import annotations

import contextlib
import json
import socket

import pytest

from tests.component.test_reload import reload
from tests.conftest import one_listener
from tests.support.redis import free_port
from tests.support.relayproc import toml_config
from tests.support.wait import wait_for


@pytest.fixture(autouse=True)
def _enough_fds(many_fds):
    yield


def _is_closed_by_peer(conn: socket.socket) -> bool:
    conn.settimeout(5)
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True


def _echo_ok(port: int, message: bytes = b"hello") -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(message)
        got = b""
        while len(got) < len(message):
            data = conn.recv(len(message) - len(got))
            assert data, "closed before the echo came back"
            got += data
        assert got == message


def _echoes(port: int) -> bool:
    try:
        _echo_ok(port)
    except (OSError, AssertionError):
        return False
    return True


def _settled_fds(relay: object) -> int:
    """The relay's descriptor count once two readings in a row agree."""
    last = [-1]

    def same() -> bool:
        n = relay.fds()  # type: ignore[attr-defined]
        settled, last[0] = n == last[0], n
        return settled

    wait_for(same, step=0.1)
    return last[0]


def test_listener_max_connections_closes_excess_clients(echo, start_relay):
    relay = start_relay(one_listener(echo.port, max_connections=3))
    conns = [socket.create_connection(("127.0.0.1", relay.port())) for _ in range(3)]
    try:
        for conn in conns:
            conn.sendall(b"a")
            assert conn.recv(1) == b"a"
        with socket.create_connection(("127.0.0.1", relay.port())) as extra:
            assert _is_closed_by_peer(extra)
        # the three admitted sessions are unaffected
        for conn in conns:
            conn.sendall(b"b")
            assert conn.recv(1) == b"b"
    finally:
        for conn in conns:
            conn.close()
    wait_for(lambda: _echoes(relay.port()))  # room again once they closed


def test_global_max_connections_counts_all_listeners(echo, start_relay):
    backends = [{"name": "b1", "address": f"127.0.0.1:{echo.port}"}]
    relay = start_relay(
        [{"name": "a", "listen": "127.0.0.1:0", "backends": backends},
         {"name": "b", "listen": "127.0.0.1:0", "backends": backends}],
        runtime={"max_connections": 2})
    first = socket.create_connection(("127.0.0.1", relay.port("a")))
    second = socket.create_connection(("127.0.0.1", relay.port("b")))
    try:
        for conn in (first, second):
            conn.sendall(b"x")
            assert conn.recv(1) == b"x"
        with socket.create_connection(("127.0.0.1", relay.port("b"))) as extra:
            assert _is_closed_by_peer(extra)
    finally:
        first.close()
        second.close()


def test_2000_concurrent_sessions(echo, start_relay):
    relay = start_relay(one_listener(echo.port, health={"kind": "none"}))  # count only sessions
    conns = []
    try:
        for _ in range(2000):
            conns.append(socket.create_connection(("127.0.0.1", relay.port()), timeout=30))
        for i, conn in enumerate(conns):
            conn.sendall(b"%06d" % i)
        for i, conn in enumerate(conns):
            got = b""
            while len(got) < 6:
                data = conn.recv(6 - len(got))
                assert data
                got += data
            assert got == b"%06d" % i
        assert echo.accepted == 2000
    finally:
        for conn in conns:
            conn.close()


def test_low_fd_limit_flood_pauses_accept_and_recovers(echo, start_relay):
    relay = start_relay(one_listener(echo.port), nofile=64)
    flood = []
    try:
        for _ in range(300):  # far more than 64 fds' worth; the kernel queues them
            flood.append(socket.create_connection(("127.0.0.1", relay.port()), timeout=10))
        relay.wait_event(lambda e: e.get("event") == "accept_paused")
    finally:
        for conn in flood:
            conn.close()
    wait_for(lambda: _echoes(relay.port()))  # accepting again
    assert relay.proc.poll() is None, "relay died"
    for i in range(20):
        _echo_ok(relay.port(), b"after the flood %d" % i)


def test_no_fd_left_behind_after_1000_sessions(echo, start_relay):
    relay = start_relay(one_listener(echo.port))
    _echo_ok(relay.port())  # warm up pools and lazily opened files
    before = _settled_fds(relay)  # (no admin request: its connection would count)
    for i in range(1000):
        _echo_ok(relay.port(), b"session %d" % i)
    with contextlib.suppress(AssertionError):  # (the assert below says what is left)
        wait_for(lambda: relay.fds() == before, timeout=5)
    after = relay.fds()
    assert after == before, (before, after)
    sockets = [t for t in _fd_targets(relay.pid) if t.startswith("socket:")]
    assert len(sockets) <= 4, sockets  # listener + signal socketpair (+ admin later)


def _fd_targets(pid: int) -> list[str]:
    import os

    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return out


# -- [runtime] max_connections: PROXY-header clients, refusals, reloads --------------------------


def _edge(echo_port: int, listen_port: int) -> list[dict[str, object]]:
    """A listener that takes PROXY headers from 127.0.0.2 and denies one source they may name."""
    return [{"name": "edge", "listen": f"127.0.0.1:{listen_port}", "health": {"kind": "none"},
             "connect_timeout": "2s", "accept_proxy": "v1", "trusted_proxies": ["127.0.0.2"],
             "deny": ["203.0.113.99/32"],
             "backends": [{"name": "b1", "address": f"127.0.0.1:{echo_port}"}]}]


def _proxied(port: int) -> socket.socket:
    """A client through the trusted proxy (127.0.0.2), its header not sent yet."""
    conn = socket.socket()
    conn.settimeout(10)
    conn.bind(("127.0.0.2", 0))
    conn.connect(("127.0.0.1", port))
    return conn


def _header(source: str = "198.51.100.1") -> bytes:
    return f"PROXY TCP4 {source} 10.0.0.1 1000 80\r\n".encode()


def _relays(conn: socket.socket, header: bytes = b"") -> bool:
    """The echo answers through relay (False: relay closed or reset the client)."""
    try:
        conn.sendall(header + b"!")
        return conn.recv(1) == b"!"
    except (ConnectionResetError, BrokenPipeError):
        return False


def _open_sessions(relay: object) -> int:
    return int(json.loads(relay.http("GET", "/status")[1])["sessions"])  # type: ignore[attr-defined]


def _settle(relay: object) -> None:
    wait_for(lambda: _open_sessions(relay) == 0, timeout=10, step=0.02)


def _capacity(relay: object, bound: int = 6) -> int:
    """How many new clients relay admits now, up to `bound`; all closed (and gone from relay)
    before this returns."""
    held: list[socket.socket] = []
    try:
        for i in range(bound):
            held.append(_proxied(relay.port()))  # type: ignore[attr-defined]
            if not _relays(held[-1], _header(f"198.51.100.{i + 1}")):
                return i
        return bound
    finally:
        for conn in held:
            conn.close()
        _settle(relay)


def test_runtime_max_connections_counts_header_clients_and_every_place_comes_back(
        echo, start_relay):
    listen_port = free_port()
    relay = start_relay(_edge(echo.port, listen_port), runtime={"max_connections": 2})
    port = relay.port()
    assert _capacity(relay) == 2
    # a client whose header is still awaited holds a place
    with _proxied(port) as waiting, _proxied(port) as first:
        assert _relays(first, _header())
        with _proxied(port) as third:
            assert not _relays(third, _header("198.51.100.3"))
        assert _relays(waiting, _header("198.51.100.2"))
    _settle(relay)
    # every way a header client fails, and refusals at the limit, give their place back
    for _ in range(4):
        with _proxied(port) as bad:
            assert not _relays(bad, b"GARBAGE\r\n")
        with _proxied(port) as denied:  # the header names a denied source
            assert not _relays(denied, _header("203.0.113.99"))
        _proxied(port).close()  # closes before its header
        held = [_proxied(port), _proxied(port)]
        try:
            assert all(_relays(conn, _header(f"198.51.100.{i}")) for i, conn in enumerate(held))
            with _proxied(port) as refused:
                assert not _relays(refused, _header("198.51.100.9"))
        finally:
            for conn in held:
                conn.close()
        _settle(relay)
    # (the last client that closed before its header may still be in: its place comes back)
    wait_for(lambda: _capacity(relay) == 2, timeout=10, step=0.05)
    # a reload changes the limit for new clients; admitted ones stay
    reload(relay, toml_config(_edge(echo.port, listen_port), {"max_connections": 3}), "reload")
    assert _capacity(relay) == 3
    held = [_proxied(port) for _ in range(3)]
    try:
        assert all(_relays(conn, _header(f"198.51.100.{i}")) for i, conn in enumerate(held))
        reload(relay, toml_config(_edge(echo.port, listen_port), {"max_connections": 1}),
               "reload")
        assert all(_relays(conn) for conn in held)  # not cut
        with _proxied(port) as refused:
            assert not _relays(refused, _header("198.51.100.9"))
        held.pop().close()
        held.pop().close()
        wait_for(lambda: _open_sessions(relay) == 1, timeout=10, step=0.02)
        with _proxied(port) as refused:  # one admitted is still one too many for 1
            assert not _relays(refused, _header("198.51.100.9"))
    finally:
        for conn in held:
            conn.close()
    _settle(relay)
    assert _capacity(relay) == 1
