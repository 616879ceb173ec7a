"""The dialer: carries out a session's dial plan (relay/core/dial.py) on the reactor.

A client's first byte waits in the kernel while the dialer connects: the plan names the
backend, the dialer starts the connect and watches it (relay/net/connect.py), and hands the
connected socket to the session, which only relays. A hedge is a second connect of the same
dial; whichever completes first goes to the session, the other one is watched on as a loser
whose outcome still feeds passive health. Every outcome goes to the backend group, one way.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Final

from relay.core.dial import Connect, DialPlan, Step, Wait
from relay.net.accept import RESOURCE_ERRORS
from relay.net.backends import Backend, BackendGroup
from relay.net.connect import PendingConnect, Watcher
from relay.net.session import Dialed, End, SessionHost

if TYPE_CHECKING:
    from relay.net.timers import Timer

_EINPROGRESS: Final = errno.EINPROGRESS


class Dial(Watcher[Backend]):
    """Connect attempts for one session, until one connects or the plan gives up."""

    __slots__ = ("group", "hedge", "hedge_failed", "hedge_timer", "listener", "plan", "primary",
                 "reactor", "session", "wait_timer")

    def __init__(self, listener: SessionHost, session: Dialed) -> None:
        config = session.config  # the session's: a reload changes only new sessions'
        self.listener = listener
        group = self.group = listener.group
        self.reactor = listener.reactor
        self.session: Dialed | None = session
        retry = config.retry
        self.plan: DialPlan[Backend] = DialPlan(group, session.opened, retry.attempts,
                                                retry.deadline, config.connect_timeout,
                                                group.retry_backoff, retry.hedge)
        self.primary: PendingConnect[Backend] | None = None
        self.hedge: PendingConnect[Backend] | None = None  # a second connect, racing the first
        self.hedge_failed: Backend | None = None  # the hedge's target, once its connect failed
        self.hedge_timer: Timer | None = None
        self.wait_timer: Timer | None = None
        session.dial = self

    def start(self) -> None:
        step = self.plan.next(self.reactor.now)
        if type(step) is Connect and self.session is not None:  # (the usual case, one call less)
            self._connect(self.session, step)
        else:
            self._follow(step)

    def _again(self) -> None:
        self.wait_timer = None
        self._follow(self.plan.next(self.reactor.now))

    def _follow(self, step: Step[Backend]) -> None:
        session = self.session
        if session is None:
            return
        if type(step) is Connect:
            self._connect(session, step)
        elif type(step) is Wait:
            # the client is held; its bytes wait in the kernel until a backend answers
            self.wait_timer = self.reactor.call_at(step.until, self._again)
        else:
            # an authority that names no primary refuses: a reset, never an answer that could
            # pass for the service's own (product.md §9)
            authority = self.group.authority
            if authority is not None and authority.refusing:
                session.close("no_backend", reset_client=True)
            else:
                session.close("no_backend")

    def _connect(self, session: Dialed, step: Connect[Backend]) -> None:
        backend = step.backend
        session.backend = backend
        try:
            sock, err = self.listener.start_connect(backend.target)
        except OSError as exc:  # no socket to be had: a local shortage, not the backend's fault
            if exc.errno in RESOURCE_ERRORS:
                self.listener.out_of_fds(exc)
            session.close("local_error")
            return
        if err and err != _EINPROGRESS:
            sock.close()
            self._failed(backend, err)
            return
        primary = self.primary = PendingConnect(self.reactor, self, backend, sock,
                                                self.reactor.now, step.until)
        if err == 0:
            self._won(primary)
            return
        after = self.plan.hedge_after(backend, backend.estimate)
        if after is not None:
            self.hedge_timer = self.reactor.call_later(after, self._start_hedge)

    def _failed(self, backend: Backend, err: int) -> None:
        """The primary connect failed; a hedge still racing carries the dial on."""
        session = self.session
        assert session is not None
        self.group.connect_error(backend, err, session.client_addr, self.plan.attempts)
        if self.hedge is not None:
            return
        self._no_hedge_timer()  # (not fired yet: no hedge of a failed connect)
        self._failed_hedge_ended("both_failed", None)
        self._follow(self.plan.failed(self.reactor.now, self.group.rng))

    # -- hedging: a second connect when the first is slow ----------------------------

    def _start_hedge(self) -> None:
        self.hedge_timer = None
        primary = self.primary
        if self.session is None or primary is None or self.hedge is not None:
            return
        target = self.plan.hedge_target(primary.backend, self.group.hedges)
        if target is None:
            return
        try:
            sock, err = self.listener.start_connect(target.target)
        except OSError:
            return  # no socket to spare: the first connect goes on alone
        self.plan.hedging(target)
        self.session.hedged = True
        self.group.hedges.started()
        if err and err != _EINPROGRESS:
            sock.close()
            self._hedge_failed(target, err)
            return
        self.hedge = PendingConnect(self.reactor, self, target, sock, self.reactor.now,
                                    primary.deadline)

    def _hedge_failed(self, target: Backend, err: int) -> None:
        session = self.session
        assert session is not None
        self.group.connect_error(target, err, session.client_addr, self.plan.attempts)
        self.hedge_failed = target
        if self.primary is None:  # the first connect failed already: both did
            self._failed_hedge_ended("both_failed", None)
            self._follow(self.plan.failed(self.reactor.now, self.group.rng))

    def _failed_hedge_ended(self, outcome: str | None, target_won: bool | None) -> None:
        """The race of a hedge whose connect failed is over (see BackendGroup.hedge_ended)."""
        failed, self.hedge_failed = self.hedge_failed, None
        if failed is not None:
            self.group.hedge_ended(outcome, failed.name, target_won)

    def _no_hedge_timer(self) -> None:
        if self.hedge_timer is not None:
            self.hedge_timer.cancel()
            self.hedge_timer = None

    # -- what the pending connects report ------------------------------------------

    def connect_done(self, pending: PendingConnect[Backend], err: int) -> None:
        if pending is not self.primary and pending is not self.hedge:
            pending.close()  # (not ours any more)
        elif not err:
            self._won(pending)
        elif pending is self.primary:
            self.primary = None
            pending.close()
            self._failed(pending.backend, err)
        else:
            self.hedge = None
            pending.close()
            self._hedge_failed(pending.backend, err)

    def connect_crashed(self, pending: PendingConnect[Backend]) -> None:
        if self.session is not None:
            self.session.close("internal_error", reset=True)
        pending.close()

    def _won(self, pending: PendingConnect[Backend]) -> None:
        """`pending` connected: the other connect (if any) becomes a watched loser, and the
        session gets the socket."""
        session = self.session
        assert session is not None
        group = self.group
        if pending is self.primary:
            self.primary = None
            hedge, self.hedge = self.hedge, None
            if hedge is not None:
                hedge.watcher = Loser(group, session.client_addr, self.plan.attempts)
                group.hedge_ended("primary_won", hedge.backend.name, False)
            elif self.hedge_failed is not None:  # the hedge failed first: the primary won
                self._failed_hedge_ended("primary_won", False)
        else:
            self.hedge = None
            primary, self.primary = self.primary, None
            if primary is not None:
                primary.watcher = Loser(group, session.client_addr, self.plan.attempts)
            group.hedge_ended("hedge_won", pending.backend.name, True)
        if self.hedge_timer is not None:  # (no call per connect without one)
            self._no_hedge_timer()
        self.session = session.dial = None  # no cycle left: reference counting frees both
        started, backend, events = pending.started, pending.backend, pending.events
        server_end = End(pending.hand_over(session), pending.fd)
        server_end.note(events)
        try:
            session.connected(backend, server_end, self.reactor.now - started)
        except Exception:  # the session's bug, raised from the connect's handler: close it
            session.close("internal_error", reset=True)
            raise

    def _end(self) -> None:
        if self.hedge_timer is not None:
            self._no_hedge_timer()
        session, self.session = self.session, None
        if session is not None:
            session.dial = None  # no cycle left: reference counting frees both

    def cancel(self, reset: bool) -> None:
        """The session closed while connecting: both connects end here, unobserved."""
        if self.wait_timer is not None:
            self.wait_timer.cancel()
            self.wait_timer = None
        if self.primary is not None:
            self.primary.close(reset)
            self.primary = None
        hedge, self.hedge = self.hedge, None
        if hedge is not None:  # the client left while both raced: nobody won
            hedge.close()
            self.group.hedge_ended(None, hedge.backend.name, None)
        else:
            self._failed_hedge_ended(None, None)
        self._end()


class Loser(Watcher[Backend]):
    """Watches a connect that lost the race: its outcome feeds passive health like any
    connect's, and it is closed as soon as it completes; it is never relayed."""

    __slots__ = ("attempt", "client", "group")

    def __init__(self, group: BackendGroup, client: str, attempt: int) -> None:
        self.group = group
        self.client = client
        self.attempt = attempt

    def connect_done(self, pending: PendingConnect[Backend], err: int) -> None:
        pending.close()
        if err:
            self.group.connect_error(pending.backend, err, self.client, self.attempt)
        else:
            self.group.unused_connect_succeeded(pending.backend,
                                                pending.reactor.now - pending.started)

    def connect_crashed(self, pending: PendingConnect[Backend]) -> None:
        pending.close()
