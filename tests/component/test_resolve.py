"""SIGHUP with host names: the file's names are resolved off the loop, then the reload applies."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.config.model import Address
from relay.net import resolve as resolve_module
from relay.net.resolve import SockAddr
from tests.support.inproc import InProcessRelay
from tests.support.relayproc import toml_config
from tests.support.servers import EchoServer
from tests.support.wait import wait_for


class Gate:
    """Lookups of names wait until the gate opens (a resolver that is slow or dead)."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.asked: list[str] = []

    def __call__(self, address: Address, passive: bool = False) -> SockAddr:
        if address.host != "localhost":
            return SockAddr(socket.AF_INET, (address.host, address.port))  # literal: no wait
        self.asked.append(address.host)
        self.open.wait(30)
        return SockAddr(socket.AF_INET, ("127.0.0.1", address.port))


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    fake = Gate()
    monkeypatch.setattr(resolve_module, "resolve", fake)
    yield fake
    fake.open.set()


def listener(name: str, port: int) -> dict[str, object]:
    return {"name": name, "listen": "127.0.0.1:0", "health": {"kind": "none"},
            "backends": [{"name": "echo", "address": f"localhost:{port}"}]}


def echoes(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"ping")
        return conn.recv(4) == b"ping"


@pytest.fixture
def relay(echo: EchoServer) -> Iterator[InProcessRelay]:
    # started before the gate is in place: the start-up lookups are done
    running = InProcessRelay(toml_config([listener("a", echo.port)]))
    yield running
    running.stop()


def test_a_reload_waits_for_its_names_off_the_loop_then_applies(relay, echo, gate, tmp_path):
    path = tmp_path / "relay.toml"
    path.write_text(toml_config([listener("a", echo.port), listener("b", echo.port)]))
    applied: list[bool] = []
    relay.call(lambda: relay.server.reload(str(path), applied.append))
    relay.call(lambda: relay.server.reload(str(path), applied.append))  # a second SIGHUP
    wait_for(lambda: gate.asked == ["localhost"])  # one lookup for the name of both reloads
    assert echoes(relay.port("a"))  # the loop serves while the lookup waits
    assert applied == [] and "b" not in relay.server.by_name
    gate.open.set()
    wait_for(lambda: applied == [True, True])  # the second ran after the first, file re-read
    assert echoes(relay.port("b"))
    assert relay.server.reloads["success"] == 2


def test_a_reload_whose_names_do_not_resolve_in_time_is_refused(relay, echo, gate,
                                                                tmp_path: Path):
    relay.call(lambda: setattr(relay.server.resolver, "timeout", 0.1))
    path = tmp_path / "relay.toml"
    path.write_text(toml_config([listener("a", echo.port), listener("b", echo.port)]))
    applied: list[bool] = []
    relay.call(lambda: relay.server.reload(str(path), applied.append))
    wait_for(lambda: applied == [False])
    assert relay.server.reloads["failure"] == 1
    assert "b" not in relay.server.by_name  # the running configuration stays
    assert echoes(relay.port("a"))
