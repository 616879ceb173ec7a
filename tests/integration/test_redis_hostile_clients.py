"""Clients that provoke resets from a healthy Redis must not move the serving tier.

Redis closes a client after QUIT (its late bytes then meet a RST) and closes a client
idle past `timeout` (the next write meets a RST): both are the client's business.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.conftest import require_tool
from tests.support.redis import RedisServer, free_port, redis_port_of

INTERVAL, TIMEOUT, RISE, FALL = 0.5, 0.3, 2, 2
BYSTANDERS, QUITTERS, IDLERS = 20, 30, 10
REDIS_TIMEOUT = 1  # seconds: redis-server's own idle timeout for clients


def listener(primary: int, replica: int) -> list[dict[str, object]]:
    return [{
        "name": "redis", "listen": "127.0.0.1:0", "connect_timeout": 0.5,
        "close_on_down": True, "failback_delay": 2.0,
        "health": {"kind": "send_expect", "send": "PING\r\n", "expect": "+PONG",
                   "interval": INTERVAL, "timeout": TIMEOUT, "rise": RISE, "fall": FALL},
        "retry": {"attempts": 4, "deadline": "4s", "backoff_initial": "50ms"},
        "backends": [
            {"name": "primary", "address": f"127.0.0.1:{primary}", "tier": 0},
            {"name": "replica", "address": f"127.0.0.1:{replica}", "tier": 1}],
    }]


class Bystander(threading.Thread):
    """One long session that PINGs more often than Redis' timeout; records how it ended."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.stop_event = stop
        self.error = ""
        self.pongs = 0

    def run(self) -> None:
        deadline = time.monotonic() + 60
        try:
            while not self.stop_event.is_set() and time.monotonic() < deadline:
                self.sock.sendall(b"PING\r\n")
                reply = self.sock.recv(64)
                if not reply.startswith(b"+PONG"):
                    self.error = f"reply {reply!r}"
                    return
                self.pongs += 1
                self.stop_event.wait(0.2)
        except OSError as exc:
            self.error = repr(exc)
        finally:
            self.sock.close()


def quit_then_write(port: int, pause: float) -> None:
    """QUIT, then 2 KB more: Redis has closed, its kernel answers the late bytes with RST."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"QUIT\r\n")
        if pause:
            time.sleep(pause)
        try:
            s.sendall(b"x" * 2048)
            time.sleep(0.1)
            s.sendall(b"y" * 2048)
            s.recv(4096)
        except OSError:
            pass


def idle_then_write(port: int) -> None:
    """Silent past Redis' timeout (Redis closes with FIN), then writes: RST."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        time.sleep(REDIS_TIMEOUT + 1.0)
        try:
            s.sendall(b"PING\r\n" * 300)
            time.sleep(0.1)
            s.sendall(b"PING\r\n" * 300)
            s.recv(4096)
        except OSError:
            pass


def active_tier(relay) -> int:  # type: ignore[no-untyped-def]
    status, body = relay.http("GET", "/status")
    assert status == 200, body
    (lst,) = json.loads(body)["listeners"]
    return int(lst["active_tier"])


@pytest.mark.parametrize("workers", [1, 2])
def test_quit_and_idle_clients_leave_primary_serving(tmp_path, start_relay, workers):
    server_bin = require_tool("redis-server")
    p_port, r_port = free_port(), free_port()
    opts = ("--timeout", str(REDIS_TIMEOUT))
    primary = RedisServer(server_bin, p_port, str(tmp_path), extra=opts).start()
    replica = RedisServer(server_bin, r_port, str(tmp_path),
                          extra=(*opts, "--replicaof", "127.0.0.1", str(p_port))).start()
    stop = threading.Event()
    bystanders: list[Bystander] = []
    try:
        relay = start_relay(listener(p_port, r_port), runtime={"workers": workers})
        port = relay.port()
        time.sleep(2 * INTERVAL)  # first checks done
        assert active_tier(relay) == 0
        bystanders = [Bystander(port, stop) for _ in range(BYSTANDERS)]
        for b in bystanders:
            b.start()
        hostile = [threading.Thread(target=quit_then_write, args=(port, 0.05 * (i % 3)))
                   for i in range(QUITTERS)]
        hostile += [threading.Thread(target=idle_then_write, args=(port,)) for _ in range(IDLERS)]
        for t in hostile:
            t.start()
        tiers = []
        deadline = time.monotonic() + REDIS_TIMEOUT + 1.0 + 3 * INTERVAL + 2.0
        while time.monotonic() < deadline:
            tiers.append(active_tier(relay))
            time.sleep(0.1)
        for t in hostile:
            t.join(30)
        stop.set()
        for b in bystanders:
            b.join(30)
        reset = [b.error for b in bystanders if b.error]
        downs = relay.count("backend_down")
        print(f"\nhostile clients: {len(reset)}/{BYSTANDERS} bystanders reset, "
              f"backend_down events {downs}, tiers seen {sorted(set(tiers))}")
        assert reset == [], reset[:5]
        assert all(b.pongs > 0 for b in bystanders)
        assert set(tiers) == {0}
        assert downs == 0
        assert redis_port_of("127.0.0.1", port) == p_port  # the primary still serves
    finally:
        stop.set()
        for b in bystanders:
            b.join(10)
        primary.stop()
        replica.stop()
