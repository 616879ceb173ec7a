"""The loop's heartbeat and /healthz's verdict (RelayServer.stalled) on a fake clock: a loop
stuck longer than HEARTBEAT_STALE is reported while it is and for STALL_MEMORY after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relay.config import parse_config
from relay.net.server import RelayServer
from tests.support.fakeclock import FakeClock, advance, settle
from tests.support.relayproc import toml_config


@pytest.fixture
def server() -> Iterator[RelayServer]:
    text = toml_config([{"name": "x", "listen": "127.0.0.1:0", "health": {"kind": "none"},
                         "backends": [{"name": "b", "address": "127.0.0.1:1"}]}])
    s = RelayServer(parse_config(text), admin=False, clock=FakeClock())
    s.open()
    s.start()
    yield s
    s.close()


def test_a_turning_loop_is_healthy_however_long(server):
    clock = server.reactor.clock
    advance(server.reactor, clock, 3600.0)  # type: ignore[arg-type]
    assert server.stalled() == ""
    assert server.heartbeat >= clock() - server.HEARTBEAT


def test_a_stuck_loop_is_reported_for_stall_memory_then_forgotten(server):
    reactor, clock = server.reactor, server.reactor.clock
    advance(reactor, clock, 1.2)  # type: ignore[arg-type]
    assert server.stalled() == ""
    clock.advance(4.0)  # type: ignore[attr-defined]  # a callback blocks the loop 4 s
    settle(reactor)  # then it turns: the late heartbeat measures the stall
    verdict = server.stalled()
    assert verdict.startswith("reactor stalled for 4.") and "0.0s ago" in verdict
    assert server.last_stall is not None
    ended = server.last_stall[0]
    advance(reactor, clock, server.STALL_MEMORY - 0.01)  # type: ignore[arg-type]
    assert "stalled" in server.stalled()
    advance(reactor, clock, 0.02)  # type: ignore[arg-type]
    assert server.stalled() == "" and clock() > ended + server.STALL_MEMORY


def test_a_short_block_is_no_stall(server):
    reactor, clock = server.reactor, server.reactor.clock
    advance(reactor, clock, 1.0)  # type: ignore[arg-type]
    clock.advance(server.HEARTBEAT + server.HEARTBEAT_STALE)  # type: ignore[attr-defined]
    settle(reactor)  # the beat is HEARTBEAT_STALE late: not more
    assert server.stalled() == "" and server.last_stall is None


def test_while_stuck_the_verdict_reads_the_missing_heartbeat(server):
    reactor, clock = server.reactor, server.reactor.clock
    advance(reactor, clock, 1.0)  # type: ignore[arg-type]
    clock.advance(10.0)  # type: ignore[attr-defined]
    reactor.now = clock()  # what a request answered in that turn sees, before the timers
    assert server.stalled().startswith("reactor stalled: its last heartbeat was 10.0s ago")
