"""A relay cut off from two of three sentinels keeps the last primary for stale_after, then
refuses; it never sends a session to a node the majority does not name (product.md §9).

Three real sentinels, a primary and two replicas listen on the host end of a veth. Relay
B runs in a network namespace that reaches them through the veth; relay A runs beside
them, not partitioned. The partition is silent, as a real one is: inside the namespace
the two sentinels' addresses are routed to a neighbour that does not exist (a permanent
entry with an unused MAC), so SYNs vanish and connections time out. While B is cut off,
Sentinel fails over: A follows; B, hearing one sentinel of three, sends nothing anywhere.
When the partition heals B follows the majority to the new primary.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.integration.test_sentinel_authority import (
    FAILOVER_TIMEOUT_MS,
    MASTER,
    Cluster,
    Loop,
    SwitchWatch,
    ask,
)
from tests.support.netns import Netns
from tests.support.relayproc import RelayProcess, toml_config
from tests.support.wait import wait_for

STALE_AFTER = 2.0  # seconds: [listener.authority] stale_after of both relays
SUBNET = 77
NOWHERE = f"10.231.{SUBNET}.9"  # the neighbour the cut sentinels are routed to: no such host


class Partition:
    """The namespace, and the addresses of the sentinels it can be cut off from."""

    def __init__(self) -> None:
        self.ns = Netns(f"rspt{os.getpid() % 100000}", SUBNET)
        self.far = (f"10.231.{SUBNET}.5", f"10.231.{SUBNET}.6")  # sentinels 2 and 3

    def sh(self, cmd: str, inside: bool = False) -> None:
        prefix = ["ip", "netns", "exec", self.ns.name] if inside else []
        subprocess.run([*prefix, *cmd.split()], check=True, capture_output=True)

    def create(self) -> Partition:
        self.ns.create()
        for address in self.far:
            self.sh(f"ip addr add {address}/32 dev {self.ns.host_if}")
        self.sh(f"ip route add 10.231.{SUBNET}.4/30 via {self.ns.host_ip}", inside=True)
        self.sh(f"ip neigh add {NOWHERE} lladdr 02:00:00:00:00:99 dev {self.ns.ns_if} "
                "nud permanent", inside=True)
        return self

    def cut(self) -> None:
        for address in self.far:
            self.sh(f"ip route add {address}/32 via {NOWHERE} dev {self.ns.ns_if} onlink",
                    inside=True)

    def heal(self) -> None:
        for address in self.far:
            self.sh(f"ip route del {address}/32", inside=True)

    def remove(self) -> None:
        self.ns.remove()  # the host end's addresses go with the veth


@pytest.fixture
def partition() -> Iterator[Partition]:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("network namespaces need root (CI runs as root)")
        pytest.skip("network namespaces need root")
    p = Partition()
    try:
        yield p.create()
    finally:
        p.remove()


@pytest.fixture
def far_cluster(tmp_path: Path, partition: Partition) -> Iterator[Cluster]:
    c = Cluster(tmp_path, host=partition.ns.host_ip,
                sentinel_hosts=(partition.ns.host_ip, *partition.far))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def status(host: str, port: int) -> dict[str, object]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/status")
        response = conn.getresponse()
        assert response.status == 200
        (listener,) = json.loads(response.read())["listeners"]
    finally:
        conn.close()
    authority = listener["authority"]
    assert isinstance(authority, dict)
    return authority


def changes(relay: RelayProcess) -> list[tuple[object, object, object]]:
    """(state, primary, generation) of each authority_change after the first confirmation."""
    events = [e for e in relay.events if e.get("event") == "authority_change"]
    first = next(i for i, e in enumerate(events) if e.get("state") == "confirmed")
    return [(e["state"], e["primary"], e["generation"]) for e in events[first:]]


def test_a_relay_cut_off_from_the_majority_keeps_the_primary_for_stale_after_then_refuses(
        tmp_path: Path, partition: Partition, far_cluster: Cluster) -> None:
    cluster, ns = far_cluster, partition.ns
    old = cluster.ports[0]
    listener = {"name": "redis", "connect_timeout": "500ms",
                "retry": {"attempts": 2, "deadline": "1s"},
                "authority": cluster.authority(stale_after=f"{STALE_AFTER:g}s")}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    relay_a = RelayProcess(toml_config([{**listener, "listen": "127.0.0.1:0"}]), tmp_path / "a")
    relay_b = RelayProcess(toml_config([{**listener, "listen": f"{ns.ip}:0"}],
                                       admin={"listen": f"{ns.ip}:0"}), tmp_path / "b",
                           prefix=("ip", "netns", "exec", ns.name))
    loops: list[Loop] = []
    threads: list[threading.Thread] = []
    watch: SwitchWatch | None = None
    try:
        for relay in (relay_a, relay_b):
            relay.wait_ready()
            relay.wait_event(lambda e: e.get("event") == "authority_change"
                             and e.get("state") == "confirmed", timeout=10)
        loops = [Loop(relay_a.port()), Loop(relay_b.port(), host=ns.ip)]
        threads = [threading.Thread(target=loop.run, daemon=True) for loop in loops]
        for t in threads:
            t.start()
        wait_for(lambda: all(any(p == old for _, _, p in loop.results) for loop in loops),
                 timeout=10)

        cut = time.monotonic()
        partition.cut()
        relay_b.wait_event(lambda e: e.get("event") == "authority_change"
                           and e.get("state") == "none" and e.get("generation") == 1,
                           timeout=STALE_AFTER * 5)  # not the "none" of its start (generation 0)
        refusing = time.monotonic()
        during = status(ns.ip, relay_b.admin_port)
        time.sleep(max(0.0, cut + 3 * STALE_AFTER - time.monotonic()))

        # Sentinel fails over while B hears only one sentinel of three (which names the new one)
        watch = SwitchWatch(cluster.sentinel_ports[0], host=ns.host_ip)
        assert ask(cluster.sentinel_ports[0], "SENTINEL", "FAILOVER", MASTER,
                   host=ns.host_ip).startswith(b"+OK")
        switched = watch.wait(timeout=FAILOVER_TIMEOUT_MS / 1000 * 5)
        new = int(watch.payload.split(b"\r\n")[-2].split()[-1])
        assert new in cluster.ports[1:]
        wait_for(lambda: any(p == new for _, _, p in loops[0].results), timeout=10)
        time.sleep(STALE_AFTER)  # B has heard S1 name the new primary, and its +switch-master
        isolated_status = status(ns.ip, relay_b.admin_port)

        healed = time.monotonic()
        partition.heal()
        wait_for(lambda: any(p == new and s > healed for s, _, p in loops[1].results),
                 timeout=STALE_AFTER * 10)
        time.sleep(0.5)
    finally:
        for loop in loops:
            loop.stopping.set()
        for t in threads:
            t.join(10)
        if watch is not None:
            watch.close()
        try:
            final = [status("127.0.0.1", relay_a.admin_port) if relay_a.admin_port else {},
                     status(ns.ip, relay_b.admin_port) if relay_b.admin_port else {}]
        finally:
            relay_a.stop()
            relay_b.stop()
    loop_a, loop_b = loops
    # B: before stale_after ran out every session went to the last confirmed primary ...
    kept = [(s, p) for s, _, p in loop_b.results if cut <= s < cut + STALE_AFTER / 2]
    assert kept and all(p == old for _, p in kept), kept
    # ... and once stale_after had surely run out (the sentinels' answers stop counting
    # within 3 intervals or a 0.5 s timeout of the cut: well inside one stale_after),
    # every new session was refused, until the partition healed
    refused = [(s, p) for s, _, p in loop_b.results if cut + 2 * STALE_AFTER <= s < healed]
    assert len(refused) >= 10 and all(p is None for _, p in refused), refused
    kinds = {k for s, k in loop_b.errors if cut + 2 * STALE_AFTER <= s < healed}
    # closed at once, not held (no TimeoutError): a reset when the INCR was already in,
    # else an end of stream (relay closes a session without a backend as no_backend)
    assert kinds and kinds <= {"ConnectionResetError", "ConnectionError"}, kinds
    assert refusing - cut >= STALE_AFTER
    # B never reached a node the majority did not name: the old primary only before the
    # switch, the new one only after the partition healed, nothing in between
    b_answers = [(s, p) for s, _, p in loop_b.results if p is not None]
    assert all(p == old for s, p in b_answers if s < healed), b_answers
    assert all(p == new for s, p in b_answers if s >= healed), b_answers
    assert not [s for s, p in b_answers if p == old and s >= switched]
    # A, not partitioned, followed the switch (its changes: below)
    a_after = [p for s, _, p in loop_a.results if s > switched and p is not None]
    assert a_after and set(a_after) <= {new}
    # logged once each, with the reason: stale (no majority), none (stale for 2s), then
    # the new primary once the majority is heard again
    assert changes(relay_b) == [("confirmed", f"{ns.host_ip}:{old}", 1),
                                ("stale", f"{ns.host_ip}:{old}", 1), ("none", None, 1),
                                ("confirmed", f"{ns.host_ip}:{new}", 2)], changes(relay_b)
    reasons = [e["reason"] for e in relay_b.events if e.get("event") == "authority_change"
               and e.get("state") in ("stale", "none")][-2:]
    assert "no majority" in str(reasons[0]) or "no sentinel" in str(reasons[0]), reasons
    assert f"stale for {STALE_AFTER:g}s" in str(reasons[1]), reasons
    # A never went stale; at the switch it may say "none" for the moment between the
    # majority naming the new node and ROLE confirming it
    a_changes = changes(relay_a)
    assert a_changes[0] == ("confirmed", f"{ns.host_ip}:{old}", 1), a_changes
    assert a_changes[-1] == ("confirmed", f"{ns.host_ip}:{new}", 2), a_changes
    assert set(a_changes[1:-1]) <= {("none", None, 1)}, a_changes
    # what /status showed: one source of three answering, then the one naming the new node
    sources = during["sources"]
    assert isinstance(sources, dict)
    up = [s for s, v in sources.items() if isinstance(v, dict) and v["reachable"]]
    assert during["state"] == "none" and during["primary"] is None
    assert up == [f"{ns.host_ip}:{cluster.sentinel_ports[0]}"], sources
    assert isolated_status["state"] == "none" and isolated_status["primary"] is None
    assert isolated_status["refused_sessions"] >= len(refused)  # type: ignore[operator]
    assert final[0]["generation"] == final[1]["generation"] == 2, final
    print(f"\npartition: relay B refused new sessions {refusing - cut:.3f}s after the cut "
          f"(stale_after {STALE_AFTER:g}s); {len(refused)} sessions refused while cut off; "
          f"{isolated_status['refused_sessions']} refusals counted by relay")
