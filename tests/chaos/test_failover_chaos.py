"""Failover under faults injected by Toxiproxy (driven with toxiproxy-python) between relay
and each backend. A probe opens a new session through relay every few ms throughout.

Bounds come from the config, not from this machine: detection within
fall x (interval + timeout) + margin; failback never before failback_delay.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.named import Named, ask
from tests.support.probe import Probe
from tests.support.servers import EchoServer
from tests.support.wait import wait_for

INTERVAL, TIMEOUT, RISE, FALL = 0.3, 0.2, 2, 2
CONNECT_TIMEOUT, FAILBACK_DELAY = 0.5, 1.5
DETECTION_BOUND = FALL * (INTERVAL + TIMEOUT) + INTERVAL + 1.0  # + one interval of phase, margin


@pytest.fixture
def backends() -> Iterator[tuple[Named, Named]]:
    primary, backup = Named("primary"), Named("backup")
    yield primary, backup
    primary.stop()
    backup.stop()


@pytest.fixture
def proxies(toxiproxy: Any, backends: tuple[Named, Named]) -> Iterator[tuple[Any, Any]]:
    primary, backup = backends
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    p = toxiproxy.create(upstream=f"127.0.0.1:{primary.port}", name=f"primary-{tag}")
    b = toxiproxy.create(upstream=f"127.0.0.1:{backup.port}", name=f"backup-{tag}")
    yield p, b
    for proxy in (p, b):
        proxy.destroy()


def listener(primary_addr: str, backup_addr: str, **extra: object) -> list[dict[str, object]]:
    settings: dict[str, object] = {
        "name": "db", "listen": "127.0.0.1:0", "connect_timeout": CONNECT_TIMEOUT,
        "failback_delay": FAILBACK_DELAY,
        "health": {"kind": "send_expect", "send": "PING\n", "expect": "+PONG",
                   "interval": INTERVAL, "timeout": TIMEOUT, "rise": RISE, "fall": FALL,
                   "down_backoff_max": "1s"},
        "retry": {"attempts": 4, "deadline": "3s", "backoff_initial": "20ms"},
        "backends": [{"name": "primary", "address": primary_addr, "tier": 0},
                     {"name": "backup", "address": backup_addr, "tier": 1}],
    }
    settings.update(extra)
    return [settings]


def start(start_relay: Any, proxies: tuple[Any, Any], **extra: object) -> tuple[Any, Probe]:
    p, b = proxies
    relay = start_relay(listener(p.listen, b.listen, **extra))
    port = relay.port()
    assert ask(port) == "primary"
    return relay, Probe(lambda: ask(port), every=0.01).start()


def only_cut_in_flight(probe: Probe, cuts: list[tuple[float, float]]) -> None:
    """Disabling a Toxiproxy proxy drops its open connections, so a session in flight on the
    primary at that instant is reset, as by any dying backend. Every other session must work."""
    stray = [r for r in probe.errors() if not any(r[0] <= t1 and r[1] >= t0 for t0, t1 in cuts)]
    assert stray == [], stray[:3]


def warmed_up(probe: Probe) -> None:
    wait_for(lambda: probe.served_by("primary") >= 20)  # sessions flow before the fault


def down_event(relay: Any) -> dict[str, object]:
    return relay.wait_event(lambda e: e.get("event") == "backend_down"
                            and e.get("backend") == "primary", timeout=DETECTION_BOUND + 5)


def test_primary_refused_zero_errors_and_failback_after_delay(start_relay, proxies):
    p, _ = proxies
    relay, probe = start(start_relay, proxies)
    try:
        warmed_up(probe)
        t_fault = time.monotonic()
        p.disable()  # the port refuses
        cut = (t_fault, time.monotonic())
        down_event(relay)
        t_down = time.monotonic()
        wait_for(lambda: probe.served_by("backup", after=t_down) >= 20)
        t_fix = time.monotonic()
        p.enable()
        with contextlib.suppress(AssertionError):  # (the asserts below say what went wrong)
            wait_for(lambda: probe.served_by("primary", after=t_fix) > 0,
                     timeout=FAILBACK_DELAY + RISE * INTERVAL + 5.0)
    finally:
        probe.stop()
    only_cut_in_flight(probe, [cut])
    switch = probe.first_served_by("backup", t_fault) - t_fault
    back = probe.first_served_by("primary", t_fix) - t_fix
    print(f"\nrefused: backup serves {switch * 1000:.0f} ms after the fault, "
          f"primary marked down after {t_down - t_fault:.2f} s, failback {back:.2f} s after repair")
    assert switch <= DETECTION_BOUND
    assert t_down - t_fault <= DETECTION_BOUND
    assert back >= FAILBACK_DELAY
    assert back <= FAILBACK_DELAY + 1.0 + RISE * INTERVAL + 1.5  # + down re-check backoff


@pytest.mark.parametrize("toxic", [
    {"type": "timeout", "attributes": {"timeout": 0}},  # blackhole: accepted, then silence
    {"type": "reset_peer", "attributes": {"timeout": 0}},
    {"type": "latency", "attributes": {"latency": int(TIMEOUT * 1000 * 3)}},  # slower than checks
], ids=["blackholed", "reset_peer", "latency"])
def test_primary_fault_detected_within_bounds_then_zero_errors(start_relay, proxies, toxic):
    p, _ = proxies
    slow_only = toxic["type"] == "latency"
    # a slow primary's sessions still work: with close_on_down = false they finish there
    relay, probe = start(start_relay, proxies, close_on_down=not slow_only)
    try:
        warmed_up(probe)
        t_fault = time.monotonic()
        for stream in ("upstream", "downstream"):
            p.add_toxic(name=f"{toxic['type']}-{stream}", stream=stream, **toxic)
        event = down_event(relay)
        t_down = time.monotonic()
        wait_for(lambda: probe.served_by("backup", after=t_down) >= 50)
        t_after = time.monotonic()
        wait_for(lambda: probe.served_by("backup", after=t_after) >= 50)
    finally:
        probe.stop()
        for stream in ("upstream", "downstream"):
            p.destroy_toxic(f"{toxic['type']}-{stream}")
    detection = t_down - t_fault
    print(f"\n{toxic['type']}: primary marked down after {detection:.2f} s ({event['cause']}); "
          f"{len(probe.errors())} sessions failed before that")
    assert detection <= DETECTION_BOUND
    # Toxiproxy accepts the TCP connection itself, so a session opened before detection may
    # be stuck on the primary (close_on_down then resets it). Once marked down: zero errors.
    assert probe.errors(since=t_down) == [], probe.errors(since=t_down)[:3]
    assert probe.served_by("backup", after=t_down) > 0
    assert probe.served_by("primary", after=t_after) == 0
    if slow_only:  # slow but working, and not cut: nobody fails, some just wait
        assert probe.errors() == []


def test_flapping_primary_does_not_make_sessions_bounce(start_relay, proxies):
    p, _ = proxies
    relay, probe = start(start_relay, proxies)
    toggles = 0
    cuts: list[tuple[float, float]] = []
    try:
        warmed_up(probe)
        t_flap = time.monotonic()
        end = t_flap + 4.0
        while time.monotonic() < end:  # down/up every 300 ms, far less than failback_delay
            t_cut = time.monotonic()
            p.disable()
            cuts.append((t_cut, time.monotonic()))
            time.sleep(0.3)
            p.enable()
            time.sleep(0.3)
            toggles += 2
        t_stable = time.monotonic()
        with contextlib.suppress(AssertionError):  # (the asserts below say what went wrong)
            relay.wait_event(lambda e: e.get("event") == "tier_change" and e["new"] == 0
                             and e["cause"] == "failback",
                             timeout=FAILBACK_DELAY + 1.0 + RISE * INTERVAL + 5.0)
        settled = len(probe.results)  # then sessions go on: no bounce after the failback
        wait_for(lambda: len(probe.results) >= settled + 50)
    finally:
        probe.stop()
    only_cut_in_flight(probe, cuts)
    changes = [e for e in relay.events if e.get("event") == "tier_change" and e["cause"] != "start"]
    during = [e for e in changes if e["new"] == 0]
    print(f"\nflapping: {toggles} toggles, {len(changes)} tier changes: "
          + ", ".join(f"{e['old']}->{e['new']}" for e in changes))
    # one failover to the backup, then a single failback once the primary is stable
    assert [(e["old"], e["new"]) for e in changes] == [(0, 1), (1, 0)]
    assert len(during) == 1
    first_primary_after = probe.first_served_by("primary", t_stable)
    assert first_primary_after - t_stable >= FAILBACK_DELAY
    assert probe.served_by("primary", after=t_flap + 0.5) == probe.served_by(
        "primary", after=t_stable)  # nothing went back to the primary while it flapped


@pytest.fixture
def echo_proxy(toxiproxy: Any) -> Iterator[Any]:
    echo = EchoServer()
    proxy = toxiproxy.create(upstream=f"127.0.0.1:{echo.port}",
                             name=f"echo-{os.getpid()}-{time.monotonic_ns()}")
    yield proxy
    proxy.destroy()
    echo.close()


def _echo_through(port: int, payload: bytes) -> bytes:
    """Send payload and read as many bytes back before closing: Toxiproxy has no half-close
    (a client's SHUT_WR tears its connection down), so EOF must not go first."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        got = bytearray()

        def read() -> None:
            while len(got) < len(payload):
                chunk = conn.recv(1 << 20)
                if not chunk:
                    return
                got.extend(chunk)

        reader = threading.Thread(target=read)
        reader.start()
        conn.sendall(payload)
        reader.join(90)
    return bytes(got)


@pytest.mark.parametrize("toxic", [
    {"type": "slicer", "attributes": {"average_size": 100, "size_variation": 50, "delay": 0}},
    {"type": "bandwidth", "attributes": {"rate": 2048}},  # KB/s
], ids=["slicer", "bandwidth"])
@pytest.mark.parametrize("splice", ["auto", "off"])
def test_sliced_and_throttled_streams_arrive_byte_exact(start_relay, echo_proxy, toxic, splice):
    for stream in ("upstream", "downstream"):
        echo_proxy.add_toxic(name=f"{toxic['type']}-{stream}", stream=stream, **toxic)
    relay = start_relay([{"name": "e", "listen": "127.0.0.1:0", "health": {"kind": "none"},
                          "backends": [{"name": "echo", "address": echo_proxy.listen}]}],
                        runtime={"splice": splice})
    payload = os.urandom(512 * 1024)
    t0 = time.monotonic()
    back = _echo_through(relay.port(), payload)
    took = time.monotonic() - t0
    assert hashlib.sha256(back).digest() == hashlib.sha256(payload).digest()
    if toxic["type"] == "bandwidth":  # the toxic really throttled what relay carried
        assert took >= len(payload) / (2048 * 1024) * 0.8


def test_limit_data_ends_the_session_cleanly_and_relay_serves_on(start_relay, echo_proxy):
    echo_proxy.add_toxic(name="limit", type="limit_data", stream="downstream",
                         attributes={"bytes": 1000})
    relay = start_relay([{"name": "e", "listen": "127.0.0.1:0", "health": {"kind": "none"},
                          "backends": [{"name": "echo", "address": echo_proxy.listen}]}])
    with socket.create_connection(("127.0.0.1", relay.port()), timeout=10) as conn:
        conn.sendall(os.urandom(5000))
        got = b""
        try:
            while chunk := conn.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
    assert len(got) == 1000
    echo_proxy.destroy_toxic("limit")
    assert _echo_through(relay.port(), b"after the limit") == b"after the limit"
    assert relay.proc.poll() is None


@pytest.mark.parametrize("latency_ms", [2, 300], ids=["below-hedge_after", "above-hedge_after"])
def test_a_slow_but_healthy_primary_keeps_its_sessions(start_relay, proxies, latency_ms):
    """Toxiproxy latency slows the primary's bytes, not its connects: hedging reacts to connect
    time only, so the primary keeps winning its sessions and hedges stay within the cap."""
    p, _ = proxies
    healthy_but_slow = {"kind": "send_expect", "send": "PING\n", "expect": "+PONG",
                        "interval": INTERVAL, "timeout": "1500ms", "rise": RISE, "fall": FALL}
    relay, probe = start(start_relay, proxies, health=healthy_but_slow,
                         retry={"attempts": 4, "deadline": "3s", "backoff_initial": "20ms",
                                "hedge": "auto"})
    try:
        for stream in ("upstream", "downstream"):
            p.add_toxic(name=f"latency-{stream}", type="latency", stream=stream,
                        attributes={"latency": latency_ms})
        time.sleep(2.0)
    finally:
        probe.stop()
        for stream in ("upstream", "downstream"):
            p.destroy_toxic(f"latency-{stream}")
    assert probe.errors() == []
    assert probe.served_by("backup") == 0
    assert probe.served_by("primary") > 0
    time.sleep(1.2)
    metrics = relay.http("GET", "/metrics")[1]
    hedges = {line.split('outcome="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
              for line in metrics.splitlines() if line.startswith("relay_connect_hedges_total")}
    assert hedges.get("hedge_won", 0) == 0
    assert sum(hedges.values()) <= 64  # the per-listener cap on hedges in flight
