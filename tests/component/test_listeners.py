"""Listeners on IPv4 and IPv6, several listeners, and balancing over real backends."""

from __future__ import annotations

import contextlib
import socket
from collections import Counter

import pytest

from tests.support.servers import ThreadServer


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _named(name: bytes, family: int = socket.AF_INET) -> ThreadServer:
    def handler(conn: socket.socket) -> None:
        conn.sendall(name)
        conn.close()

    return ThreadServer(handler, family=family)


def _ask(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=10) as conn:
        data = b""
        while chunk := conn.recv(100):
            data += chunk
        return data


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_listener_to_ipv6_backend(start_relay):
    server = _named(b"six", family=socket.AF_INET6)
    try:
        relay = start_relay([{"name": "v6", "listen": "[::1]:0",
                              "backends": [{"name": "b", "address": f"[::1]:{server.port}"}]}])
        assert _ask("::1", relay.port()) == b"six"
    finally:
        server.close()


def test_ipv4_listener_to_several_listeners(start_relay):
    a, b = _named(b"a"), _named(b"b")
    try:
        relay = start_relay([
            {"name": "one", "listen": "127.0.0.1:0",
             "backends": [{"name": "a", "address": f"127.0.0.1:{a.port}"}]},
            {"name": "two", "listen": "127.0.0.1:0",
             "backends": [{"name": "b", "address": f"127.0.0.1:{b.port}"}]},
        ])
        assert _ask("127.0.0.1", relay.port("one")) == b"a"
        assert _ask("127.0.0.1", relay.port("two")) == b"b"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(("balance", "expected"), [
    ("first", {b"a": 9}),
    ("round_robin", {b"a": 6, b"b": 3}),  # weights 2:1
])
def test_balance_spreads_sessions_as_configured(start_relay, balance, expected):
    a, b = _named(b"a"), _named(b"b")
    try:
        relay = start_relay([{
            "name": "lb", "listen": "127.0.0.1:0", "balance": balance,
            "backends": [{"name": "a", "address": f"127.0.0.1:{a.port}", "weight": 2},
                         {"name": "b", "address": f"127.0.0.1:{b.port}", "weight": 1}]}])
        seen = Counter(_ask("127.0.0.1", relay.port()) for _ in range(9))
        assert seen == expected
    finally:
        a.close()
        b.close()


def test_only_the_lowest_tier_serves_while_all_count_as_up(start_relay):
    primary, backup = _named(b"primary"), _named(b"backup")
    try:
        relay = start_relay([{
            "name": "t", "listen": "127.0.0.1:0", "balance": "round_robin",
            "backends": [{"name": "backup", "address": f"127.0.0.1:{backup.port}", "tier": 1},
                         {"name": "primary", "address": f"127.0.0.1:{primary.port}", "tier": 0}]}])
        assert {_ask("127.0.0.1", relay.port()) for _ in range(4)} == {b"primary"}
    finally:
        primary.close()
        backup.close()


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_an_ipv6_client_is_named_host_colon_port_in_access_and_connect_failed_lines(start_relay):
    """As relay always wrote it: "::1:PORT" (host, a colon, the port; no brackets)."""
    server = _named(b"six", family=socket.AF_INET6)
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        closed = s.getsockname()[1]  # nothing listens there once closed
    try:
        relay = start_relay([
            {"name": "v6", "listen": "[::1]:0", "access_log": True,
             "backends": [{"name": "b", "address": f"[::1]:{server.port}"}]},
            {"name": "dead", "listen": "[::1]:0", "health": {"kind": "none"},
             "backends": [{"name": "gone", "address": f"[::1]:{closed}"}]}])
        with socket.create_connection(("::1", relay.port("v6")), timeout=10) as conn:
            port = conn.getsockname()[1]
            assert conn.recv(3) == b"six"
        access = relay.wait_event(lambda e: e.get("event") == "access")
        assert access["client"] == f"::1:{port}"
        with socket.create_connection(("::1", relay.port("dead")), timeout=10) as conn:
            port = conn.getsockname()[1]
            with contextlib.suppress(ConnectionResetError):
                conn.recv(1)
        failed = relay.wait_event(lambda e: e.get("event") == "connect_failed")
        assert failed["client"] == f"::1:{port}"
    finally:
        server.close()
