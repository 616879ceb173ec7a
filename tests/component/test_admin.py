"""The admin HTTP API of a real relay process: routes, errors, tokens, hostile clients."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.support.named import Named, ask
from tests.support.wait import wait_for

TOKEN = "s3cret-token"




def listeners(primary: Named, backup: Named, **extra: object) -> list[dict[str, object]]:
    settings: dict[str, object] = {
        "name": "db", "listen": "127.0.0.1:0", "failback": "manual",
        "health": {"kind": "send_expect", "send": "PING\n", "expect": "+PONG",
                   "interval": 0.2, "timeout": 0.1, "rise": 1, "fall": 1},
        "retry": {"attempts": 3, "deadline": "3s", "backoff_initial": "20ms"},
        "backends": [{"name": "primary", "address": f"127.0.0.1:{primary.port}", "tier": 0},
                     {"name": "backup", "address": f"127.0.0.1:{backup.port}", "tier": 1}],
    }
    settings.update(extra)
    return [settings]


@pytest.fixture
def relay(pair, start_relay, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    return start_relay(listeners(*pair), admin={"token_file": str(token_file)})


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_get_routes_answer(relay):
    assert relay.http("GET", "/healthz") == (200, "ok\n")
    assert relay.http("GET", "/readyz") == (200, "ready\n")
    status, body = relay.http("GET", "/metrics")
    assert status == 200 and "relay_backend_up{" in body
    status, body = relay.http("GET", "/status")
    doc = json.loads(body)
    (db,) = doc["listeners"]
    assert db["name"] == "db" and db["active_tier"] == 0
    assert [(b["name"], b["tier"], b["state"], b["admin_state"]) for b in db["backends"]] == [
        ("primary", 0, "up", "ready"), ("backup", 1, "up", "ready")]
    assert {"address", "sessions", "last_check_seconds_ago", "last_error"} <= set(db["backends"][0])


def test_head_is_answered_without_body(relay):
    assert relay.http("HEAD", "/healthz") == (200, "")


def test_unknown_paths_are_404(relay):
    for path in ("/nope", "/index.html", "/healthz/", "/backends/db/primary/sleep", "/listeners/db/oops",
                 "/backends/db/primary"):
        assert relay.http("GET", path)[0] == 404, path


def test_wrong_methods_are_405(relay):
    assert relay.http("POST", "/healthz", AUTH)[0] == 405
    assert relay.http("DELETE", "/status", AUTH)[0] == 405
    assert relay.http("GET", "/backends/db/primary/drain")[0] == 405
    assert relay.http("GET", "/listeners/db/failback")[0] == 405


def test_post_needs_the_right_token(relay):
    assert relay.http("POST", "/backends/db/primary/drain")[0] == 401
    assert relay.http("POST", "/backends/db/primary/drain",
                      {"Authorization": "Bearer wrong"})[0] == 401
    assert relay.http("POST", "/backends/db/primary/drain",
                      {"Authorization": f"Basic {TOKEN}"})[0] == 401
    status, body = relay.http("POST", "/backends/db/primary/drain", AUTH)
    assert status == 200 and json.loads(body)["admin_state"] == "drain"


def test_unknown_listener_or_backend_is_404(relay):
    assert relay.http("POST", "/backends/nope/primary/drain", AUTH)[0] == 404
    assert relay.http("POST", "/backends/db/nope/drain", AUTH)[0] == 404
    assert relay.http("POST", "/listeners/nope/failback", AUTH)[0] == 404


def test_operator_flow_drain_maint_ready_and_manual_failback(relay, pair):
    primary, _ = pair
    port = relay.port()
    wait_for(lambda: all(b["checked"] for b in json.loads(relay.http("GET", "/status")[1])
                         ["listeners"][0]["backends"]))
    held = socket.create_connection(("127.0.0.1", port))
    reader = held.makefile("rb")
    try:
        held.sendall(b"WHO\n")
        assert reader.readline() == b"primary\n"
        assert relay.http("POST", "/backends/db/primary/drain", AUTH)[0] == 200
        assert ask(port) == "backup"  # new sessions go to the next backend
        held.sendall(b"WHO\n")
        assert reader.readline() == b"primary\n"  # the existing one stays
        assert relay.http("POST", "/backends/db/primary/maint", AUTH)[0] == 200
        held.settimeout(5)
        try:
            closed = reader.readline() == b""
        except ConnectionResetError:
            closed = True
        assert closed  # maint closes its sessions
        checks = relay.http("GET", "/status")[1]
        before = json.loads(checks)["listeners"][0]["backends"][0]["last_check_seconds_ago"]
        time.sleep(0.6)
        after = json.loads(relay.http("GET", "/status")[1])["listeners"][0]["backends"][0]
        assert after["last_check_seconds_ago"] >= before + 0.5  # no checks in maint
        assert relay.http("POST", "/backends/db/primary/ready", AUTH)[0] == 200
        assert ask(port) == "backup"  # failback is manual (held: tests/unit/test_backend_group.py)
        primary.stop()
        wait_for(lambda: '"state": "down"' in relay.http("GET", "/status")[1])
        status, body = relay.http("POST", "/listeners/db/failback", AUTH)
        assert status == 409 and "tier 0" in body
        primary.start()
        wait_for(lambda: json.loads(relay.http("GET", "/status")[1])
                 ["listeners"][0]["backends"][0]["state"] == "up")
        status, body = relay.http("POST", "/listeners/db/failback", AUTH)
        assert status == 200 and json.loads(body) == {"listener": "db", "active_tier": 0}
        assert ask(port) == "primary"
    finally:
        reader.close()
        held.close()


def test_readyz_is_503_with_reason_when_a_listener_has_no_backend_up(relay, pair):
    for backend in ("primary", "backup"):
        relay.http("POST", f"/backends/db/{backend}/maint", AUTH)
    status, body = relay.http("GET", "/readyz")
    assert status == 503 and "listener db: no backend up" in body


def _raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        try:
            conn.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while chunk := conn.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


@pytest.mark.parametrize("request_line", [
    b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET /healthz HTTP/9.9\r\n\r\n",
    b"\x00\x01\x02\r\n\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
])
def test_malformed_requests_get_400_and_relay_goes_on(relay, request_line):
    answer = _raw(relay.admin_port, request_line)
    assert answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"HTTP/1.1 505"), answer[:80]
    assert relay.http("GET", "/healthz")[0] == 200


def test_a_1_mb_header_is_refused_and_relay_goes_on(relay):
    big = b"GET /status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    answer = _raw(relay.admin_port, big)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:80]
    assert relay.http("GET", "/healthz")[0] == 200
    assert relay.proc.poll() is None


def test_a_big_body_is_413(relay):
    body = b"x" * (200 * 1024)
    request = (b"POST /backends/db/primary/drain HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
               + TOKEN.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
               + b"\r\n\r\n" + body)
    assert _raw(relay.admin_port, request).startswith(b"HTTP/1.1 413")


def test_keep_alive_serves_several_requests_on_one_connection(relay):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", relay.admin_port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"ok\n")
    finally:
        conn.close()


def test_a_slow_client_does_not_stall_relay(relay):
    """One byte a second to the admin port: sessions and other admin requests go on."""
    slow = socket.create_connection(("127.0.0.1", relay.admin_port))
    stop = threading.Event()

    def trickle() -> None:
        for byte in b"GET /status HTTP/1.1\r\n":
            if stop.wait(1.0):
                return
            try:
                slow.send(bytes([byte]))
            except OSError:
                return

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            assert ask(relay.port()) == "primary"
            assert relay.http("GET", "/healthz", timeout=2)[0] == 200
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(5)
        slow.close()


def test_at_the_connection_cap_the_oldest_idle_clients_make_room(relay):
    """80 idle connections against a cap of 64: the 16 oldest are closed, newcomers served."""
    idle = [socket.create_connection(("127.0.0.1", relay.admin_port)) for _ in range(80)]
    try:
        time.sleep(0.3)
        closed = 0
        for conn in idle[:16]:
            conn.settimeout(2)
            try:
                closed += conn.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
        assert closed == 16
        newest = idle[-1]
        newest.settimeout(5)
        newest.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert newest.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for conn in idle:
            conn.close()
    assert relay.http("GET", "/healthz")[0] == 200


def test_a_long_pipeline_of_scrapes_is_answered_in_order_and_in_full(relay):
    """1,500 pipelined GET /metrics from a client that reads: every one answered, in order,
    with the same series (the second onwards from the cached render)."""
    count = 1500
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", relay.admin_port), timeout=30) as conn:
        sender = threading.Thread(target=conn.sendall, args=(request * count,))
        sender.start()
        got = bytearray()
        deadline = time.monotonic() + 60
        # the last answer's body too, not just its status line
        while got.count(b"relay_backend_up{") < 2 * count and time.monotonic() < deadline:
            data = conn.recv(1 << 20)
            assert data, f"closed after {got.count(b'HTTP/1.1 200 OK')} answers"
            got += data
        sender.join(10)
    assert got.count(b"HTTP/1.1 200 OK\r\n") == count
    assert got.count(b"relay_backend_up{") == 2 * count
