"""Which backend is the primary, as an authority decides it (product.md section 9). Pure.

Sources report what they see (a sentinel: the master address it names, or nothing
because it could not be reached; an HTTP role endpoint: 200, another status, or
unreachable). `vote` turns the fresh reports into a Verdict: a primary, or none with
the reason. `Authority` keeps what relay acts on across verdicts:

- a confirmed primary different from the last one is a new *generation* (the edge
  fences sessions on the old primary); with Sentinel the generation is the master's config
  epoch + 1, so relays started at different times report the same one;
- without a verdict (no majority, none or several claimed, ROLE not confirming) the
  last confirmed primary is kept for `stale_after`, then there is no primary and new
  sessions are refused rather than guessed;
- every change of state comes out once, with its reason, for the log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["redis_sentinel", "http"]
State = Literal["confirmed", "stale", "none"]


@dataclass(frozen=True)
class Report:
    """What one source said at `at`. `primary`: the address it names as primary (a
    sentinel), or its own address when it answered 200 (http); None: it named none (or
    answered another status). `reachable` False: no answer at all."""

    at: float
    reachable: bool
    primary: str | None = None
    replicas: tuple[str, ...] = ()  # sentinel: replicas it lists as healthy slaves
    epoch: int | None = None  # sentinel: the config epoch of the master it names


@dataclass(frozen=True)
class RoleReport:
    """ROLE asked of an address (redis_sentinel): "master", "slave", ..., or None if no answer."""

    at: float
    role: str | None


@dataclass(frozen=True)
class Verdict:
    primary: str | None
    reason: str
    replicas: tuple[str, ...] = ()
    candidate: str | None = None  # redis_sentinel: the majority's address, ROLE to be asked
    epoch: int | None = None  # redis_sentinel: the newest config epoch its namers report


def _fresh(report: Report | None, now: float, max_age: float) -> Report | None:
    if report is None or not report.reachable or now - report.at > max_age:
        return None
    return report


def vote(kind: Kind, sources: tuple[str, ...], reports: Mapping[str, Report],
         roles: Mapping[str, RoleReport], now: float, max_age: float) -> Verdict:
    """The primary the configured `sources` decide now. Reports older than `max_age`
    count as unreachable (a source that stopped answering must not keep its vote)."""
    fresh = {s: r for s in sources if (r := _fresh(reports.get(s), now, max_age)) is not None}
    if kind == "http":
        return _vote_http(sources, fresh)
    return _vote_sentinel(sources, fresh, roles, now, max_age)


def _vote_http(sources: tuple[str, ...], fresh: dict[str, Report]) -> Verdict:
    # The one backend answering 200 holds the leader lock (Patroni's DCS): it decides.
    leaders = sorted(r.primary for r in fresh.values() if r.primary is not None)
    if len(leaders) == 1:
        others = tuple(s for s in sources if fresh.get(s) is None or fresh[s].primary is None)
        return Verdict(leaders[0], f"{leaders[0]} answers 200", others)
    if not leaders:
        return Verdict(None, f"no role endpoint answers 200 ({len(fresh)}/{len(sources)} reachable)")
    return Verdict(None, f"several claim primary: {', '.join(leaders)}")


def _vote_sentinel(sources: tuple[str, ...], fresh: dict[str, Report],
                   roles: Mapping[str, RoleReport], now: float, max_age: float) -> Verdict:
    needed = len(sources) // 2 + 1
    named = Counter(r.primary for r in fresh.values() if r.primary is not None)
    if not named:
        return Verdict(None, f"no sentinel names a primary ({len(fresh)}/{len(sources)} reachable)")
    address, count = named.most_common(1)[0]
    if count < needed:
        said = ", ".join(f"{a}: {n}" for a, n in sorted(named.items()))
        return Verdict(None, f"no majority ({needed} of {len(sources)} needed): {said}; "
                             f"{len(sources) - len(fresh)} unreachable")
    replicas: set[str] = set()
    epochs: list[int] = []
    for r in fresh.values():
        if r.primary == address:
            replicas.update(r.replicas)
            if r.epoch is not None:
                epochs.append(r.epoch)
    replicas.discard(address)
    role = roles.get(address)
    if role is None or now - role.at > max_age:
        return Verdict(None, f"{address} named by {count}/{len(sources)}, ROLE not answered yet",
                       candidate=address)
    if role.role != "master":
        return Verdict(None, f"{address} named by {count}/{len(sources)} but ROLE says "
                             f"{role.role or 'nothing (unreachable)'}", candidate=address)
    return Verdict(address, f"{address} named by {count}/{len(sources)}, ROLE master",
                   tuple(sorted(replicas)), candidate=address,
                   epoch=max(epochs) if epochs else None)


@dataclass(frozen=True)
class Change:
    """A change of what relay acts on; logged once. `fence`: the primary whose sessions
    must be reset now (a new generation replaced it)."""

    state: State
    primary: str | None
    generation: int
    reason: str
    fence: str | None = None


@dataclass
class Authority:
    stale_after: float
    state: State = "none"
    primary: str | None = None  # the confirmed primary kept (while stale too)
    generation: int = 0
    reason: str = "no answer yet"
    replicas: tuple[str, ...] = ()
    stale_since: float | None = None
    _started: bool = field(default=False, repr=False)

    @property
    def serving(self) -> str | None:
        """The primary new sessions may go to; None: refuse them."""
        return None if self.state == "none" else self.primary

    def update(self, now: float, verdict: Verdict) -> Change | None:
        if verdict.primary is not None:
            return self._confirmed(verdict)
        if verdict.candidate is not None and verdict.candidate != self.primary \
                and self.state != "none":
            # A majority names another node, ROLE not yet confirming it: the kept primary is
            # no longer what the majority names, so nothing serves until ROLE answers.
            self.state, self.stale_since, self.reason = "none", None, verdict.reason
            return Change("none", None, self.generation, verdict.reason)
        if self.state == "confirmed":
            self.state, self.stale_since, self.reason = "stale", now, verdict.reason
            return Change("stale", self.primary, self.generation, verdict.reason)
        if self.state == "stale" and self.stale_since is not None \
                and now - self.stale_since >= self.stale_after:
            self.state, self.reason = "none", verdict.reason
            return Change("none", None, self.generation,
                          f"stale for {self.stale_after:g}s: {verdict.reason}")
        if self.state == "none" and not self._started:
            self._started = True  # the first "no primary" is worth a line too
            self.reason = verdict.reason
            return Change("none", None, self.generation, verdict.reason)
        self.reason = verdict.reason  # confirmed returned above: stale or none here
        return None

    def _confirmed(self, verdict: Verdict) -> Change | None:
        self._started = True
        old, old_state = self.primary, self.state
        self.replicas = verdict.replicas
        self.stale_since = None
        self.state, self.reason = "confirmed", verdict.reason
        # a generation is Sentinel's config epoch + 1 where it is known (the same on every relay
        # whenever it started: a fresh cluster's first primary is 1), else a count of changes
        floor = self.generation + 1 if verdict.primary != old else self.generation
        generation = floor if verdict.epoch is None else max(floor, verdict.epoch + 1)
        if verdict.primary != old:
            self.primary, self.generation = verdict.primary, generation
            return Change("confirmed", self.primary, self.generation, verdict.reason, fence=old)
        if old_state != "confirmed" or generation != self.generation:
            self.generation = generation  # (a newer epoch of the same primary: no fencing)
            return Change("confirmed", self.primary, self.generation, verdict.reason)
        return None

    def next_deadline(self) -> float | None:
        """When `update` must run again without news: the end of the stale grace."""
        if self.state == "stale" and self.stale_since is not None:
            return self.stale_since + self.stale_after
        return None


__all__ = ["Authority", "Change", "Kind", "Report", "RoleReport", "Verdict", "vote"]
