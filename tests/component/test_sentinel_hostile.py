"""A sentinel is untrusted input: one that lies, floods or stays silent costs its vote only."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.relayproc import admin_request
from tests.support.servers import ThreadServer

ROLE = b"*1\r\n$4\r\nROLE\r\n"


def fake_redis(name: str) -> ThreadServer:
    """Answers ROLE as a master, and PING with its name (a session through relay)."""

    def serve(conn: socket.socket) -> None:
        while data := conn.recv(4096):
            if data.startswith(ROLE):
                conn.sendall(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n")
            else:
                conn.sendall(f"+{name}\r\n".encode())

    return ThreadServer(serve)


def _answers(primary_port: int, epoch: bytes = b"0") -> bytes:
    """A sentinel's three answers: the master's address, no replicas, the master's fields."""
    port = str(primary_port).encode()
    return (b"*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%s\r\n*0\r\n" % (len(port), port)
            + b"*2\r\n$12\r\nconfig-epoch\r\n$%d\r\n%s\r\n" % (len(epoch), epoch))


def honest(primary_port: int, delay: float = 0.0) -> ThreadServer:
    def serve(conn: socket.socket) -> None:
        data = b""
        while data := data + conn.recv(4096):
            if b"SUBSCRIBE" in data:
                conn.sendall(b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n")
                while conn.recv(4096):
                    pass
                return
            if data.count(b"SENTINEL") == 3 and data.endswith(b"\r\n"):
                time.sleep(delay)
                conn.sendall(_answers(primary_port))
                data = b""

    return ThreadServer(serve)


def hostile(kind: str, liar_port: int) -> ThreadServer:
    def serve(conn: socket.socket) -> None:
        conn.recv(4096)
        if kind == "flood":
            chunk = b"*1\r\n" * 16 + b"$" + b"9" * 40 + b"\r\n" + b"x" * 65536
            while True:
                conn.sendall(chunk)
        elif kind == "garbage":
            conn.sendall(b"\x00\xff" * 50000)
        elif kind == "liar":  # names another node (with a huge epoch): alone, it is no majority
            conn.sendall(_answers(liar_port, epoch=b"9999999"))
        while conn.recv(4096):  # silent
            pass

    return ThreadServer(serve)


@pytest.fixture
def servers() -> Iterator[list[ThreadServer]]:
    made: list[ThreadServer] = []
    yield made
    for server in made:
        server.close()


@pytest.mark.parametrize("kind", ["flood", "garbage", "silent", "liar"])
def test_one_hostile_sentinel_of_three_changes_nothing(start_relay, servers, kind: str) -> None:  # type: ignore[no-untyped-def]
    primary, other = fake_redis("primary"), fake_redis("other")
    servers += [primary, other]
    good = [honest(primary.port), honest(primary.port)]
    bad = hostile(kind, other.port)
    servers += [*good, bad]
    relay = start_relay([{
        "name": "redis", "listen": "127.0.0.1:0", "connect_timeout": "500ms",
        "health": {"kind": "none"},
        "authority": {"kind": "redis_sentinel", "master_name": "mymaster", "interval": "100ms",
                      "stale_after": "1s", "replicas": "exclude",
                      "sentinels": [f"127.0.0.1:{s.port}" for s in (*good, bad)]}}])
    relay.wait_event(lambda e: e.get("event") == "authority_change"
                     and e.get("primary") == f"127.0.0.1:{primary.port}", timeout=10)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", relay.port()), timeout=5) as conn:
            conn.sendall(b"PING\r\n")
            assert conn.recv(100) == b"+primary\r\n"
    _, body = admin_request(relay.admin_port, "GET", "/status")
    authority = json.loads(body)["listeners"][0]["authority"]
    assert authority["state"] == "confirmed" and authority["generation"] == 1
    said = authority["sources"][f"127.0.0.1:{bad.port}"]
    assert said is None or not said["reachable"] or kind == "liar"
    assert relay.proc.poll() is None
    assert not any(e.get("level") == "error" for e in relay.events), relay.raw[-10:]


def test_sentinels_slower_than_the_interval_keep_being_asked(start_relay, servers) -> None:  # type: ignore[no-untyped-def]
    """A poll still out when the next is due must not stop the polling (it did)."""
    primary = fake_redis("primary")
    slow = [honest(primary.port, delay=0.15) for _ in range(3)]
    servers += [primary, *slow]
    relay = start_relay([{
        "name": "redis", "listen": "127.0.0.1:0", "health": {"kind": "none"},
        "authority": {"kind": "redis_sentinel", "master_name": "mymaster", "interval": "100ms",
                      "stale_after": "500ms", "replicas": "exclude",
                      "sentinels": [f"127.0.0.1:{s.port}" for s in slow]}}])
    relay.wait_event(lambda e: e.get("event") == "authority_change"
                     and e.get("state") == "confirmed", timeout=10)
    time.sleep(2.0)  # four times stale_after
    _, body = admin_request(relay.admin_port, "GET", "/status")
    authority = json.loads(body)["listeners"][0]["authority"]
    assert authority["state"] == "confirmed", authority
    assert relay.count("authority_change") == 2  # none at start, then confirmed: no flapping
