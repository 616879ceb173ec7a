"""What clients can make relay do to backends and to its own logs (product.md §4,
"Untrusted load"; "Health"; retry order)."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import time

from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import EchoServer, ThreadServer
from tests.support.wait import wait_for


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connect_errors(relay) -> float:  # type: ignore[no-untyped-def]
    status, text = relay.http("GET", "/metrics")
    assert status == 200
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "relay_backend_connect_errors_total")


def active_tier(relay) -> int:  # type: ignore[no-untyped-def]
    status, body = relay.http("GET", "/status")
    assert status == 200, body
    return int(json.loads(body)["listeners"][0]["active_tier"])


def clients_until_closed(port: int, n: int, limit: float = 30.0) -> float:
    """n clients at once; returns the seconds until relay closed the last of them."""
    sel = selectors.DefaultSelector()
    socks = []
    t0 = time.monotonic()
    try:
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
            sel.register(s, selectors.EVENT_READ)
        open_ = n
        deadline = t0 + limit
        while open_ and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(1)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                assert not data
                sel.unregister(sock)
                open_ -= 1
        assert open_ == 0, f"{open_} clients still held"
        return time.monotonic() - t0
    finally:
        sel.close()
        for s in socks:
            s.close()


def steps_within(window: float, initial: float, maximum: float, multiplier: float,
                 jitter: float) -> int:
    """How many times a gate stepping by these backoffs (shortest jitter) opens in `window`."""
    opens, t, step = 1, 0.0, 0
    while True:
        t += min(initial * multiplier ** step, maximum) * (1 - jitter)
        if t > window:
            return opens
        opens += 1
        step += 1


def test_every_backend_down_clients_cost_one_connect_per_backend_per_backoff_step(start_relay):
    clients, backends = 200, 2
    retry = {"attempts": 4, "deadline": "5s", "backoff_initial": "50ms", "backoff_max": "1s",
             "multiplier": 2.0, "jitter": 0.2}
    relay = start_relay([{
        "name": "t", "listen": "127.0.0.1:0",
        "health": {"kind": "tcp", "interval": "500ms", "fall": 1},
        "retry": retry,
        "backends": [{"name": f"b{i}", "address": f"127.0.0.1:{_closed_port()}", "tier": i}
                     for i in range(backends)]}])
    for i in range(backends):
        relay.wait_event(lambda e, i=i: e.get("event") == "backend_down" and e.get("backend") == f"b{i}")
    before = connect_errors(relay)
    window = clients_until_closed(relay.port(), clients)
    attempts = connect_errors(relay) - before
    lines = relay.count("connect_failed")
    bound = backends * steps_within(window + 0.5, 0.05, 1.0, 2.0, 0.2)
    print(f"\nevery backend down: {clients} clients, {attempts:.0f} connect attempts "
          f"({attempts / clients:.2f} per client) in {window:.2f} s (bound {bound}); "
          f"{lines} connect_failed lines")
    assert attempts <= bound
    assert lines <= backends * (2 + window / 10)


def test_an_untried_backup_is_tried_at_once_without_a_backoff(echo: EchoServer, start_relay):
    """A refused primary costs a client one refused connect, not a backoff step."""
    backoff = 2.0
    relay = start_relay([{
        "name": "t", "listen": "127.0.0.1:0", "health": {"kind": "none"},
        "retry": {"attempts": 4, "deadline": "10s", "backoff_initial": f"{backoff}s",
                  "backoff_max": f"{backoff}s",
                  "jitter": 0.2},
        "backends": [{"name": "primary", "address": f"127.0.0.1:{_closed_port()}", "tier": 0},
                     {"name": "backup", "address": f"127.0.0.1:{echo.port}", "tier": 1}]}])
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", relay.port()), timeout=10) as conn:
        conn.sendall(b"ping")
        assert conn.recv(4) == b"ping"
    took = time.monotonic() - t0
    print(f"\nrefused primary: served by the backup after {took * 1000:.0f} ms")
    assert took < backoff * (1 - 0.2)  # less than the shortest backoff step


def _reset_before_a_word(conn: socket.socket) -> None:
    """Reads one byte of what came and closes: the unread rest turns the close into RST."""
    conn.recv(1)
    time.sleep(0.05)
    conn.close()


def test_a_client_provoking_resets_leaves_a_single_backend_serving(start_relay):
    backend = ThreadServer(_reset_before_a_word)
    try:
        relay = start_relay([{
            "name": "t", "listen": "127.0.0.1:0",
            "health": {"kind": "tcp", "interval": "3s", "rise": 1, "fall": 3},
            "backends": [{"name": "only", "address": f"127.0.0.1:{backend.port}"}]}])
        wait_for(lambda: json.loads(relay.http("GET", "/status")[1])  # the first check done:
                 ["listeners"][0]["backends"][0]["checked"])  # the backend is trusted
        tiers = []
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", relay.port()), timeout=5) as conn:
                conn.sendall(b"x" * 4096)
                with contextlib.suppress(OSError):
                    conn.recv(1)
            tiers.append(active_tier(relay))
        for _ in range(10):
            tiers.append(active_tier(relay))
            time.sleep(0.05)
        assert set(tiers) == {0}, tiers
        assert relay.count("backend_down") == 0
    finally:
        backend.close()


def test_clients_held_while_every_gate_is_closed_are_served_when_a_backend_returns(start_relay):
    """With nothing available, clients beyond the gate's one connect per step are held (up
    to retry.deadline), not refused: when the backend comes back, every one is served."""
    port = _closed_port()
    relay = start_relay([{
        "name": "t", "listen": "127.0.0.1:0",
        "health": {"kind": "tcp", "interval": "200ms", "rise": 1, "fall": 1},
        "retry": {"attempts": 4, "deadline": "8s", "backoff_initial": "100ms",
                  "backoff_max": "300ms"},
        "backends": [{"name": "only", "address": f"127.0.0.1:{port}"}]}])
    relay.wait_event(lambda e: e.get("event") == "backend_down")
    clients = [socket.create_connection(("127.0.0.1", relay.port()), timeout=10)
               for _ in range(20)]
    try:
        time.sleep(0.5)  # the clients wait while the backend is away (several gate steps)
        def echo(conn: socket.socket) -> None:
            while data := conn.recv(4096):
                conn.sendall(data)

        backend = ThreadServer(echo, port=port)  # the backend is back, on the same port
        try:
            for i, conn in enumerate(clients):
                message = f"client {i}\n".encode()
                conn.sendall(message)
                assert conn.recv(100) == message
        finally:
            backend.close()
    finally:
        for conn in clients:
            conn.close()
