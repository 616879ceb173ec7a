"""The resolver keeps getaddrinfo off the loop: one lookup per name, bounded threads, a deadline."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from relay.config.model import Address
from relay.net.reactor import Reactor
from relay.net.resolve import ResolveError, SockAddr
from relay.net.resolver import LookupPool, Resolver, resolve_now
from tests.support.wait import wait_for

ANSWER = SockAddr(socket.AF_INET, ("10.0.0.7", 6379))


class BlockingLookup:
    """A getaddrinfo stand-in that blocks until released (a resolver that does not answer)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, address: Address, passive: bool) -> SockAddr:
        with self._lock:
            self.calls.append(address.host)
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.release.wait(30)
            if address.host.startswith("bad"):
                raise ResolveError(f"cannot resolve {address.host!r}: no such name")
            return ANSWER
        finally:
            with self._lock:
                self.running -= 1


class Loop:
    """A reactor turning in a thread; `call` runs a function in it."""

    def __init__(self) -> None:
        self.reactor = Reactor()
        self.reactor.enable_threadsafe()
        self.ticks = 0
        self.reactor.call_later(0.005, self._tick)
        self.thread = threading.Thread(target=self.reactor.run, daemon=True)
        self.thread.start()

    def _tick(self) -> None:
        self.ticks += 1
        self.reactor.call_later(0.005, self._tick)

    def call(self, fn: Callable[[], Any]) -> None:
        done = threading.Event()

        def run() -> None:
            fn()
            done.set()

        self.reactor.call_threadsafe(run)
        assert done.wait(10)


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.reactor.call_threadsafe(running.reactor.stop)
    running.thread.join(10)
    running.reactor.close()


@pytest.fixture
def lookup() -> Iterator[BlockingLookup]:
    fake = BlockingLookup()
    yield fake
    fake.release.set()  # abandoned lookups end with the test


def answers(loop: Loop, resolver: Resolver, host: str, box: list[object]) -> None:
    def done(outcome: object) -> None:
        assert threading.current_thread() is loop.thread  # applied on the loop
        box.append(outcome)

    loop.call(lambda: resolver.lookup(Address(host, 6379), done))


def test_the_loop_keeps_turning_while_a_lookup_blocks_and_the_answer_is_applied_on_it(loop,
                                                                                    lookup):
    resolver = Resolver(loop.reactor, timeout=30, pool=LookupPool(lookup=lookup))
    got: list[object] = []
    answers(loop, resolver, "db.example", got)
    wait_for(lambda: lookup.running == 1)
    ticks = loop.ticks
    wait_for(lambda: loop.ticks >= ticks + 20)  # timers fire while getaddrinfo blocks
    assert got == []
    lookup.release.set()
    wait_for(lambda: got == [ANSWER])


def test_one_lookup_per_name_and_a_bounded_number_of_threads(loop, lookup):
    pool = LookupPool(threads=2, lookup=lookup)
    resolver = Resolver(loop.reactor, timeout=30, pool=pool)
    got: dict[str, list[object]] = {"a": [], "b": [], "c": []}
    for _ in range(5):
        for host in ("a", "b", "c"):
            answers(loop, resolver, f"{host}.example", got[host])
    wait_for(lambda: lookup.running == 2)
    assert sorted(lookup.calls) in (["a.example", "b.example"], ["a.example", "c.example"],
                                    ["b.example", "c.example"])
    assert pool.running == 2  # the third name waits for a thread
    lookup.release.set()
    wait_for(lambda: all(len(box) == 5 for box in got.values()))
    assert sorted(lookup.calls) == ["a.example", "b.example", "c.example"]  # once each
    assert lookup.most_at_once == 2
    assert all(box == [ANSWER] * 5 for box in got.values())
    wait_for(lambda: pool.running == 0)  # idle threads end


def test_no_answer_in_time_is_an_error_and_the_abandoned_lookup_is_not_repeated(loop, lookup):
    pool = LookupPool(lookup=lookup)
    resolver = Resolver(loop.reactor, timeout=0.05, pool=pool)
    first: list[object] = []
    answers(loop, resolver, "db.example", first)
    wait_for(lambda: len(first) == 1)
    assert isinstance(first[0], ResolveError)
    assert "no answer within 0.05s" in str(first[0])
    second: list[object] = []
    answers(loop, resolver, "db.example", second)  # the stuck lookup is joined, not doubled
    wait_for(lambda: len(second) == 1)
    assert lookup.calls == ["db.example"]
    assert pool.in_flight() == 1
    lookup.release.set()
    wait_for(lambda: pool.in_flight() == 0)
    loop.call(lambda: None)  # the late answer, if handed over, has been run by now
    assert len(first) == 1 and len(second) == 1  # each asker was answered exactly once


def test_a_failed_lookup_is_an_error_not_a_dead_thread(loop, lookup):
    def broken(address: Address, passive: bool) -> SockAddr:
        raise ValueError("embedded null byte")

    resolver = Resolver(loop.reactor, timeout=30, pool=LookupPool(lookup=broken))
    got: list[object] = []
    answers(loop, resolver, "db.example", got)
    wait_for(lambda: len(got) == 1)
    assert isinstance(got[0], ResolveError) and "embedded null byte" in str(got[0])
    resolver2 = Resolver(loop.reactor, timeout=30, pool=LookupPool(lookup=lookup))
    lookup.release.set()
    answers(loop, resolver2, "bad.example", got)
    wait_for(lambda: len(got) == 2)
    assert "no such name" in str(got[1])


def test_literal_addresses_are_answered_at_once_without_a_thread(loop, lookup):
    pool = LookupPool(lookup=lookup)
    resolver = Resolver(loop.reactor, timeout=30, pool=pool)
    outcomes: list[object] = []

    def ask() -> None:
        resolver.lookup_all([(Address("127.0.0.1", 1), False), (Address("::1", 2), True)],
                            outcomes.append)
        assert outcomes  # before lookup_all returned

    pool.lookup = lambda address, passive: SockAddr(socket.AF_INET, (address.host, 1))
    loop.call(ask)
    assert lookup.calls == [] and pool.running == 0


def test_no_answer_reaches_the_loop_after_close(loop, lookup):
    resolver = Resolver(loop.reactor, timeout=30, pool=LookupPool(lookup=lookup))
    got: list[object] = []
    answers(loop, resolver, "db.example", got)
    wait_for(lambda: lookup.running == 1)
    loop.call(resolver.close)
    lookup.release.set()
    wait_for(lambda: lookup.running == 0)
    loop.call(lambda: None)
    assert got == []


def test_start_up_resolution_is_parallel_and_bounded(lookup):
    pool = LookupPool(threads=4, lookup=lookup)
    keys = [(Address("slow.example", 1), False), (Address("other.example", 2), False),
            (Address("127.0.0.1", 3), True)]
    pool_lookup = pool.lookup
    pool.lookup = lambda a, p: (SockAddr(socket.AF_INET, (a.host, a.port))
                                if a.host[0].isdigit() else pool_lookup(a, p))
    outcomes = resolve_now(keys, timeout=0.1, pool=pool)  # nothing answers: bounded wait
    wait_for(lambda: lookup.running == 2)  # both names asked at once, not one after the other
    assert all("no answer within 0.1s" in str(outcomes[k]) for k in keys[:2])
    assert outcomes[keys[2]] == SockAddr(socket.AF_INET, ("127.0.0.1", 3))


def test_workers_take_the_supervisors_answer_and_never_look_names_up(lookup):
    """The leader (supervisor) re-resolves a backend that went down; its followers
    (workers) get the address with its health and ask no resolver themselves."""
    import random

    from relay.config import parse_config
    from relay.net.backends import Backend, BackendGroup, FollowerGroup
    from relay.net.resolve import resolve
    from tests.support.relayproc import toml_config

    lc = parse_config(toml_config([{
        "name": "db", "listen": "127.0.0.1:0", "health": {"kind": "tcp", "fall": 1},
        "backends": [{"name": "db", "address": "db.example:6379"}]}])).listeners[0]
    start = resolve(Address("127.0.0.1", 6379))
    reactor = Reactor()
    try:
        pool = LookupPool(lookup=lookup)
        resolver = Resolver(reactor, timeout=30, pool=pool)

        def group(kind: type[BackendGroup]) -> BackendGroup:
            return kind(reactor, lc, [Backend(lc.backends[0], start, lc)],
                        random.Random(1), resolver=resolver)

        leader, follower = group(BackendGroup), group(FollowerGroup)
        assert isinstance(follower, FollowerGroup)
        leader.check_result(leader.backends[0], False, "refused")  # down: the leader asks
        wait_for(lambda: lookup.calls == ["db.example"])
        leader.backends[0].target = ANSWER  # (what its answer does, on its loop)
        follower.apply(leader.snapshot(leader.backends[0]))  # the down transition, mirrored
        assert follower.backends[0].target == ANSWER
        assert not follower.backends[0].health.up
        assert lookup.calls == ["db.example"]  # the follower asked nobody
    finally:
        lookup.release.set()
        resolver.close()
        reactor.close()
