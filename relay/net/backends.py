"""A listener's backends at run time: health, checks, the serving tier, and operator actions.

This is the edge that carries out what relay.core decides: check results and
traffic observations go into each backend's HealthState; transitions are logged
once with their cause, counted, and acted on (close_on_down, re-resolving a
hostname, moving the serving tier, draining backups after failback).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, MutableMapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

from relay.config.model import BackendConfig, ListenerConfig
from relay.core.backoff import Backoff
from relay.core.balance import make_balancer
from relay.core.candidates import BackendView, LastResortGate, candidate_order, next_attempt
from relay.core.connect_error import CONNECT_ERRORS, describe
from relay.core.dial import Candidates
from relay.core.health import AdminState, HealthState, Transition
from relay.core.hedge import ConnectEstimate, HedgeBudget
from relay.core.lograte import LogAggregate
from relay.core.passive import EarlyCheck, Verdict, judge_backend_end
from relay.core.tiers import (
    DrainSchedule,
    FailbackRefused,
    TierChange,
    TierSelector,
    counts_as_failover,
)
from relay.logs import log
from relay.net.checker import Checker, HealthChecker
from relay.net.counts import (
    BACKEND_FIELDS,
    CONNECT_BUCKETS,
    DOWN,
    UP,
    Counts,
    HistogramCounts,
    Tally,
    new_counts,
)
from relay.net.counts import B as FIELDS
from relay.net.messages import BackendHealth, Health
from relay.net.resolve import ResolveError, SockAddr
from relay.net.resolver import is_literal

if TYPE_CHECKING:
    from relay.net.reactor import Reactor
    from relay.net.resolver import Resolver
    from relay.net.timers import Timer


# what a group's checkers are made of: a module global, not Final, so that compiled code looks
# it up per checker and tests can put a stand-in here (tests/unit/test_backend_group.py)
checker_class: Callable[..., HealthChecker] = Checker
HEDGES_IN_FLIGHT: Final = 64  # per listener: hedging must not turn a slow backend into a SYN storm


class Flow(Protocol):
    @property
    def bytes(self) -> int: ...


class Carried(Protocol):
    """What a backend needs of a session it carries (relay.net.session.Session is one):
    the bytes relayed so far each way, and a way to close it."""

    @property
    def up(self) -> Flow | None: ...
    @property
    def down(self) -> Flow | None: ...

    def close(self, cause: str, reset: bool = False) -> None: ...


class Backend:
    """A backend as relay runs it: where it is, its health, its sessions and counters."""

    def __init__(self, config: BackendConfig, target: SockAddr, listener_config: ListenerConfig,
                 health: HealthState | None = None) -> None:
        h = listener_config.health
        self.config = config
        self.name = config.name
        self.tier = config.tier
        self.target = target
        self.health = health or HealthState(h.rise, h.fall, h.interval, h.down_backoff_max,
                                            initial=h.initial)
        self.sessions: set[Carried] = set()
        self.checker: HealthChecker | None = None
        self.counts: Counts = new_counts(BACKEND_FIELDS)  # see relay.net.counts
        self.connect_errors = Tally(self, "errors", CONNECT_ERRORS, FIELDS)
        self.connect_seconds = HistogramCounts(self, "connect", CONNECT_BUCKETS, FIELDS)
        self.checks: Counter[str] = Counter()  # success / failure
        self.transitions: Counter[str] = Counter()  # up / down
        self.estimate = ConnectEstimate()  # its usual connect time, for hedging
        self.remote_sessions = 0  # with workers: sessions the workers hold (supervisor's view)
        self.resolving = False  # a lookup of its name is under way
        self.resolve_failures = 0  # lookups of its name that failed or timed out
        self.gate = LastResortGate()  # last-resort connects while nothing is available
        self.early_check = EarlyCheck()  # sessions' requests for an early active check
        self.connect_log = LogAggregate()  # connect_failed lines, aggregated
        self.remote_pending = False  # ... and a worker may hold some its last report missed

    def reconfigure(self, config: BackendConfig, target: SockAddr,
                    listener_config: ListenerConfig) -> None:
        """A reload: same listener and name, so health and admin state carry over."""
        h = listener_config.health
        self.config = config
        self.tier = config.tier
        self.target = target
        self.health.reconfigure(h.rise, h.fall, h.interval, h.down_backoff_max)

    @property
    def bytes_up(self) -> int:
        """Client -> backend, of sessions closed so far."""
        return self.counts[UP]

    @bytes_up.setter
    def bytes_up(self, value: int) -> None:
        self.counts[UP] = value

    @property
    def bytes_down(self) -> int:
        return self.counts[DOWN]

    @bytes_down.setter
    def bytes_down(self, value: int) -> None:
        self.counts[DOWN] = value

    @property
    def session_count(self) -> int:
        """Its open sessions: this process's and (in a supervisor) its workers'."""
        return len(self.sessions) + self.remote_sessions

    def bytes_total(self) -> tuple[int, int]:
        """(upstream, downstream) so far, open sessions included."""
        up = self.bytes_up + sum(s.up.bytes for s in self.sessions if s.up)
        down = self.bytes_down + sum(s.down.bytes for s in self.sessions if s.down)
        return up, down

    def status(self, now: float) -> dict[str, object]:
        h = self.health
        return {
            "name": self.name, "tier": self.tier, "address": self.target.text,
            "state": h.state, "admin_state": h.admin, "available": h.available,
            "suspect": h.suspect,
            "checked": h.checked, "sessions": self.session_count,
            "last_check_seconds_ago": None if h.last_check is None
            else round(now - h.last_check, 3),
            "last_error": h.last_error or None,
        }

    def view(self) -> BackendView:
        health = self.health
        return BackendView(self.tier, self.config.weight, len(self.sessions), health.available,
                           health.admin == "ready")


class GroupAuthority(Protocol):
    """What a group asks of the authority that names who may serve (issue 15;
    relay.net.authority.AuthorityWatch is one): it runs between start and stop, picks each
    connect attempt's backend, and shows itself on the status page."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def choose(self, group: BackendGroup, tried: list[Backend],
               untried_only: bool) -> Backend | None: ...

    def status(self) -> dict[str, object]: ...

    @property
    def refusing(self) -> bool:
        """It names no primary now: new sessions are refused."""
        ...


# (group, the authority it followed before a reload or None) -> the authority it follows now
AuthorityFactory = Callable[["BackendGroup", GroupAuthority | None], GroupAuthority]


class Discovery(Protocol):
    """A name that stands for several backends (discover = "dns"; relay.net.discovery's
    DnsDiscovery): it looks the name up between start and stop and changes the group."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


# Replaces a group's discover = "dns" backends by those their names stand for (given the
# previous discoveries on a reload): relay.net.discovery.expand, given by whoever builds the
# group, as the authority's factory is
DiscoveryFactory = Callable[["BackendGroup", dict[str, Any] | None], dict[str, Any]]


class BackendGroup(Candidates[Backend]):
    """A listener's backends, and the group that decides their health: it runs the checks,
    judges passive reports, counts and logs each transition once, and tells `publish`
    (a supervisor's workers mirror it). FollowerGroup is a worker's mirror of one."""

    def __init__(self, reactor: Reactor, config: ListenerConfig, backends: list[Backend],
                 rng: random.Random, resolver: Resolver | None = None,
                 discover: DiscoveryFactory | None = None) -> None:
        self.reactor = reactor
        self.resolver = resolver
        self.publish: Callable[[BackendGroup, Backend | None], None] | None = None
        self.note: Callable[..., None] | None = None  # the status page's event ring (deciding group)
        self.config = config
        self.listener_name = config.name
        self.backends = backends
        self.by_name = {b.name: b for b in backends}
        self.rng = rng
        self.balancer = make_balancer(config.balance)
        self.tiers = TierSelector(config.failback, config.failback_delay)
        r = config.retry
        self.retry_backoff = Backoff(r.backoff_initial, r.backoff_max, r.multiplier, r.jitter)
        self.failovers = 0
        self._static_order: list[int] | None = None
        self.hedges = HedgeBudget(limit=HEDGES_IN_FLIGHT)
        self.hedge_outcomes: MutableMapping[str, int] = Counter()  # primary_won / hedge_won / both_failed
        self.drain = DrainSchedule(config.drain_backup_after)  # relay/core/tiers.py decides
        self._tier_timer: Timer | None = None
        self._drain_timer: Timer | None = None
        self.authority: GroupAuthority | None = None  # issue 15: [listener.authority]
        # ... made by this factory, given by whoever builds the group (relay.net.server, with
        # relay.net.authority.AuthorityWatch): an authority drives its group, not the reverse
        self.follow_authority: AuthorityFactory | None = None
        self._discover = discover  # issue 15: discover = "dns"
        self.discoveries: dict[str, Discovery] = discover(self, None) if discover else {}
        self.checking = False  # between start_checks and stop_checks (FollowerGroup: never)
        self.refresh_tiers()

    def reconfigure(self, config: ListenerConfig,
                    backends: list[tuple[BackendConfig, SockAddr]]) -> None:
        """A reload: backends whose name stays keep their health and admin state; removed
        ones leave the group (their sessions finish); new ones start as a restart would. A
        drain of backup sessions already scheduled by a failback keeps its time, unless the
        new settings turn drain_backup_after off (relay.core.tiers.DrainSchedule)."""
        self.stop_checks()
        pending_drain = self.drain.reload(config.drain_backup_after)
        kept = self.by_name
        new: list[Backend] = []
        for bc, target in backends:
            backend = kept.get(bc.name)
            if backend is None:
                backend = Backend(bc, target, config)
            else:
                backend.reconfigure(bc, target, config)
            new.append(backend)
        if config.balance != self.config.balance:
            self.balancer = make_balancer(config.balance)
        self.config = config
        self.backends = new
        self.by_name = {b.name: b for b in new}
        self.discoveries = (self._discover(self, self.discoveries)  # issue 15
                            if self._discover else {})
        self.tiers.failback = config.failback
        self.tiers.failback_delay = config.failback_delay
        r = config.retry
        self.retry_backoff = Backoff(r.backoff_initial, r.backoff_max, r.multiplier, r.jitter)
        # checks (and an authority's watch) first: the backends an authority named join the
        # new list again there, so the tier is recomputed over all of them (refreshed before,
        # a listener whose backends the authority names alone went to "no backend" and back)
        self.start_checks()
        self.refresh_tiers()
        self.drain.keep(pending_drain)
        self._arm_drain()

    # -- members that come and go while it runs (issue 15) ---------------------------

    def add_backend(self, backend: Backend, refresh: bool = True) -> None:
        """`backend` joins the running group (DNS discovery found it, an authority named it):
        a candidate for new sessions from now on, and checked from within one interval, as a
        new backend of a reload is. Several at once: refresh=False, then refresh_tiers()."""
        if backend.name in self.by_name:
            raise ValueError(f"listener {self.listener_name}: two backends {backend.name!r}")
        self.backends.append(backend)
        self.by_name[backend.name] = backend
        if self.checking:
            backend.checker = self._checker(backend)
            backend.checker.schedule(self.rng.uniform(0, self.config.health.interval))
        if refresh:
            self.refresh_tiers()  # (which also drops the cached candidate order)

    def remove_backend(self, backend: Backend, refresh: bool = True) -> None:
        """`backend` leaves the running group, as a backend a reload removes does: no new
        sessions and no more checks; its open sessions finish (relay.metrics keeps its series
        until they have, and a session retrying meanwhile goes elsewhere). Several at once:
        refresh=False, then refresh_tiers()."""
        self.backends.remove(backend)
        if self.by_name.get(backend.name) is backend:
            del self.by_name[backend.name]
        if backend.checker is not None:
            backend.checker.stop()
            backend.checker = None
        if refresh:
            self.refresh_tiers()

    # -- checks -------------------------------------------------------------

    def start_checks(self) -> None:
        """First checks spread over one interval so many backends do not fire together."""
        if self.config.authority is not None:  # issue 15
            if self.follow_authority is None:
                raise RuntimeError(f"listener {self.listener_name}: an authority is configured "
                                   "and the group was given no way to follow one")
            # the previous one (a reload) passes on its generation
            self.authority = self.follow_authority(self, self.authority)
            self.authority.start()
        for discovery in self.discoveries.values():  # issue 15: discover = "dns"
            discovery.start()
        if self.config.health.kind == "none":
            return
        n = len(self.backends)
        interval = self.config.health.interval
        for i, backend in enumerate(self.backends):
            backend.checker = self._checker(backend)
            backend.checker.schedule(interval * i / n + self.rng.uniform(0, interval / (4 * n)))
        self.checking = True

    def _checker(self, backend: Backend) -> HealthChecker:
        return checker_class(self.reactor, backend, self.config.health,
                             self.config.proxy_protocol, self.rng,
                             partial(self.check_result, backend))

    def stop_checks(self) -> None:
        self.checking = False
        if self.authority is not None:  # issue 15
            self.authority.stop()
        for discovery in self.discoveries.values():
            discovery.stop()
        for backend in self.backends:
            if backend.checker is not None:
                backend.checker.stop()
                backend.checker = None
        for timer in (self._tier_timer, self._drain_timer):
            if timer is not None:
                timer.cancel()
        self._tier_timer = self._drain_timer = None

    def check_result(self, backend: Backend, ok: bool, error: str) -> None:
        now = self.reactor.now
        was_available = backend.health.available
        backend.checks["success" if ok else "failure"] += 1
        if ok:
            transition = backend.health.check_passed(now)
        else:
            transition = backend.health.check_failed(now, error)
            if log.debug_enabled:
                log.debug("check_failed", listener=self.listener_name, backend=backend.name,
                          error=error)
        self._after(backend, transition, was_available)

    # -- traffic ------------------------------------------------------------------

    def choose(self, tried: list[Backend], untried_only: bool = False,
               last_resort: bool = True) -> Backend | None:
        """The backend for a session's next connect attempt. `untried_only`: none this
        session tried already (those wait a backoff step). While no backend is available,
        a candidate must pass its last-resort gate (none with `last_resort` False)."""
        if self.authority is not None:  # issue 15: the authority names who may serve
            return self.authority.choose(self, tried, untried_only)
        order = self._static_order
        if order is None:
            order = candidate_order([b.view() for b in self.backends], self.tiers.serving,
                                    self.balancer)
            if self.config.balance == "first":  # depends on health only: keep it until a change
                self._static_order = order
        if not order:
            return None
        backends = self.backends
        if not backends[order[0]].health.available:  # nothing available: each try is gated
            if not last_resort:
                return None
            now = self.reactor.now
            order = [p for p in order if backends[p].gate.is_open(now)]
            position = next_attempt(order, self._positions(tried), untried_only)
            if position is None:
                return None
            backend = backends[position]
            backend.gate.take(now, self.retry_backoff, self.rng)
            return backend
        if not tried:
            return backends[order[0]]
        position = next_attempt(order, self._positions(tried), untried_only)
        return None if position is None else backends[position]

    def _positions(self, tried: list[Backend]) -> list[int]:
        """Where the backends a session tried stand in the group (one that left it meanwhile,
        by a reload or discovery, is no candidate)."""
        backends, by_name = self.backends, self.by_name
        return [backends.index(b) for b in tried if by_name.get(b.name) is b]

    def next_gate_opening(self) -> float | None:
        """While no backend is available: when the first last-resort gate of a backend that
        takes new sessions opens; None when none does (or one is available)."""
        if self.authority is not None:  # issue 15: no primary named is a refusal, not a wait
            return None
        first: float | None = None
        for b in self.backends:
            if b.health.available:
                return None
            if b.health.admin == "ready" and (first is None or b.gate.opens_at < first):
                first = b.gate.opens_at
        return first

    def can_hedge_from(self, backend: Backend) -> bool:
        """Is there another backend a hedge could go to? (No timer for single-backend groups.)"""
        for b in self.backends:  # noqa: SIM110 (a plain loop: no generator per connection)
            if b is not backend and b.health.admin == "ready":
                return True
        return False

    # Connect outcomes (sessions', hedges', losers') all come in here, one way: counted,
    # described (relay/core/connect_error.py), logged and fed to passive health.

    def connected(self, session: Carried, backend: Backend, seconds: float) -> None:
        """A session's connect to `backend` succeeded after `seconds`; it relays from now on."""
        backend.estimate.observe(seconds)
        if self.hedges.losing:  # (only hedging keeps this score)
            self.hedges.target_succeeded(backend.name)
        backend.connect_seconds.observe(backend.counts, seconds)
        backend.sessions.add(session)
        if backend.gate.failures:
            backend.gate.succeeded()
        health = backend.health
        if health.suspect:
            was_available = health.available
            health.traffic_succeeded(self.reactor.now)
            self._after(backend, None, was_available)
        else:
            health.traffic_succeeded(self.reactor.now)

    def unused_connect_succeeded(self, backend: Backend, seconds: float) -> None:
        """A connect that lost a hedge race completed (and was closed): only its time counts."""
        backend.estimate.observe(seconds)

    def connect_error(self, backend: Backend, err: int, client: str, attempt: int) -> None:
        """A connect to `backend` failed with errno `err` (ETIMEDOUT: its deadline passed)."""
        reason, error, detail = describe(err)
        backend.connect_errors[reason] += 1
        # clients can cause these by the thousand: the first of a quiet period is logged,
        # the rest once per backend and interval with a count (relay/core/lograte.py)
        aggregate = backend.connect_log
        if aggregate.record(self.reactor.now, detail):
            log.warning("connect_failed", listener=self.listener_name, backend=backend.name,
                        address=backend.target.text, client=client, reason=reason,
                        error=error, attempt=attempt)
        elif aggregate.count == 1 and aggregate.flush_due is not None:
            self.reactor.call_at(aggregate.flush_due, partial(self._log_held_back, backend))
        self.connect_failed(backend, detail)

    def _log_held_back(self, backend: Backend) -> None:
        summary = backend.connect_log.flush(self.reactor.now)
        if summary is not None:
            log.warning("connect_failed", listener=self.listener_name, backend=backend.name,
                        address=backend.target.text, count=summary.count,
                        seconds=backend.connect_log.interval, last_error=summary.detail)

    def connect_failed(self, backend: Backend, error: str) -> None:
        """A connect failed (`error` as describe() gives it): proof the backend is unwell."""
        backend.gate.failed()
        self.traffic_failed(backend, error)

    def hedge_ended(self, outcome: str | None, target: str, target_won: bool | None) -> None:
        """A hedge towards `target` is over: primary_won, hedge_won, both_failed, or None
        (the client left while both raced: not counted as an outcome)."""
        if outcome is not None:
            self.hedge_outcomes[outcome] += 1
        self.hedges.finished(target, target_won)

    def backend_ended(self, backend: Backend, reset: bool, spoke: bool, fin: bool) -> None:
        """A relaying session's backend side ended (reset, or FIN): relay/core/passive.py
        says whether that may be the backend's fault; if so, an early check decides."""
        if self.config.health.kind == "none":
            return
        if judge_backend_end(reset, spoke, fin) is Verdict.CHECK:
            self.request_check(backend)

    def request_check(self, backend: Backend) -> None:
        """Check `backend` now, unless a check runs or one was asked for within an interval."""
        checker = backend.checker
        in_flight = checker is not None and checker.in_flight
        if not backend.early_check.request(self.reactor.now, self.config.health.interval,
                                           in_flight):
            return
        self._check_early(backend)

    def _check_early(self, backend: Backend) -> None:
        if backend.checker is not None:
            backend.checker.check_now()

    def traffic_failed(self, backend: Backend, error: str) -> None:
        """A connect error from real traffic: passive health."""
        if self.config.health.kind == "none":
            return
        was_available = backend.health.available
        transition = backend.health.traffic_failed(self.reactor.now, error)
        self._after(backend, transition, was_available)

    # -- transitions ------------------------------------------------------------------

    def _after(self, backend: Backend, transition: Transition | None, was_available: bool) -> None:
        if transition is not None:
            self._transition(backend, transition)
        available = backend.health.available
        if available and not was_available:
            backend.gate.succeeded()  # when it is unavailable again, the gate starts afresh
        if transition is not None or available != was_available:
            self.refresh_tiers()
            if self.publish is not None:
                self.publish(self, backend)

    def _transition(self, backend: Backend, transition: Transition) -> None:
        self._record(backend, transition)
        if transition.to == "down":
            self._re_resolve(backend)
            if self.config.close_on_down:
                self._close_sessions(backend, "backend_down")

    def _record(self, backend: Backend, transition: Transition) -> None:
        """Count and log a transition: once, by the group that decides it."""
        backend.transitions[transition.to] += 1
        log.info(f"backend_{transition.to}", listener=self.listener_name,
                 backend=backend.name, cause=transition.cause,
                 message=f"{backend.name} {transition.to}: {transition.cause}")
        if self.note is not None:
            self.note(f"backend_{transition.to}", listener=self.listener_name,
                      backend=backend.name, cause=transition.cause)

    def _re_resolve(self, backend: Backend) -> None:
        """DNS may have moved a failed backend (containers): look its name up again, off the
        loop. The leader asks and tells followers the answer; no answer in time leaves the
        last good address."""
        address = backend.config.address
        if self.resolver is None or is_literal(address.host) or backend.resolving:
            return
        backend.resolving = True

        def answered(outcome: SockAddr | ResolveError) -> None:
            backend.resolving = False
            if self.by_name.get(backend.name) is not backend or backend.config.address != address:
                return  # removed or re-addressed by a reload meanwhile
            if isinstance(outcome, ResolveError):
                backend.resolve_failures += 1
                log.warning("resolve_failed", listener=self.listener_name, backend=backend.name,
                            error=str(outcome), kept=backend.target.text)
                return
            if outcome != backend.target:
                log.info("backend_moved", listener=self.listener_name, backend=backend.name,
                         old=backend.target.text, new=outcome.text)
                backend.target = outcome
                if self.publish is not None:
                    self.publish(self, backend)

        self.resolver.lookup(address, answered)

    def _close_sessions(self, backend: Backend, cause: str) -> None:
        for session in list(backend.sessions):
            session.close(cause, reset=True)

    def refresh_tiers(self) -> None:
        self._static_order = None  # availability may have changed
        available = {b.tier for b in self.backends if b.health.available}
        change = self.tiers.update(self.reactor.now, available)
        if change is not None:
            self._tier_changed(change)
        if self._tier_timer is not None:
            self._tier_timer.cancel()
            self._tier_timer = None
        deadline = self.tiers.next_deadline()
        if deadline is not None:
            self._tier_timer = self.reactor.call_at(deadline, self._tier_due)

    def _tier_due(self) -> None:
        self._tier_timer = None
        self.refresh_tiers()

    def _tier_changed(self, change: TierChange) -> None:
        self._announce_tier(change)
        self.drain.tier_changed(change, self.reactor.now)
        self._arm_drain()

    def _arm_drain(self) -> None:
        """One timer, at the time DrainSchedule holds (moved or dropped when that changes)."""
        at, timer = self.drain.at, self._drain_timer
        if timer is not None and (at is None or timer.when != at or timer.cancelled):
            timer.cancel()
            self._drain_timer = timer = None
        if at is not None and timer is None:
            self._drain_timer = self.reactor.call_at(at, self._drain_backups)

    def _announce_tier(self, change: TierChange) -> None:
        """Count, log and publish a change of the serving tier: once, by the deciding group."""
        if counts_as_failover(change):
            self.failovers += 1
        level = "warning" if change.new is None else "info"
        log.emit(level, "tier_change", {"listener": self.listener_name,
                                         "old": _tier_text(change.old),
                                         "new": _tier_text(change.new), "cause": change.cause})
        if self.note is not None:
            self.note("tier_change", listener=self.listener_name, old=_tier_text(change.old),
                      new=_tier_text(change.new), cause=change.cause)
        if self.publish is not None:
            self.publish(self, None)

    def _drain_backups(self) -> None:
        """After failback and its grace: close sessions still on a tier above the serving one."""
        self._drain_timer = None
        serving = self.drain.due(self.reactor.now, self.tiers.serving)
        if serving is not None:
            for backend in self.backends:
                if backend.tier > serving:
                    self._close_sessions(backend, "drained_after_failback")
        self._arm_drain()

    # -- what followers mirror -----------------------------------------------------------

    def snapshot(self, backend: Backend | None) -> Health:
        """What a follower needs to mirror this group's decision about `backend` (or the tier)."""
        mirrored = None
        if backend is not None:
            h = backend.health
            mirrored = BackendHealth(backend.name, h.level, h.suspect, h.admin, h.checked,
                                     h.last_error, backend.target)
        return Health(self.listener_name, self.tiers.serving, mirrored)

    # -- operator actions (the admin HTTP API calls these) -------------------------------

    def set_admin_state(self, backend_name: str, state: AdminState) -> str:
        backend = self.by_name.get(backend_name)
        if backend is None:
            raise KeyError(backend_name)
        was_available = backend.health.available
        previous = backend.health.admin
        transition = backend.health.set_admin(state)
        self._static_order = None
        if transition is not None:
            log.info("backend_admin", listener=self.listener_name, backend=backend.name,
                     state=state, cause=transition.cause)
            if self.note is not None:
                self.note("backend_admin", listener=self.listener_name, backend=backend.name,
                          state=state, cause=transition.cause)
            if state == "maint":
                if backend.checker is not None:
                    backend.checker.stop()
                self._close_sessions(backend, "maint")
            elif previous == "maint" and self.config.health.kind != "none":  # checks resume
                if backend.checker is not None:
                    backend.checker.stop()
                backend.checker = self._checker(backend)
                backend.checker.schedule(0)
            self._after(backend, None, was_available)
            if self.publish is not None:
                self.publish(self, backend)
        return backend.health.admin

    def failback(self) -> int:
        """Manual failback: new sessions go to tier 0 now. FailbackRefused if it is not up."""
        change = self.tiers.manual_failback(self.reactor.now)
        self._static_order = None
        if change.old != change.new:
            self._tier_changed(change)
        return 0


    def status(self, now: float) -> dict[str, object]:
        return {
            "name": self.listener_name,
            "active_tier": _tier_text(self.tiers.serving),
            "failback": self.config.failback,
            "sessions": sum(b.session_count for b in self.backends),
            "backends": [b.status(now) for b in self.backends],
            **({"authority": self.authority.status()} if self.authority is not None else {}),
        }


class FollowerGroup(BackendGroup):
    """A worker's copy of a group: it runs no checks, applies what the deciding group (the
    supervisor's) says, and reports its own traffic failures through `report` (and the
    early checks it wants through `report_check`) while acting on them at once. It neither
    counts nor logs transitions or tier changes (the deciding group does, once) and never
    re-resolves a name (the deciding group's answer comes with its decisions)."""

    def __init__(self, reactor: Reactor, config: ListenerConfig, backends: list[Backend],
                 rng: random.Random, resolver: Resolver | None = None,
                 discover: DiscoveryFactory | None = None) -> None:
        super().__init__(reactor, config, backends, rng, resolver, discover)
        self.report: Callable[[BackendGroup, Backend, str], None] | None = None
        self.report_check: Callable[[BackendGroup, Backend], None] | None = None

    def start_checks(self) -> None:
        pass  # the deciding group checks

    def _check_early(self, backend: Backend) -> None:
        if self.report_check is not None:
            self.report_check(self, backend)

    def traffic_failed(self, backend: Backend, error: str) -> None:
        super().traffic_failed(backend, error)
        if self.config.health.kind != "none" and self.report is not None:
            self.report(self, backend, error)

    def _record(self, backend: Backend, transition: Transition) -> None:
        pass

    def _announce_tier(self, change: TierChange) -> None:
        pass

    def _re_resolve(self, backend: Backend) -> None:
        pass

    def apply(self, message: Health) -> None:
        """Take the deciding group's state for one backend and its serving tier."""
        mirrored = message.backend
        backend = self.by_name.get(mirrored.name) if mirrored is not None else None
        if mirrored is not None and backend is not None:
            h = backend.health
            was_up, was_available, previous_admin = h.up, h.available, h.admin
            h.level = min(mirrored.level, h.top)
            h.suspect = mirrored.suspect
            h.admin = mirrored.admin
            h.checked = mirrored.checked
            h.last_error = mirrored.error
            backend.target = mirrored.target  # the decider resolves names; we take its answer
            if was_up and not h.up:
                self._transition(backend, Transition("down", "leader"))
            if h.admin == "maint" and previous_admin != "maint":
                self._close_sessions(backend, "maint")
            if h.available != was_available:
                self.refresh_tiers()
        serving = message.serving
        if serving != self.tiers.serving:
            self._static_order = None
            old, self.tiers.serving = self.tiers.serving, serving
            self._tier_changed(TierChange(old, serving, "leader"))


def _tier_text(tier: int | None) -> int:
    return -1 if tier is None else tier


__all__ = ["Backend", "BackendGroup", "FailbackRefused", "FollowerGroup"]
