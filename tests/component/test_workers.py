"""workers = 2: a supervisor and two workers sharing the listening sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest

from tests.component.test_metrics import samples, value
from tests.support.named import Named, ask
from tests.support.wait import wait_for


@pytest.fixture(autouse=True)
def _enough_fds(many_fds):
    yield


def status(relay) -> dict:
    return json.loads(relay.http("GET", "/status")[1])


def start_two(start_relay, backends, **listener):
    settings = {"name": "w", "listen": "127.0.0.1:0", "backends": backends}
    settings.update(listener)
    relay = start_relay([settings], runtime={"workers": 2})
    wait_for(lambda: len(status(relay)["workers"]) == 2, timeout=15)
    # both workers announced their listener: they accept from the shared queue
    wait_for(lambda: relay.count("listener_open") >= 3)
    return relay


def test_2000_sessions_spread_over_both_workers_and_metrics_add_up(echo, start_relay):
    relay = start_two(start_relay, [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}],
                      health={"kind": "none"})
    conns = []
    try:
        for i in range(2000):
            conn = socket.create_connection(("127.0.0.1", relay.port()), timeout=30)
            conn.sendall(b"%06d" % i)
            conns.append(conn)
        for i, conn in enumerate(conns):
            got = b""
            while len(got) < 6:
                got += conn.recv(6 - len(got))
            assert got == b"%06d" % i
        wait_for(lambda: status(relay)["sessions"] == 2000)
        per_worker = [w["sessions"] for w in status(relay)["workers"]]
        assert sum(per_worker) == 2000 and min(per_worker) > 0, per_worker
        m = samples(relay.http("GET", "/metrics")[1])
        assert value(m, "relay_connections_active", listener="w", backend="echo") == 2000
    finally:
        for conn in conns:
            conn.close()

    def totals():
        m = samples(relay.http("GET", "/metrics")[1])
        return (value(m, "relay_connections_accepted_total", listener="w"),
                value(m, "relay_bytes_total", listener="w", backend="echo", direction="upstream"),
                value(m, "relay_bytes_total", listener="w", backend="echo", direction="downstream"),
                value(m, "relay_connections_active", listener="w", backend="echo"))

    wait_for(lambda: totals() == (2000, 12000, 12000, 0))


def test_a_killed_worker_is_replaced_and_new_connections_never_fail(echo, start_relay):
    relay = start_two(start_relay, [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}],
                      health={"kind": "none"})
    port = relay.port()
    errors: list[tuple[float, float, str]] = []  # (opened, failed, error)
    done = threading.Event()
    count = [0]

    def loop() -> None:
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            opened = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                    conn.sendall(b"ping")
                    assert conn.recv(4) == b"ping"
                count[0] += 1
            except (OSError, AssertionError) as exc:
                errors.append((opened, time.monotonic(), repr(exc)))
            time.sleep(0.005)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        time.sleep(0.5)
        victim = status(relay)["workers"][0]["pid"]
        kill_started = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        kill_sent = time.monotonic()
        wait_for(lambda: victim not in [w["pid"] for w in status(relay)["workers"]]
                 and len(status(relay)["workers"]) == 2)
        time.sleep(1.0)
    finally:
        done.set()
        thread.join(30)
    # A session the victim was relaying at the instant it died dies with it (as with any
    # proxy process killed): at most that one. Every connection opened after the kill, and
    # those waiting in the accept queue, must work.
    in_flight = [e for e in errors if e[0] <= kill_sent and e[1] >= kill_started]
    assert len(in_flight) <= 1 and len(errors) == len(in_flight), errors[:3]
    assert count[0] > 50
    relay.wait_event(lambda e: e.get("event") == "worker_died" and e.get("pid") == victim)


def test_a_backend_going_down_is_seen_by_every_worker_within_one_interval(start_relay):
    primary, backup = Named("primary"), Named("backup")
    try:
        relay = start_two(start_relay, [
            {"name": "primary", "address": f"127.0.0.1:{primary.port}", "tier": 0},
            {"name": "backup", "address": f"127.0.0.1:{backup.port}", "tier": 1}],
            health={"kind": "send_expect", "send": "PING\n", "expect": "+PONG",
                    "interval": "500ms", "timeout": "200ms", "rise": 1, "fall": 1},
            close_on_down=False)
        assert {ask(relay.port()) for _ in range(20)} == {"primary"}
        primary.healthy = False  # checks fail; connects still work, so only health can tell
        relay.wait_event(lambda e: e.get("event") == "backend_down", timeout=10)
        t_down = time.monotonic()
        time.sleep(0.5)  # one interval
        answers = [ask(relay.port()) for _ in range(40)]  # spread over both workers
        assert set(answers) == {"backup"}, answers
        assert time.monotonic() - t_down < 5
        assert relay.count("backend_down") == 1  # decided (and logged) once, not per worker
    finally:
        primary.stop()
        backup.stop()


def test_sigterm_to_the_supervisor_drains_both_workers_and_exits_0(echo, start_relay):
    relay = start_two(start_relay, [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}],
                      health={"kind": "none"})
    held = [socket.create_connection(("127.0.0.1", relay.port())) for _ in range(8)]
    try:
        for conn in held:
            conn.sendall(b"a")
            assert conn.recv(1) == b"a"
        relay.signal(signal.SIGTERM)
        relay.wait_event(lambda e: e.get("event") == "shutdown")
        time.sleep(0.3)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", relay.port()), timeout=2)
        for conn in held:  # sessions on both workers go on during the drain
            conn.sendall(b"b")
            assert conn.recv(1) == b"b"
    finally:
        for conn in held:
            conn.close()
    assert relay.wait(15) == 0
    assert relay.count("worker_exited") == 2


def test_reload_with_workers_starts_a_new_generation_and_keeps_old_sessions(echo, start_relay):
    from tests.component.test_reload import reload
    from tests.support.relayproc import toml_config

    listener = {"name": "w", "listen": "127.0.0.1:0", "health": {"kind": "none"},
                "backends": [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}]}
    relay = start_two(start_relay, listener["backends"], health={"kind": "none"})
    port = relay.port()
    old = {w["pid"] for w in status(relay)["workers"]}
    held = socket.create_connection(("127.0.0.1", port))
    try:
        held.sendall(b"1")
        assert held.recv(1) == b"1"
        listener["listen"] = f"127.0.0.1:{port}"
        listener["access_log"] = True
        reload(relay, toml_config([listener], {"workers": 2}), "reload")
        wait_for(lambda: len({w["pid"] for w in status(relay)["workers"]} - old) == 2)
        held.sendall(b"2")  # the old generation drains: its session goes on
        assert held.recv(1) == b"2"
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"3")
            assert conn.recv(1) == b"3"
    finally:
        held.close()
    wait_for(lambda: relay.count("worker_exited") == 2)  # the old ones, once drained
    m = samples(relay.http("GET", "/metrics")[1])
    assert value(m, "relay_config_reloads_total", result="success") == 1
