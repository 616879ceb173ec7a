"""SIGHUP reload: applied in place without cutting sessions, or rejected without changing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import threading
import time

from tests.component.test_metrics import samples, value
from tests.support.redis import free_port
from tests.support.relayproc import toml_config
from tests.support.wait import wait_for


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reload(relay, text: str, expect: str) -> None:
    before = relay.count(expect)
    relay.config_path.write_text(text)
    relay.signal(signal.SIGHUP)
    wait_for(lambda: relay.count(expect) > before, step=0.02,
             message=lambda: f"no {expect} event; relay said:\n" + "\n".join(relay.raw[-5:]))


def _status(relay) -> dict:
    return json.loads(relay.http("GET", "/status")[1])


def _backend(relay, listener: str, backend: str) -> dict:
    for lst in _status(relay)["listeners"]:
        if lst["name"] == listener:
            for b in lst["backends"]:
                if b["name"] == backend:
                    return b
    raise AssertionError((listener, backend))


def test_twenty_reloads_under_streaming_load_lose_nothing(echo, start_relay):
    dead_port = _closed_port()

    def listeners(variant: int) -> list[dict[str, object]]:
        live: dict[str, object] = {
            "name": "live", "listen": f"127.0.0.1:{live_port}",
            "idle_timeout": f"{60 + variant}s", "access_log": variant % 2 == 0,
            "health": {"interval": "200ms", "timeout": "100ms"},
            "backends": [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}]}
        dead = {"name": "dead", "listen": "127.0.0.1:0",
                "health": {"interval": "200ms", "timeout": "100ms", "fall": 2, "rise": 2},
                "backends": [{"name": "gone", "address": f"127.0.0.1:{dead_port}"}]}
        return [live, dead]

    live_port = free_port()
    relay = start_relay(listeners(0))
    if True:
        relay.wait_event(lambda e: e.get("event") == "backend_down" and e.get("backend") == "gone")
        stop = threading.Event()
        failures: list[str] = []
        sessions = [0]

        def stream() -> None:
            while not stop.is_set():
                payload = os.urandom(256 * 1024)
                try:
                    with socket.create_connection(("127.0.0.1", live_port), timeout=10) as conn:
                        got = bytearray()

                        def read(got: bytearray = got, payload: bytes = payload) -> None:
                            while len(got) < len(payload):
                                chunk = conn.recv(65536)
                                if not chunk:
                                    return
                                got.extend(chunk)

                        reader = threading.Thread(target=read)
                        reader.start()
                        for i in range(0, len(payload), 16384):  # spread over time
                            conn.sendall(payload[i:i + 16384])
                            time.sleep(0.002)
                        reader.join(20)
                    if hashlib.sha256(got).digest() != hashlib.sha256(payload).digest():
                        failures.append(f"corrupt: {len(got)} of {len(payload)} bytes")
                    sessions[0] += 1
                except OSError as exc:
                    failures.append(repr(exc))

        workers = [threading.Thread(target=stream) for _ in range(3)]
        for w in workers:
            w.start()
        try:
            for i in range(20):
                if i % 2:
                    reload(relay, "[[listener]\nbroken = \n", "reload_rejected")
                else:
                    reload(relay, toml_config(listeners(i + 1)), "reload")
                time.sleep(0.1)
        finally:
            stop.set()
            for w in workers:
                w.join(30)
        assert failures == [], failures[:3]
        assert sessions[0] >= 6
        m = samples(relay.http("GET", "/metrics")[1])
        assert value(m, "relay_config_reloads_total", result="success") == 10
        assert value(m, "relay_config_reloads_total", result="failure") == 10
        # the dead backend stayed down through 10 applied reloads, without a new fall cycle
        assert _backend(relay, "dead", "gone")["state"] == "down"
        assert value(m, "relay_backend_transitions_total", listener="dead", backend="gone",
                     to="down") == 1
        assert relay.count("backend_down") == 1


def test_removed_listener_closes_its_port_and_lets_sessions_finish(echo, start_relay):
    port_a, port_b = free_port(), free_port()
    backends = [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}]
    relay = start_relay([{"name": "a", "listen": f"127.0.0.1:{port_a}", "backends": backends},
                         {"name": "b", "listen": f"127.0.0.1:{port_b}", "backends": backends}])
    held = socket.create_connection(("127.0.0.1", port_b))
    try:
        held.sendall(b"before")
        assert held.recv(6) == b"before"
        only_a = toml_config([{"name": "a", "listen": f"127.0.0.1:{port_a}", "backends": backends}],
                             None)
        reload(relay, only_a, "reload")
        try:
            socket.create_connection(("127.0.0.1", port_b), timeout=2).close()
            raise AssertionError("the removed listener still accepts")
        except ConnectionRefusedError:
            pass
        held.sendall(b"after")  # its session goes on
        assert held.recv(5) == b"after"
        with socket.create_connection(("127.0.0.1", port_a)) as conn:
            conn.sendall(b"a")
            assert conn.recv(1) == b"a"
    finally:
        held.close()


def test_added_listener_moved_listen_and_admin_address_take_effect(echo, start_relay):
    backends = [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}]
    relay = start_relay([{"name": "a", "listen": "127.0.0.1:0", "backends": backends}])
    old_port = relay.port("a")
    held = socket.create_connection(("127.0.0.1", old_port))
    new_a, new_c, new_admin = free_port(), free_port(), free_port()
    try:
        held.sendall(b"x")
        assert held.recv(1) == b"x"
        text = toml_config([{"name": "a", "listen": f"127.0.0.1:{new_a}", "backends": backends},
                            {"name": "c", "listen": f"127.0.0.1:{new_c}", "backends": backends}],
                           None, admin_port=new_admin)
        reload(relay, text, "reload")
        for port in (new_a, new_c):
            with socket.create_connection(("127.0.0.1", port)) as conn:
                conn.sendall(b"y")
                assert conn.recv(1) == b"y"
        held.sendall(b"z")  # the session accepted on the old address goes on
        assert held.recv(1) == b"z"
        relay.admin_port = new_admin
        assert relay.http("GET", "/healthz")[0] == 200
    finally:
        held.close()


def test_invalid_or_unbindable_reload_changes_nothing(echo, start_relay):
    backends = [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}]
    relay = start_relay([{"name": "a", "listen": "127.0.0.1:0", "backends": backends}])
    port = relay.port("a")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        text = toml_config([{"name": "a", "listen": f"127.0.0.1:{port}", "backends": backends},
                            {"name": "b", "listen": f"127.0.0.1:{taken}", "backends": backends}],
                           None)
        reload(relay, text, "reload_rejected")
    event = [e for e in relay.events if e.get("event") == "reload_rejected"][-1]
    assert "listener[1].listen" in str(event["problem"]) and "in use" in str(event["problem"])
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"k")
        assert conn.recv(1) == b"k"
    assert [lst["name"] for lst in _status(relay)["listeners"]] == ["a"]


def test_a_reload_to_a_file_that_cannot_run_is_refused_and_counted_as_failure(echo, start_relay,
                                                                               tmp_path):
    from tests.unit.test_cli import _cannot_run

    backends = [{"name": "echo", "address": f"127.0.0.1:{echo.port}"}]
    relay = start_relay([{"name": "a", "listen": "127.0.0.1:0", "backends": backends}])
    port = relay.port("a")
    cases = _cannot_run(tmp_path)
    for name, text, expected in cases:
        reload(relay, text, "reload_rejected")
        event = [e for e in relay.events if e.get("event") == "reload_rejected"][-1]
        assert expected in str(event["problem"]), (name, event)
    assert relay.proc.poll() is None
    assert "Traceback" not in "\n".join(relay.raw)
    m = samples(relay.http("GET", "/metrics")[1])
    assert value(m, "relay_config_reloads_total", result="failure") == len(cases)
    assert value(m, "relay_config_reloads_total", result="success") == 0
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"k")
        assert conn.recv(1) == b"k"
