"""Name resolution off the event loop.

getaddrinfo blocks, for as long as the system resolver likes (a dead nameserver:
timeout x attempts of resolv.conf), and cannot be cancelled. So lookups run on a
few daemon threads: at most one lookup in flight per name (later askers join it),
at most `threads` at once (more wait their turn). Whoever asked sets their own
deadline; a lookup past it is abandoned (its thread finishes on its own and is
forgotten) and the asker gets a ResolveError. On the loop (Resolver), answers are
handed over with reactor.call_threadsafe; at start-up (resolve_now), before anything
serves, the caller simply waits, bounded.
"""

from __future__ import annotations

import functools
import ipaddress
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Generic, TypeVar

from relay.config.model import Address
from relay.net import resolve as resolve_module
from relay.net.resolve import ResolveError, SockAddr

if TYPE_CHECKING:
    from relay.net.reactor import Reactor

RESOLVE_TIMEOUT = 5.0  # seconds a lookup may take (at start, on reload, on a down transition)
THREADS = 4  # lookups at once per process

Key = tuple[Address, bool]  # (address, passive)
Outcome = SockAddr | ResolveError
Lookup = Callable[[Address, bool], SockAddr]
T = TypeVar("T")
Every = tuple[SockAddr, ...]  # every stream address of a name (DNS discovery)


def is_literal(host: str) -> bool:
    """An IP address needs no resolver (and cannot move)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _system_lookup(address: Address, passive: bool) -> SockAddr:
    # looked up at call time, so a test can replace relay.net.resolve.resolve
    return resolve_module.resolve(address, passive=passive)


def _system_lookup_every(address: Address, passive: bool) -> Every:
    return resolve_module.resolve_every(address)


def _outcome(lookup: Callable[[Address, bool], T], key: Key) -> T | ResolveError:
    address, passive = key
    try:
        return lookup(address, passive)
    except ResolveError as exc:
        return exc
    except Exception as exc:  # e.g. ValueError for odd input: an answer, not a dead thread
        return ResolveError(f"cannot resolve {address.host!r}: {exc}")


class LookupPool(Generic[T]):
    """Runs lookups on at most `threads` daemon threads, one in flight per key; each
    asker's callback gets the outcome, in the thread that did the lookup."""

    def __init__(self, threads: int = THREADS,
                 lookup: Callable[[Address, bool], T] = _system_lookup) -> None:  # type: ignore[assignment]
        self.max_threads = threads
        self.lookup = lookup
        self._lock = threading.Lock()
        self._queue: deque[Key] = deque()
        self._askers: dict[Key, list[Callable[[T | ResolveError], None]]] = {}  # queued/running
        self.running = 0  # threads alive

    def submit(self, key: Key, callback: Callable[[T | ResolveError], None]) -> None:
        with self._lock:
            askers = self._askers.get(key)
            if askers is not None:  # already queued or in flight: wait for the same answer
                askers.append(callback)
                return
            self._askers[key] = [callback]
            self._queue.append(key)
            if self.running >= self.max_threads:
                return
            self.running += 1
        threading.Thread(target=self._work, name="relay-resolver", daemon=True).start()

    def in_flight(self) -> int:
        """Keys queued or being looked up."""
        with self._lock:
            return len(self._askers)

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self.running -= 1
                    return
                key = self._queue.popleft()
            outcome = _outcome(self.lookup, key)
            with self._lock:
                askers = self._askers.pop(key)
            for callback in askers:
                callback(outcome)


class Resolver:
    """Lookups for the event loop: `done` runs in the loop with the answer, or with a
    ResolveError once `timeout` has passed without one. Literal addresses are answered at
    once (done runs before lookup() returns)."""

    def __init__(self, reactor: Reactor, timeout: float = RESOLVE_TIMEOUT,
                 pool: LookupPool[SockAddr] | None = None,
                 every_pool: LookupPool[Every] | None = None) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.pool = pool or LookupPool()
        # DNS discovery's lookups (every record) have threads of their own: a dead
        # nameserver stalling them cannot hold up the lookups of failed backends
        self.every_pool = every_pool or LookupPool(threads=2, lookup=_system_lookup_every)
        self._lock = threading.Lock()  # closed vs. a thread handing over an answer
        self.closed = False

    def lookup(self, address: Address, done: Callable[[Outcome], None],
               passive: bool = False) -> None:
        self._ask(self.pool, (address, passive), done)

    def lookup_every(self, address: Address, done: Callable[[Every | ResolveError], None]) -> None:
        """Every stream address of the name (DNS discovery), off the loop, bounded in time."""
        self._ask(self.every_pool, (address, False), done)

    def _ask(self, pool: LookupPool[T], key: Key, done: Callable[[T | ResolveError], None]) -> None:
        address = key[0]
        if is_literal(address.host):
            done(_outcome(pool.lookup, key))
            return
        self.reactor.enable_threadsafe()
        finished = False
        timeout = self.timeout

        def answer(outcome: T | ResolveError) -> None:  # in the loop
            nonlocal finished
            if finished or self.closed:
                return
            finished = True
            timer.cancel()
            done(outcome)

        def expire() -> None:
            answer(ResolveError(f"cannot resolve {address.host!r}: "
                                f"no answer within {timeout:g}s"))

        def hand_over(outcome: T | ResolveError) -> None:  # in a pool thread
            with self._lock:
                if not self.closed:
                    self.reactor.call_threadsafe(lambda: answer(outcome))

        timer = self.reactor.call_later(timeout, expire)
        pool.submit(key, hand_over)

    def lookup_all(self, keys: Iterable[Key],
                   done: Callable[[dict[Key, Outcome]], None]) -> None:
        """Look every key up (in parallel); done once all are answered or timed out."""
        wanted = list(dict.fromkeys(keys))
        outcomes: dict[Key, Outcome] = {}

        def one(key: Key, outcome: Outcome) -> None:
            outcomes[key] = outcome
            if len(outcomes) == len(wanted):
                done(outcomes)

        if not wanted:
            done(outcomes)
        for key in wanted:
            self.lookup(key[0], functools.partial(one, key), passive=key[1])

    def close(self) -> None:
        """No answer reaches the loop after this (call before closing the reactor)."""
        with self._lock:
            self.closed = True


def resolve_now(keys: Iterable[Key], timeout: float = RESOLVE_TIMEOUT,
                pool: LookupPool[SockAddr] | None = None) -> dict[Key, Outcome]:
    """Blocking, for start-up: every key looked up in parallel; waits at most `timeout`."""
    pool = pool or LookupPool(threads=16)
    wanted = list(dict.fromkeys(keys))
    outcomes: dict[Key, Outcome] = {}
    lock = threading.Lock()
    all_in = threading.Event()
    names = [key for key in wanted if not is_literal(key[0].host)]

    def one(key: Key, outcome: Outcome) -> None:
        with lock:
            outcomes[key] = outcome
            if len(outcomes) == len(names):
                all_in.set()

    for key in names:
        pool.submit(key, functools.partial(one, key))
    if names:
        all_in.wait(timeout)
    with lock:
        answered = dict(outcomes)
    for key in wanted:
        if is_literal(key[0].host):
            answered[key] = _outcome(pool.lookup, key)
        elif key not in answered:
            answered[key] = ResolveError(f"cannot resolve {key[0].host!r}: "
                                         f"no answer within {timeout:g}s")
    return answered


__all__ = ["RESOLVE_TIMEOUT", "LookupPool", "Resolver", "is_literal", "resolve_now"]
