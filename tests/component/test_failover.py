"""Health, tiers, failover, failback and operator actions with real sockets, relay in-process.

Backends speak a tiny line protocol: "PING" is the health check (answered "+PONG"
while healthy, "-DOWN" otherwise); any other line gets the backend's name and the
connection stays open until the client closes it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from relay.core.tiers import FailbackRefused
from relay.errors import UnknownName
from tests.support.inproc import InProcessRelay
from tests.support.named import Named, ask
from tests.support.relayproc import toml_config
from tests.support.servers import ThreadServer
from tests.support.wait import wait_for

INTERVAL, TIMEOUT, RISE, FALL = 0.2, 0.1, 2, 2


def config(primary: Named, backup: Named, **listener: object) -> str:
    settings: dict[str, object] = {
        "name": "db", "listen": "127.0.0.1:0", "failback_delay": "1s",
        "health": {"kind": "send_expect", "send": "PING\n", "expect": "+PONG",
                   "interval": INTERVAL, "timeout": TIMEOUT, "rise": RISE, "fall": FALL,
                   "down_backoff_max": "1s"},
        "retry": {"attempts": 4, "deadline": "3s", "backoff_initial": "20ms"},
        "backends": [{"name": "primary", "address": f"127.0.0.1:{primary.port}", "tier": 0},
                     {"name": "backup", "address": f"127.0.0.1:{backup.port}", "tier": 1}],
    }
    settings.update(listener)
    return toml_config([settings], {"log_format": "json"})




@pytest.fixture
def relay_factory() -> Iterator[object]:
    started: list[InProcessRelay] = []

    def make(text: str) -> InProcessRelay:
        relay = InProcessRelay(text)
        started.append(relay)
        return relay

    yield make
    for relay in started:
        relay.stop()


def serving_tier(relay: InProcessRelay) -> int:
    return relay.call(lambda: relay.server.status()["listeners"][0]["active_tier"])  # type: ignore[index]


def backend_state(relay: InProcessRelay, name: str) -> dict[str, object]:
    status = relay.call(relay.server.status)
    for b in status["listeners"][0]["backends"]:  # type: ignore[index]
        if b["name"] == name:
            return b  # type: ignore[no-any-return]
    raise AssertionError(name)


def test_backup_serves_new_sessions_while_primary_refuses(pair, relay_factory):
    primary, backup = pair
    relay = relay_factory(config(primary, backup))
    port = relay.port("db")
    assert ask(port) == "primary"
    primary.stop()
    t_fault = time.monotonic()
    answers = [ask(port) for _ in range(30)]  # every one succeeds: zero client errors
    assert answers[0] == "backup"  # the first refused connect moved that very session on
    assert set(answers) == {"backup"}
    wait_for(lambda: backend_state(relay, "primary")["state"] == "down",
             timeout=FALL * INTERVAL + TIMEOUT + 2.0)
    assert time.monotonic() - t_fault <= FALL * INTERVAL * 2 + TIMEOUT + 2.0
    assert serving_tier(relay) == 1


def test_auto_failback_waits_for_failback_delay(pair, relay_factory):
    primary, backup = pair
    relay = relay_factory(config(primary, backup, failback_delay="1s"))
    port = relay.port("db")
    primary.stop()
    wait_for(lambda: backend_state(relay, "primary")["state"] == "down")
    primary.start()
    t_back = time.monotonic()
    wait_for(lambda: backend_state(relay, "primary")["state"] == "up", timeout=5)
    # up again, but new sessions stay on the backup until it was up for failback_delay
    assert ask(port) == "backup"
    waited = wait_for(lambda: ask(port) == "primary", timeout=10, step=0.05)
    total = time.monotonic() - t_back
    assert total >= 1.0, "failed back before failback_delay"
    assert waited > 0
    # bound from the config: next re-check (backoff <= down_backoff_max) + rise + delay + margin
    assert total <= 1.0 + 1.0 * 1.2 + RISE * INTERVAL + 2.0


def test_manual_failback_only_by_operator(pair, relay_factory):
    primary, backup = pair
    relay = relay_factory(config(primary, backup, failback="manual", failback_delay=0))
    port = relay.port("db")
    primary.stop()
    wait_for(lambda: backend_state(relay, "primary")["state"] == "down")
    with pytest.raises(FailbackRefused):
        relay.call(lambda: relay.server.failback("db"))
    primary.start()
    wait_for(lambda: backend_state(relay, "primary")["state"] == "up", timeout=5)
    # (that it stays so, however long: tests/unit/test_backend_group.py)
    assert [ask(port) for _ in range(5)] == ["backup"] * 5
    assert relay.call(lambda: relay.server.failback("db")) == 0
    assert ask(port) == "primary"


def test_operator_drain_and_maint(pair, relay_factory):
    primary, backup = pair
    relay = relay_factory(config(primary, backup, failback_delay=0))
    port = relay.port("db")
    held = socket.create_connection(("127.0.0.1", port))
    held_reader = held.makefile("rb")
    try:
        held.sendall(b"WHO\n")
        assert held_reader.readline() == b"primary\n"
        assert relay.call(lambda: relay.server.set_backend_state("db", "primary", "drain")) == "drain"
        assert ask(port) == "backup"  # no new sessions on a draining backend
        held.sendall(b"WHO\n")
        assert held_reader.readline() == b"primary\n"  # existing ones stay
        assert relay.call(lambda: relay.server.set_backend_state("db", "primary", "maint")) == "maint"
        held.settimeout(5)
        try:
            closed = held_reader.readline() == b""  # maint closes its sessions
        except ConnectionResetError:
            closed = True
        assert closed
        assert backend_state(relay, "primary")["admin_state"] == "maint"
        relay.call(lambda: relay.server.set_backend_state("db", "primary", "ready"))
        wait_for(lambda: ask(port) == "primary", timeout=5)
    finally:
        held_reader.close()
        held.close()


def test_operator_api_rejects_unknown_names_and_states(pair, relay_factory):
    primary, backup = pair
    relay = relay_factory(config(primary, backup))
    with pytest.raises(UnknownName):
        relay.call(lambda: relay.server.set_backend_state("nope", "primary", "drain"))
    with pytest.raises(UnknownName):
        relay.call(lambda: relay.server.set_backend_state("db", "nope", "drain"))
    with pytest.raises(ValueError):
        relay.call(lambda: relay.server.set_backend_state("db", "primary", "sleep"))
    with pytest.raises(UnknownName):
        relay.call(lambda: relay.server.failback("nope"))


@pytest.mark.parametrize("close_on_down", [True, False])
def test_close_on_down_closes_sessions_of_a_backend_marked_down(pair, relay_factory, close_on_down):
    primary, backup = pair
    relay = relay_factory(config(primary, backup, close_on_down=close_on_down))
    port = relay.port("db")
    held = socket.create_connection(("127.0.0.1", port))
    reader = held.makefile("rb")
    try:
        held.sendall(b"WHO\n")
        assert reader.readline() == b"primary\n"
        primary.healthy = False  # checks fail, the session's connection is fine
        wait_for(lambda: backend_state(relay, "primary")["state"] == "down")
        # (closed in the same loop turn as the transition: tests/unit/test_backend_group.py)
        held.settimeout(5)
        try:
            held.sendall(b"WHO\n")
            answer = reader.readline()
        except ConnectionResetError:
            answer = b""
        if close_on_down:
            assert answer == b""
        else:
            assert answer == b"primary\n"
        assert ask(port) == "backup"
    finally:
        reader.close()
        held.close()


def test_client_is_held_while_retries_wait_for_a_backend(relay_factory):
    """The only backend is refused at first; it comes up within the retry deadline."""
    late = Named("late")
    late.stop()
    try:
        text = toml_config([{
            "name": "db", "listen": "127.0.0.1:0", "health": {"kind": "none"},
            "retry": {"attempts": 20, "deadline": "5s", "backoff_initial": "50ms",
                      "backoff_max": "200ms"},
            "backends": [{"name": "late", "address": f"127.0.0.1:{late.port}"}]}])
        relay = relay_factory(text)
        starter = threading.Timer(0.4, late.start)
        starter.start()
        assert ask(relay.port("db")) == "late"
    finally:
        starter.join(5)
        late.stop()


def test_retries_exhausted_close_the_client_as_no_backend(relay_factory):
    gone = Named("gone")
    gone.stop()
    text = toml_config([{
        "name": "db", "listen": "127.0.0.1:0", "health": {"kind": "none"},
        "retry": {"attempts": 3, "deadline": "5s", "backoff_initial": "10ms"},
        "backends": [{"name": "gone", "address": f"127.0.0.1:{gone.port}"}]}])
    relay = relay_factory(text)
    with socket.create_connection(("127.0.0.1", relay.port("db")), timeout=10) as conn:
        try:
            assert conn.recv(1) == b""
        except ConnectionResetError:
            pass
    listener = relay.server.by_name["db"]
    wait_for(lambda: relay.call(lambda: listener.rejected["no_backend"]) == 1)
    assert relay.call(lambda: listener.group.by_name["gone"].connect_errors["refused"]) == 3


@pytest.mark.parametrize(("status", "state"), [(200, "up"), (302, "up"), (503, "down")])
def test_http_check(relay_factory, status, state):
    def handler(conn: socket.socket) -> None:
        conn.recv(4096)
        conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        conn.close()

    server = ThreadServer(handler)
    try:
        text = toml_config([{
            "name": "web", "listen": "127.0.0.1:0",
            "health": {"kind": "http", "path": "/health", "interval": INTERVAL,
                       "timeout": TIMEOUT, "rise": 1, "fall": 1},
            "backends": [{"name": "w", "address": f"127.0.0.1:{server.port}"}]}])
        relay = relay_factory(text)
        checks = relay.server.by_name["web"].group.by_name["w"].checks
        wait_for(lambda: relay.call(lambda: sum(checks.values())) >= 3)
        assert relay.call(lambda: relay.server.status())["listeners"][0]["backends"][0]["state"] == state
    finally:
        server.close()


def test_check_timeout_marks_a_silent_backend_down(relay_factory):
    def handler(conn: socket.socket) -> None:
        while conn.recv(4096):  # accepts, never answers the PING (until the check gives up)
            pass

    server = ThreadServer(handler)
    try:
        text = toml_config([{
            "name": "db", "listen": "127.0.0.1:0",
            "health": {"kind": "send_expect", "send": "PING\n", "expect": "+PONG",
                       "interval": INTERVAL, "timeout": TIMEOUT, "rise": 1, "fall": 1},
            "backends": [{"name": "mute", "address": f"127.0.0.1:{server.port}"}]}])
        relay = relay_factory(text)
        wait_for(lambda: backend_state(relay, "mute")["state"] == "down", timeout=5)
        assert "no answer within timeout" in str(backend_state(relay, "mute")["last_error"])
    finally:
        server.close()


@contextlib.contextmanager
def session_on_backup(relay: InProcessRelay, primary: Named) -> Iterator[tuple[socket.socket,
                                                                                 Any]]:
    """The primary stops; a client session then lands on the backup and stays open."""
    port = relay.port("db")
    primary.stop()
    wait_for(lambda: backend_state(relay, "primary")["state"] == "down")
    held = socket.create_connection(("127.0.0.1", port))
    reader = held.makefile("rb")
    try:
        held.sendall(b"WHO\n")
        assert reader.readline() == b"backup\n"
        yield held, reader
    finally:
        reader.close()
        held.close()


def closed_by_relay(reader: Any) -> bool:
    """The next read says EOF or reset (blocks until then, or the socket's timeout)."""
    try:
        return bool(reader.readline() == b"")
    except ConnectionResetError:
        return True


def test_drain_backup_after_closes_backup_sessions_after_failback(pair, relay_factory):
    """Real sessions closed by the drain; its timing, "off", and reloads during the grace:
    tests/unit/test_backend_group.py on a fake clock."""
    primary, backup = pair
    relay = relay_factory(config(primary, backup, failback_delay="300ms",
                                 drain_backup_after="500ms"))
    port = relay.port("db")
    with session_on_backup(relay, primary) as (held, reader):
        primary.start()
        wait_for(lambda: ask(port) == "primary", timeout=10, step=0.05)
        t_failback = time.monotonic()
        held.settimeout(5)
        assert closed_by_relay(reader)
        assert time.monotonic() - t_failback >= 0.3  # after its grace, not at failback


def test_a_backend_named_by_host_is_looked_up_again_when_it_goes_down(relay_factory,
                                                                      monkeypatch):
    """Containers: the name stays, the address moves. On its down transition the backend's
    name is resolved again and checks and traffic follow the new address."""
    from relay.net import resolve as resolve_module
    from relay.net.resolve import SockAddr

    old, moved, backup = Named("old"), Named("moved"), Named("backup")
    lookups: list[str] = []

    def moved_resolve(address: object, passive: bool = False) -> SockAddr:  # the resolver's
        lookups.append(str(address))  # threads; the start-up lookups are already done
        return SockAddr(socket.AF_INET, ("127.0.0.1", moved.port))

    monkeypatch.setattr(resolve_module, "resolve", moved_resolve)
    try:
        text = config(old, backup)  # then the primary is given by name, not by address
        text = text.replace(f'"127.0.0.1:{old.port}"', f'"localhost:{old.port}"')
        assert f"localhost:{old.port}" in text
        relay = relay_factory(text)
        port = relay.port("db")
        wait_for(lambda: ask(port) == "old", timeout=10, step=0.05)
        old.stop()
        wait_for(lambda: lookups != [], timeout=10, step=0.05)  # looked up on going down
        assert lookups == [f"localhost:{old.port}"]
        wait_for(lambda: backend_state(relay, "primary")["address"] == f"127.0.0.1:{moved.port}")
        assert ask(port) == "backup"  # until the moved primary passes its checks
        wait_for(lambda: ask(port) == "moved", timeout=10, step=0.05)  # then failback to it
    finally:
        for server in (old, moved, backup):
            server.stop()
