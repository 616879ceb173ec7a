"""Hostile admin clients while sessions run: pipelined /metrics floods, slowloris, fd
exhaustion. Sessions keep echoing (within a multiple of the unloaded round trip measured
here), /healthz keeps answering 200, relay's memory stays bounded and it does not spin."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator

import pytest

from tests.support.abuse import (
    EchoLoop,
    Slowloris,
    cpu_seconds,
    pipelined_metrics_flood,
    probe_healthz,
    rss_bytes,
)
from tests.support.wait import wait_for

BACKENDS = 1000  # a listener this big makes a /metrics render cost a quarter of a second
SLOWDOWN = 20  # loaded round trip <= SLOWDOWN x the unloaded one (+ a floor of the same)
RSS_GROWTH = 50 * 1024 * 1024  # 64 connections x (16 KiB in + 16 KiB head) + a few renders


@pytest.fixture(autouse=True)
def _enough_fds(many_fds: None) -> Iterator[None]:
    yield


def listeners(echo_port: int, many: int = BACKENDS) -> list[dict[str, object]]:
    """'echo' in front of the echo server; 'many' with `many` backends nobody connects to."""
    return [
        {"name": "echo", "listen": "127.0.0.1:0", "health": {"kind": "none"},
         "backends": [{"name": "echo", "address": f"127.0.0.1:{echo_port}"}]},
        {"name": "many", "listen": "127.0.0.1:0", "health": {"kind": "none"},
         "backends": [{"name": f"b{i}", "address": f"127.0.0.1:{20000 + i}"}
                      for i in range(many)]},
    ]


class Yardstick:
    """The unloaded round trip of `loop`, and the bound a loaded one must keep."""

    def __init__(self, loop: EchoLoop) -> None:
        times = loop.measure(1.5)
        assert len(times) > 20, "the echo loop hardly ran unloaded"
        self.unloaded = max(times)
        self.median = statistics.median(times)
        self.bound = SLOWDOWN * self.unloaded + SLOWDOWN * 10 * self.median

    def check(self, times: list[float], what: str) -> float:
        assert times, f"no session round trip completed during {what}"
        worst = max(times)
        assert worst <= self.bound, (
            f"{what}: a round trip took {worst * 1000:.1f} ms; unloaded max"
            f" {self.unloaded * 1000:.2f} ms, median {self.median * 1000:.2f} ms,"
            f" bound {self.bound * 1000:.1f} ms")
        print(f"\n{what}: round trip max {worst * 1000:.1f} ms loaded, {self.unloaded * 1000:.1f}"
              f" ms unloaded (median {self.median * 1000:.2f} ms; bound {self.bound * 1000:.0f} ms)")
        return worst


def probe_during(port: int, seconds: float, every: float = 0.25) -> list[int]:
    """/healthz as a liveness probe would ask it (2 s timeout), for `seconds`."""
    statuses = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        statuses.append(probe_healthz(port))
        time.sleep(every)
    return statuses


def test_pipelined_metrics_floods_do_not_stall_sessions_or_grow_memory(echo, start_relay):
    relay = start_relay(listeners(echo.port), wait=False).wait_ready(2, timeout=60)
    assert relay.http("GET", "/metrics", timeout=30)[0] == 200  # every series exists now
    loop = EchoLoop(relay.port("echo"))
    flood: list[socket.socket] = []
    try:
        yardstick = Yardstick(loop)
        rss_before = rss_bytes(relay.pid)
        flood = pipelined_metrics_flood(relay.admin_port, connections=40)
        statuses = probe_during(relay.admin_port, 4.0)
        times = loop.take()
        assert statuses and all(s == 200 for s in statuses), statuses
        assert not loop.failures, loop.failures
        yardstick.check(times, "a pipelined /metrics flood")
        growth = rss_bytes(relay.pid) - rss_before
        assert growth < RSS_GROWTH, f"relay grew by {growth / 1e6:.0f} MB"
        # and a scraper that reads gets the whole text
        status, body = relay.http("GET", "/metrics", timeout=30)
        assert status == 200 and body.count("relay_backend_up{") == BACKENDS + 1
    finally:
        for conn in flood:
            conn.close()
        loop.close()


def test_scrapes_of_1000_backends_do_not_stall_sessions(echo, start_relay):
    """A render takes a quarter of a second here; sessions wait for a slice of it at most."""
    relay = start_relay(listeners(echo.port), wait=False).wait_ready(2, timeout=60)
    loop = EchoLoop(relay.port("echo"))
    try:
        yardstick = Yardstick(loop)
        end = time.monotonic() + 4.0
        longest = 0.0
        while time.monotonic() < end:  # a render at most once a second, sliced: no stall
            t0 = time.perf_counter()
            status, body = relay.http("GET", "/metrics", timeout=30)
            longest = max(longest, time.perf_counter() - t0)
            assert status == 200 and body.endswith("\n")
            time.sleep(0.3)
        worst = yardstick.check(loop.take(), "scrapes of 1,000 backends")
        assert worst < longest / 4, (
            f"a session waited {worst * 1000:.0f} ms during a {longest * 1000:.0f} ms scrape")
        assert not loop.failures, loop.failures
    finally:
        loop.close()


def test_slowloris_cannot_lock_out_healthz(echo, start_relay):
    relay = start_relay(listeners(echo.port, many=1))
    loop = EchoLoop(relay.port("echo"))
    slow: Slowloris | None = None
    try:
        yardstick = Yardstick(loop)
        rss_before = rss_bytes(relay.pid)
        slow = Slowloris(relay.admin_port, 100)
        time.sleep(1.5)  # every slowloris connection is open
        statuses = probe_during(relay.admin_port, 7.0)  # past the head deadline
        times = loop.take()
        assert statuses and all(s == 200 for s in statuses), statuses
        assert slow.reopened > 0  # relay closed some (the head deadline, or the cap)
        assert not loop.failures, loop.failures
        yardstick.check(times, "100 slowloris connections")
        assert rss_bytes(relay.pid) - rss_before < RSS_GROWTH
    finally:
        if slow is not None:
            slow.close()
        loop.close()


def test_fd_exhaustion_pauses_admin_accept_without_spinning(echo, start_relay):
    """Sessions use up every descriptor: the admin listener rests instead of spinning, and
    /healthz still gets in (a descriptor is kept for it, and idle admin clients give way)."""
    relay = start_relay(listeners(echo.port, many=1), nofile=96,
                        runtime={"splice": "off"})
    loop = EchoLoop(relay.port("echo"), sessions=2)
    hogs: list[socket.socket] = []
    idle_admin: list[socket.socket] = []
    try:
        yardstick = Yardstick(loop)
        rss_before = rss_bytes(relay.pid)
        for _ in range(150):  # two descriptors a session: more than relay has
            hogs.append(socket.create_connection(("127.0.0.1", relay.port("echo")), timeout=10))
        relay.wait_event(lambda e: e.get("event") == "accept_paused", timeout=10)
        for _ in range(20):  # admin clients that say nothing, queued while fds are short
            idle_admin.append(socket.create_connection(("127.0.0.1", relay.admin_port),
                                                       timeout=10))
        time.sleep(0.5)
        cpu_before, t0 = cpu_seconds(relay.pid), time.monotonic()
        statuses = probe_during(relay.admin_port, 3.0)
        busy = (cpu_seconds(relay.pid) - cpu_before) / (time.monotonic() - t0)
        times = loop.take()
        assert busy < 0.5, f"relay used {busy:.0%} of a core while out of descriptors"
        assert statuses and all(s == 200 for s in statuses), statuses
        assert not loop.failures, loop.failures
        yardstick.check(times, "descriptor exhaustion")
        assert rss_bytes(relay.pid) - rss_before < RSS_GROWTH
        assert relay.proc.poll() is None
    finally:
        for conn in hogs + idle_admin:
            conn.close()
        loop.close()
    wait_for(lambda: probe_healthz(relay.admin_port) == 200)
