"""Process lifecycle: SIGTERM/SIGINT drain, connect failures, exit codes."""

from __future__ import annotations

import contextlib
import signal
import socket
import time

import pytest

from tests.conftest import one_listener
from tests.support.relayproc import RelayProcess, toml_config
from tests.support.wait import refuses, wait_for


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_closes_listener_at_once_and_drains_sessions(echo, start_relay, signum):
    relay = start_relay(one_listener(echo.port))
    port = relay.port()
    conn = socket.create_connection(("127.0.0.1", port))
    try:
        conn.sendall(b"before")
        assert conn.recv(6) == b"before"
        relay.signal(signum)
        relay.wait_event(lambda e: e.get("event") == "shutdown", timeout=1.0)
        wait_for(lambda: refuses(port, timeout=0.2), timeout=1.0, step=0.02,
                 message="listener still accepting a second after the signal")
        conn.sendall(b"during drain")  # the open session goes on
        assert conn.recv(12) == b"during drain"
        assert relay.proc.poll() is None
    finally:
        conn.close()
    assert relay.wait(10) == 0


def test_a_stopping_relay_exits_when_its_last_session_closes_not_before(echo, start_relay):
    """The loop stops when the last session closes (not the first, not at shutdown_grace):
    the grace (60 s) is far beyond the waits here."""
    relay = start_relay(one_listener(echo.port, access_log=True),
                        runtime={"shutdown_grace": "60s"})
    conns = [socket.create_connection(("127.0.0.1", relay.port())) for _ in range(3)]
    try:
        for conn in conns:
            conn.sendall(b"a")
            assert conn.recv(1) == b"a"
        relay.signal(signal.SIGTERM)
        shutdown = relay.wait_event(lambda e: e.get("event") == "shutdown")
        assert shutdown["sessions"] == 3
        for closed in (1, 2):
            conns.pop().close()
            wait_for(lambda n=closed: relay.count("access") == n, timeout=10, step=0.02)
            for conn in conns:  # the rest still relay: the loop did not stop
                conn.sendall(b"b")
                assert conn.recv(1) == b"b"
            assert relay.proc.poll() is None
    finally:
        for conn in conns:
            conn.close()
    assert relay.wait(10) == 0
    assert {e.get("cause") for e in relay.events if e.get("event") == "access"} == {"client_eof"}


def test_a_stopping_relay_without_sessions_exits_at_once(echo, start_relay):
    relay = start_relay(one_listener(echo.port, access_log=True),
                        runtime={"shutdown_grace": "60s"})
    with socket.create_connection(("127.0.0.1", relay.port())) as conn:
        conn.sendall(b"a")
        assert conn.recv(1) == b"a"
    relay.wait_event(lambda e: e.get("event") == "access")  # its one session is gone
    relay.signal(signal.SIGTERM)
    assert relay.wait(10) == 0  # not after the 60 s grace
    assert relay.wait_event(lambda e: e.get("event") == "shutdown")["sessions"] == 0


def test_shutdown_grace_ends_sessions_that_do_not_finish(echo, start_relay):
    relay = start_relay(one_listener(echo.port, access_log=True),
                        runtime={"shutdown_grace": "500ms"})
    with socket.create_connection(("127.0.0.1", relay.port())) as conn:
        conn.sendall(b"x")
        assert conn.recv(1) == b"x"
        t0 = time.monotonic()
        relay.signal(signal.SIGTERM)
        conn.settimeout(10)
        with pytest.raises(ConnectionResetError):  # a cut, not a complete transfer
            conn.recv(1)
        assert time.monotonic() - t0 >= 0.4
    assert relay.wait(10) == 0
    access = relay.wait_event(lambda e: e.get("event") == "access")
    assert access["cause"] == "grace_expired"


def test_refused_backend_closes_client_and_logs_reason(start_relay):
    relay = start_relay(one_listener(_closed_port()))
    with socket.create_connection(("127.0.0.1", relay.port())) as conn:
        conn.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            assert conn.recv(1) == b""
    event = relay.wait_event(lambda e: e.get("event") == "connect_failed")
    assert event["reason"] == "refused"
    assert event["backend"] == "b1"


def test_connect_timeout_is_classified_as_timeout(start_relay):
    # A listener whose accept queue is full: further SYNs are dropped, so connects hang.
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                fillers.append(s)
            time.sleep(0.1)
            relay = start_relay(one_listener(port, connect_timeout="300ms"))
            with socket.create_connection(("127.0.0.1", relay.port())) as conn:
                conn.settimeout(10)
                with contextlib.suppress(ConnectionResetError):
                    conn.recv(1)
            event = relay.wait_event(lambda e: e.get("event") == "connect_failed")
            assert event["reason"] == "timeout"
        finally:
            for s in fillers:
                s.close()


def test_port_in_use_is_a_config_error_exit_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        text = toml_config([{"name": "x", "listen": f"127.0.0.1:{port}",
                             "backends": [{"name": "b", "address": "127.0.0.1:1"}]}])
        relay = RelayProcess(text, tmp_path)
        try:
            assert relay.wait(15) == 2
            relay._reader.join(5)
            assert any("listener[0].listen" in line and "in use" in line for line in relay.raw)
            assert not any("Traceback" in line for line in relay.raw)
        finally:
            relay.stop()
