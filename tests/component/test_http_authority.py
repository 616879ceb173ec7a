"""kind = "http": small Patroni-like role servers decide the primary; sessions follow and are
fenced; two 200s or none mean no primary once stale_after has passed."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.servers import ThreadServer

INTERVAL, STALE_AFTER = 0.1, 1.0


class Node:
    """A backend that says its name and then holds the session, and its role endpoint."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.leader = False
        self.backend = ThreadServer(self._serve)
        self.role = ThreadServer(self._role)

    def _serve(self, conn: socket.socket) -> None:
        conn.sendall(self.name.encode() + b"\n")
        while conn.recv(4096):
            pass

    def _role(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 8192:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        status = b"200 OK" if self.leader else b"503 Service Unavailable"
        conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    def close(self) -> None:
        self.backend.close()
        self.role.close()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    made = [Node("a"), Node("b")]
    try:
        yield made
    finally:
        for node in made:
            node.close()


def greeting(port: int) -> str | None:
    """Who a new session reaches; None when relay refuses it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        try:
            return conn.recv(100).decode().strip() or None
        except ConnectionResetError:
            return None


def reset_at_once(port: int) -> bool:
    """relay refuses a new session with a reset (not an end of stream a client could take
    for the service's own answer)."""
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    except ConnectionResetError:
        return True
    with conn:
        try:
            conn.recv(100)  # bytes or an end of stream: not a refusal by reset
        except ConnectionResetError:
            return True
        return False


def start(start_relay, nodes: list[Node]):  # type: ignore[no-untyped-def]
    return start_relay([{
        "name": "pg", "listen": "127.0.0.1:0", "connect_timeout": "500ms",
        "retry": {"attempts": 2, "deadline": "1s"},
        "authority": {"kind": "http", "interval": INTERVAL, "stale_after": STALE_AFTER,
                      "replicas": "exclude"},
        "backends": [{"name": n.name, "address": f"127.0.0.1:{n.backend.port}",
                      "role_url": f"http://127.0.0.1:{n.role.port}/primary"} for n in nodes],
    }])


def wait_for(relay, state: str, primary: str | None, since: int = 0) -> float:  # type: ignore[no-untyped-def]
    relay.wait_event(lambda e: e.get("event") == "authority_change" and e.get("state") == state
                     and e.get("primary") == primary
                     and relay.events.index(e) >= since, timeout=10)
    return time.monotonic()


def test_the_leader_moves_and_sessions_follow_fenced(start_relay, nodes: list[Node]) -> None:  # type: ignore[no-untyped-def]
    a, b = nodes
    a.leader = True
    relay = start(start_relay, nodes)
    wait_for(relay, "confirmed", "a")
    assert greeting(relay.port()) == "a"
    held = socket.create_connection(("127.0.0.1", relay.port()), timeout=10)
    try:
        assert held.recv(100) == b"a\n"
        mark = len(relay.events)
        a.leader, b.leader = False, True
        moved = time.monotonic()
        with pytest.raises(ConnectionResetError):
            held.recv(100)  # fenced: reset, whatever close_on_down says
        fenced = time.monotonic()
    finally:
        held.close()
    wait_for(relay, "confirmed", "b", mark)
    assert greeting(relay.port()) == "b", "\n".join(relay.raw[-15:])
    assert fenced - moved < 10 * INTERVAL + 1.0  # bounded by the configured interval
    assert relay.count("authority_fenced") == 1


@pytest.mark.parametrize("leaders", [("a", "b"), ()])
def test_two_leaders_or_none_keep_the_last_for_stale_after_then_refuse(
        start_relay, nodes: list[Node], leaders: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    a, b = nodes
    a.leader = True
    relay = start(start_relay, nodes)
    wait_for(relay, "confirmed", "a")
    mark = len(relay.events)
    a.leader = "a" in leaders
    b.leader = "b" in leaders
    stale = wait_for(relay, "stale", "a", mark)
    assert greeting(relay.port()) == "a"  # kept for stale_after
    gone = wait_for(relay, "none", None, mark)
    assert gone - stale >= STALE_AFTER * 0.9
    for _ in range(3):
        assert reset_at_once(relay.port())  # refused with a reset, never guessed
    reason = next(e for e in relay.events[mark:] if e.get("state") == "none")["reason"]
    assert ("several" in str(reason)) == bool(leaders)
    b.leader, a.leader = True, False
    wait_for(relay, "confirmed", "b", mark)
    assert greeting(relay.port()) == "b", "\n".join(relay.raw[-15:])
