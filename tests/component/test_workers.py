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
from tests.support.wait import refuses, wait_for


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


def test_steady_new_sessions_are_shared_evenly_between_the_workers(echo, start_relay):
    """One accept queue, yet each worker takes its share of sessions held open. While one
    worker is stopped (SIGSTOP) the other takes every new client (none waits for the stopped
    one); once it runs again it takes new clients until both hold half (before, each new
    client went to whichever worker the kernel woke first: the early imbalance stayed)."""
    relay = start_two(start_relay, [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}],
                      health={"kind": "none"})
    conns: list[socket.socket] = []

    def open_sessions(n: int) -> None:
        for _ in range(n):
            conn = socket.create_connection(("127.0.0.1", relay.port()), timeout=30)
            conns.append(conn)
            tag = b"%04d" % len(conns)
            conn.sendall(tag)
            got = b""
            while len(got) < 4:
                got += conn.recv(4 - len(got))
            assert got == tag

    def per_worker() -> list[int]:
        return [w["sessions"] for w in status(relay)["workers"]]

    stopped = status(relay)["workers"][0]["pid"]
    try:
        os.kill(stopped, signal.SIGSTOP)
        try:
            open_sessions(80)  # all on the running worker
        finally:
            os.kill(stopped, signal.SIGCONT)
        open_sessions(120)  # 200 in all
        wait_for(lambda: sum(per_worker()) == 200)
        shares = per_worker()
        assert len(shares) == 2 and all(80 <= n <= 120 for n in shares), shares
    finally:
        for conn in conns:
            conn.close()


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
        wait_for(lambda: count[0] >= 20)  # traffic flows through both workers
        victim = status(relay)["workers"][0]["pid"]
        kill_started = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        kill_sent = time.monotonic()
        wait_for(lambda: victim not in [w["pid"] for w in status(relay)["workers"]]
                 and len(status(relay)["workers"]) == 2)
        after_respawn = count[0]
        wait_for(lambda: count[0] >= after_respawn + 20)  # and goes on after the respawn
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
        wait_for(lambda: refuses(relay.port()))  # the listening socket is closed
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


# --- workers run the supervisor's configuration, never the file on disk ------------------


def _pids(relay) -> set[int]:
    return {w["pid"] for w in status(relay)["workers"] if w.get("ready", True)}


def _kill_and_wait_for_replacements(relay, victims: list[int]) -> None:
    before = _pids(relay)
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: len(_pids(relay) - before) == len(victims) and len(_pids(relay)) == 2,
             timeout=20)


def test_a_restarted_worker_serves_the_running_config_not_the_edited_file(start_relay):
    from tests.support.relayproc import toml_config

    running, edited = Named("running"), Named("edited")
    try:
        relay = start_two(start_relay, [{"name": "b", "address": f"127.0.0.1:{running.port}"}],
                          health={"kind": "none"})
        port = relay.port()
        # Edited, not reloaded: the backend moved in the file only.
        relay.config_path.write_text(toml_config(
            [{"name": "w", "listen": f"127.0.0.1:{port}", "health": {"kind": "none"},
              "backends": [{"name": "b", "address": f"127.0.0.1:{edited.port}"}]}],
            {"workers": 2}, admin_port=relay.admin_port))
        _kill_and_wait_for_replacements(relay, sorted(_pids(relay)))
        answers = {ask(port) for _ in range(40)}  # spread over both new workers
        assert answers == {"running"}, answers
    finally:
        running.stop()
        edited.stop()


def test_workers_killed_while_the_file_is_broken_come_back_and_readyz_shows_the_shortfall(
        echo, start_relay):
    relay = start_two(start_relay, [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}],
                      health={"kind": "none"})
    assert relay.http("GET", "/readyz")[0] == 200
    relay.config_path.write_text("[[listener]\nbroken = \n")
    seen: list[tuple[int, str]] = []

    def shortfall_seen() -> bool:
        code, body = relay.http("GET", "/readyz")
        seen.append((code, body))
        return code == 503 and "workers: 1 of 2 running" in body

    victim = sorted(_pids(relay))[0]
    os.kill(victim, signal.SIGKILL)
    # the replacement starts after the supervisor's backoff (0.5 s for a quick death)
    wait_for(shortfall_seen, timeout=10, step=0.02)
    wait_for(lambda: relay.http("GET", "/readyz")[0] == 200, timeout=20)
    _kill_and_wait_for_replacements(relay, sorted(_pids(relay)))
    wait_for(lambda: relay.http("GET", "/readyz")[0] == 200, timeout=20)
    for i in range(20):
        with socket.create_connection(("127.0.0.1", relay.port()), timeout=10) as conn:
            conn.sendall(b"%02d" % i)
            assert conn.recv(2) == b"%02d" % i
    died = [e for e in relay.events if e.get("event") == "worker_died"]
    assert len(died) == 3 and all("retry_in" in e for e in died), died
    assert relay.count("worker_start_failed") == 0


# --- counters are exact: a worker killed with SIGKILL loses none ---------------------------


def test_a_worker_killed_right_after_a_burst_loses_no_accepted_connection(echo, start_relay):
    relay = start_two(start_relay, [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}],
                      health={"kind": "none"})
    n = 600
    for i in range(n):
        with socket.create_connection(("127.0.0.1", relay.port()), timeout=10) as conn:
            conn.sendall(b"%04d" % i)
            assert conn.recv(4) == b"%04d" % i
    for pid in _pids(relay):
        os.kill(pid, signal.SIGKILL)  # no chance to report anything

    def accepted() -> float:
        return value(samples(relay.http("GET", "/metrics")[1]),
                     "relay_connections_accepted_total", listener="w")

    wait_for(lambda: len(_pids(relay)) == 2 and relay.count("worker_died") == 2, timeout=20)
    readings = []

    def stable() -> bool:
        readings.append(accepted())
        return len(readings) >= 3 and readings[-1] == readings[-2] == readings[-3]

    wait_for(stable, timeout=15, step=0.5)
    assert readings[-1] == n, readings


@pytest.mark.parametrize("workers", [1, 2])
def test_a_renamed_backend_counts_its_open_sessions_bytes_then_its_series_go(
        echo, start_relay, workers):
    from tests.component.test_reload import reload
    from tests.support.relayproc import toml_config

    backends = [{"name": "old", "address": f"127.0.0.1:{echo.port}"}]
    relay = start_two(start_relay, backends, health={"kind": "none"}) if workers == 2 else \
        start_relay([{"name": "w", "listen": "127.0.0.1:0", "health": {"kind": "none"},
                      "backends": backends}])
    port = relay.port()
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
    try:
        for conn in held:
            conn.sendall(b"x" * 1000)
            got = b""
            while len(got) < 1000:
                got += conn.recv(1000 - len(got))
        reload(relay, toml_config([{"name": "w", "listen": f"127.0.0.1:{port}",
                                    "health": {"kind": "none"},
                                    "backends": [{"name": "new",
                                                  "address": f"127.0.0.1:{echo.port}"}]}],
                                  {"workers": workers}), "reload")
        for conn in held:  # the old generation relays these on, on "old"
            conn.sendall(b"y" * 500)
            got = b""
            while len(got) < 500:
                got += conn.recv(500 - len(got))
        wait_for(lambda: samples(relay.http("GET", "/metrics")[1]).get(
            ("relay_connections_active", (("backend", "old"), ("listener", "w")))) == 4)
    finally:
        for conn in held:
            conn.close()
    old_up = ("relay_bytes_total", (("backend", "old"), ("direction", "upstream"),
                                    ("listener", "w")))
    wait_for(lambda: samples(relay.http("GET", "/metrics")[1]).get(old_up) == 6000, timeout=15)
    wait_for(lambda: not any(("backend", "old") in labels
                             for _, labels in samples(relay.http("GET", "/metrics")[1])),
             timeout=15)
    m = samples(relay.http("GET", "/metrics")[1])
    assert ("relay_connections_active", (("backend", "new"), ("listener", "w"))) in m


def test_sigterm_while_workers_are_being_spawned_stops_the_spawning(echo, start_relay):
    relay = start_relay([{"name": "w", "listen": "127.0.0.1:0", "health": {"kind": "none"},
                          "backends": [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}]}],
                        runtime={"workers": 32}, wait=False)
    relay.wait_event(lambda e: e.get("event") == "worker_started", timeout=15)
    relay.signal(signal.SIGTERM)
    assert relay.wait(30) == 0
    assert relay.count("worker_started") < 32
