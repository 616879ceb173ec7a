"""Failover and failback with real redis-servers: killed (refused) and vanished (blackholed)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import pytest

from tests.conftest import IN_CI, require_tool
from tests.support.netns import Netns
from tests.support.probe import Probe
from tests.support.redis import RedisServer, free_port, redis_port_of
from tests.support.wait import wait_for

INTERVAL, TIMEOUT, RISE, FALL = 0.5, 0.3, 2, 2
CONNECT_TIMEOUT, FAILBACK_DELAY = 0.5, 2.0


def relay_listener(primary: tuple[str, int], replica: tuple[str, int]) -> list[dict[str, object]]:
    return [{
        "name": "redis", "listen": "127.0.0.1:0", "connect_timeout": CONNECT_TIMEOUT,
        "failback_delay": FAILBACK_DELAY,
        "health": {"kind": "send_expect", "send": "PING\r\n", "expect": "+PONG",
                   "interval": INTERVAL, "timeout": TIMEOUT, "rise": RISE, "fall": FALL,
                   "down_backoff_max": "2s"},
        "retry": {"attempts": 4, "deadline": "4s", "backoff_initial": "50ms"},
        "backends": [
            {"name": "primary", "address": f"{primary[0]}:{primary[1]}", "tier": 0},
            {"name": "replica", "address": f"{replica[0]}:{replica[1]}", "tier": 1}],
    }]


def test_primary_sigkill_zero_errors_then_failback(tmp_path, start_relay):
    server_bin = require_tool("redis-server")
    p_port, r_port = free_port(), free_port()
    primary = RedisServer(server_bin, p_port, str(tmp_path)).start()
    replica = RedisServer(server_bin, r_port, str(tmp_path)).start()
    try:
        relay = start_relay(relay_listener(("127.0.0.1", p_port), ("127.0.0.1", r_port)))
        probe = Probe(lambda: redis_port_of("127.0.0.1", relay.port(), timeout=10)).start()
        try:
            wait_for(lambda: probe.served_by(p_port) >= 50)  # steady traffic on the primary
            t_kill = time.monotonic()
            primary.kill()
            t_dead = time.monotonic()  # until its sockets are gone the kernel may still accept
            t_down = time.monotonic()
            relay.wait_event(lambda e: e.get("event") == "backend_down", timeout=10)
            wait_for(lambda: probe.served_by(r_port, t_down) >= 50)  # ... then on the replica
            t_restart = time.monotonic()
            primary.start()
            with contextlib.suppress(AssertionError):  # (the asserts below say what went wrong)
                wait_for(lambda: probe.served_by(p_port, t_restart) > 0,
                         timeout=FAILBACK_DELAY + 10)
        finally:
            probe.stop()
        # a session the kernel accepted for the dying server is reset with it; none after
        assert probe.errors(since=t_dead) == [], probe.errors()[:5]
        assert len(probe.errors()) <= 1
        switch = probe.first_served_by(r_port, t_kill) - t_kill
        back = probe.first_served_by(p_port, t_restart) - t_restart
        print(f"\nSIGKILL: first session on replica {switch * 1000:.0f} ms after the kill; "
              f"failback {back:.2f} s after restart (failback_delay {FAILBACK_DELAY}s)")
        assert switch <= FALL * INTERVAL + TIMEOUT + 1.0
        assert back >= FAILBACK_DELAY
        assert back <= FAILBACK_DELAY + RISE * INTERVAL + 2.0 + 2.0  # + down re-check backoff
    finally:
        primary.stop()
        replica.stop()


@pytest.fixture
def two_hosts() -> Iterator[tuple[Netns, Netns]]:
    if os.geteuid() != 0 or (not os.path.exists("/usr/sbin/ip") and not os.path.exists("/sbin/ip")):
        if IN_CI:
            pytest.fail("network namespaces need root and iproute2 (CI runs as root)")
        pytest.skip("network namespaces need root and iproute2")
    tag = f"rt{os.getpid() % 100000}"
    a, b = Netns(f"{tag}a", 71), Netns(f"{tag}b", 72)
    try:
        yield a.create(), b.create()
    finally:
        a.remove()
        b.remove()


def test_primary_host_vanishes_zero_errors(tmp_path, start_relay, two_hosts):
    server_bin = require_tool("redis-server")
    host_a, host_b = two_hosts
    primary = RedisServer(server_bin, 6379, str(tmp_path), host=host_a.ip, netns=host_a.name).start()
    replica = RedisServer(server_bin, 6380, str(tmp_path), host=host_b.ip, netns=host_b.name).start()
    try:
        relay = start_relay(relay_listener((host_a.ip, 6379), (host_b.ip, 6380)))
        probe = Probe(lambda: redis_port_of("127.0.0.1", relay.port(), timeout=10),
                      every=0.02).start()
        try:
            wait_for(lambda: probe.served_by(6379) >= 25)  # steady traffic on the primary
            t_fault = time.monotonic()
            host_a.vanish()
            event = relay.wait_event(lambda e: e.get("event") == "backend_down", timeout=15)
            t_down = time.monotonic()
            wait_for(lambda: probe.served_by(6380, t_down) >= 50)  # then on the replica
        finally:
            probe.stop()
        assert probe.errors(since=t_fault) == [], probe.errors()[:5]
        assert len(probe.errors()) <= 1  # at most the one request in flight at the fault
        switch = probe.first_served_by(6380, t_fault) - t_fault
        print(f"\nblackholed: first session on replica {switch * 1000:.0f} ms after the fault; "
              f"marked down after {t_down - t_fault:.2f} s ({event.get('cause')})")
        # a session's connect to the vanished primary times out, then it retries on the replica
        assert switch <= CONNECT_TIMEOUT + 1.0
        assert t_down - t_fault <= FALL * (INTERVAL + TIMEOUT) + 2.0
    finally:
        primary.kill()
        replica.kill()
