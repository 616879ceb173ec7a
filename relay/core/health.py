"""A backend's health: one state machine over active checks, passive observation and admin state.

Operational state follows HAProxy's single counter: ``level`` runs from 0 to
rise + fall - 1; a backend is up while level >= rise. A check success raises the
level by one (a down backend rises after `rise` consecutive successes and is
then set to the top); a failure of an up backend lowers it by one and a success
refills it, so `fall` consecutive failures mark it down, after which the level
is 0. Passive observation (connect errors and resets from real traffic) counts
as a failure and also makes an up backend *suspect*: new sessions avoid it
until a check or a connect succeeds — that is what moves new sessions to the
backup at the first failed connect, before `fall` is reached.

Administrative state sits on top: ready (serves), drain (no new sessions),
maint (no new sessions, no checks, sessions closed).

Pure: every method takes `now`; transitions come back as values for the edge to
log, count and act on.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from relay.core.backoff import Backoff

AdminState = Literal["ready", "drain", "maint"]
ADMIN_STATES: tuple[AdminState, ...] = ("ready", "drain", "maint")

# A check runs never earlier than asked and at most this share of its interval later (and
# at most SPREAD_MAX seconds later): see check_at
SPREAD = 0.05
SPREAD_MAX = 0.1


@dataclass(frozen=True)
class Transition:
    """An operational change (to = "up" / "down") or an admin change (to = an admin state)."""

    to: str
    cause: str


class HealthState:
    def __init__(self, rise: int, fall: int, interval: float, down_backoff_max: float,
                 initial: str = "up", jitter: float = 0.1) -> None:
        if rise < 1 or fall < 1:
            raise ValueError("rise and fall must be >= 1")
        self.rise = rise
        self.fall = fall
        self.top = rise + fall - 1
        # Before the first check: "up" at the lowest up level, so one failure takes it down.
        self.level = rise if initial == "up" else 0
        self.checked = False
        self.suspect = False
        self.admin: AdminState = "ready"
        self.down_checks = 0  # failed checks since it went down: drives the re-check backoff
        self.recheck = Backoff(interval, max(interval, down_backoff_max), 2.0, jitter)
        self.interval = interval
        self.since: float | None = None  # when the current up/down state began
        self.last_check: float | None = None
        self.last_error = ""
        self.failed_checks = 0  # failures since the last success, for the transition's cause
        self.failed_traffic = 0

    def reconfigure(self, rise: int, fall: int, interval: float, down_backoff_max: float) -> None:
        """New check settings (a reload); up stays up and down stays down."""
        was_up = self.up
        self.rise, self.fall, self.top = rise, fall, rise + fall - 1
        self.level = self.top if was_up else min(self.level, rise - 1)
        self.interval = interval
        self.recheck = Backoff(interval, max(interval, down_backoff_max), 2.0, self.recheck.jitter)

    @property
    def up(self) -> bool:
        return self.level >= self.rise

    @property
    def available(self) -> bool:
        """Can take new sessions: up, not suspect, admin ready."""
        return self.level >= self.rise and not self.suspect and self.admin == "ready"

    @property
    def state(self) -> str:
        return "up" if self.up else "down"

    # -- active checks ----------------------------------------------------

    def check_passed(self, now: float) -> Transition | None:
        self.checked = True
        self.last_check = now
        self.suspect = False
        self.failed_checks = self.failed_traffic = 0
        if self.up:
            self.level = self.top
            return None
        self.level += 1
        self.down_checks = 0  # a single success: next checks at the normal interval
        if self.level >= self.rise:
            self.level = self.top
            self.since = now
            return Transition("up", f"{self.rise}/{self.rise} checks passed")
        return None

    def check_failed(self, now: float, error: str) -> Transition | None:
        self.checked = True
        self.last_check = now
        self.last_error = error
        self.failed_checks += 1
        return self._fail(now, error, check=True)

    # -- passive observation ---------------------------------------------------

    def traffic_failed(self, now: float, error: str) -> Transition | None:
        """A connect error or reset seen by a real session."""
        self.last_error = error
        self.failed_traffic += 1
        if self.up:
            self.suspect = True
        return self._fail(now, error, check=False)

    def traffic_succeeded(self, now: float) -> None:
        """A real session connected: an up backend is no longer suspect and its traffic
        failures are forgiven. Failed checks stand until a check passes: a backend that
        accepts connections but fails its checks (hung, or resetting every session) is
        still marked down by its checks, however much traffic connects."""
        if self.up:
            self.suspect = False
            self.level = self.top - self.failed_checks
            self.failed_traffic = 0

    def _cause(self, error: str) -> str:
        if not self.failed_traffic:
            return f"{self.failed_checks}/{self.fall} checks failed: {error}"
        if not self.failed_checks:
            return f"{self.failed_traffic}/{self.fall} connections from traffic failed: {error}"
        return (f"{self.failed_checks} checks and {self.failed_traffic} connections "
                f"failed: {error}")

    def _fail(self, now: float, error: str, check: bool) -> Transition | None:
        if not self.up:
            self.level = 0
            if check:
                self.down_checks += 1
            return None
        self.level -= 1
        if self.level < self.rise:
            self.level = 0
            self.suspect = False
            self.down_checks = 1 if check else 0
            self.since = now
            return Transition("down", self._cause(error))
        return None

    # -- scheduling ---------------------------------------------------------------

    def next_check_in(self, rng: random.Random) -> float:
        """Seconds until the next active check: the interval, or backoff while down."""
        if self.up or self.level > 0 or self.down_checks <= 1:
            return self.interval
        return self.recheck.delay(self.down_checks - 1, rng)

    @property
    def checks_enabled(self) -> bool:
        return self.admin != "maint"

    # -- operator -------------------------------------------------------------------

    def set_admin(self, state: AdminState) -> Transition | None:
        if state not in ADMIN_STATES:
            raise ValueError(f"unknown admin state {state!r}")
        if state == self.admin:
            return None
        previous, self.admin = self.admin, state
        return Transition(state, f"operator: {previous} -> {state}")


def check_at(now: float, delay: float, interval: float, rng: random.Random) -> float:
    """When a check asked for `delay` seconds after `now` runs (delay <= 0: now).

    Never earlier than now + delay, and less than min(SPREAD x interval, SPREAD_MAX) later:
    the time is rounded up to a grid of slots of half that bound, so that checks due close
    together start in the same turn of the loop (a wake-up after a sleep costs more than a
    check), then a random half of them go one slot later still. Without that draw a check's
    period would be fixed to the grid (it starts on a slot and asks for the interval from
    there) and could phase-lock with a backend flapping at a like period: its checks would
    all land in the same phase of the flap and see a steady backend. With it the period
    moves by a slot at random, as HAProxy's spread-checks does, and the phase drifts.
    """
    due = now + delay
    slot = min(interval * SPREAD, SPREAD_MAX) / 2
    if delay <= 0 or slot <= 0:
        return now if delay <= 0 else due
    at = math.ceil(due / slot) * slot
    if at < due:  # (rounding of the float division)
        at += slot
    if rng.random() < 0.5:
        at += slot
    return at
