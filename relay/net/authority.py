"""A listener following an authority (product.md section 9): the edge of relay.core.authority.

AuthorityWatch asks the sources (sentinels, or every backend's role URL), feeds their
answers to the pure core, and carries out what it decides on the listener's
BackendGroup: new sessions go to the confirmed primary only (replicas after it when
`replicas = "backup"`); a new generation resets the old primary's sessions at once
(fencing, whatever close_on_down says); with no primary new sessions are refused.
The group asks `choose`; local health never moves sessions back to a node the
authority does not name.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from relay.config.authority import parse_role_url
from relay.config.model import Address, AuthorityConfig, BackendConfig
from relay.config.values import parse_address
from relay.core.authority import Authority, Change, Report, RoleReport, vote
from relay.core.candidates import next_attempt
from relay.logs import log
from relay.net.backends import Backend, BackendGroup, GroupAuthority
from relay.net.exchange import Exchange
from relay.net.resolve import ResolveError, SockAddr
from relay.net.sentinel import RoleProbe, SentinelSource

if TYPE_CHECKING:
    from relay.net.timers import Timer

MAX_AGE_INTERVALS = 3  # a source silent for this many intervals no longer votes
MAX_STATUS_LINE = 4096


class AuthorityWatch:
    def __init__(self, group: BackendGroup, previous: AuthorityWatch | None = None) -> None:
        config = group.config.authority
        assert config is not None
        self.group = group
        self.reactor = group.reactor
        self.config: AuthorityConfig = config
        self.state: Authority = (previous.state if previous is not None
                                 else Authority(config.stale_after))
        self.state.stale_after = config.stale_after
        self.fenced: int = previous.fenced if previous is not None else 0
        self.refused: int = previous.refused if previous is not None else 0
        self.reports: dict[str, Report] = {}
        self.roles: dict[str, RoleReport] = {}
        self.deadline: Timer | None = None
        self.stopped = False
        # the backends the authority can name: address text (Sentinel) or backend name (http)
        self.discovered: dict[str, Backend] = dict(previous.discovered) if previous else {}
        self.by_key: dict[str, Backend] = {}
        password = _read_password(config.password_file)
        max_role = max(config.interval, 0.5)
        self.sentinels = [
            SentinelSource(self.reactor, group.resolver, address, config.master_name, password,
                           config.interval, self._report, self._switch_seen)
            for address in config.sentinels]
        self.role_probe = RoleProbe(self.reactor, group.resolver, password, max_role, self._role)
        self.http = [HttpRoleSource(self, b) for b in group.backends if b.config.role_url]
        self.sources = tuple(s.name for s in self.sentinels) + tuple(s.name for s in self.http)
        self._index_backends()

    # -- life ---------------------------------------------------------------------

    def start(self) -> None:
        for source in self.sentinels:
            source.start()
        for http in self.http:
            http.ask()
        self._evaluate()

    def stop(self) -> None:
        self.stopped = True
        for source in self.sentinels:
            source.stop()
        for http in self.http:
            http.stop()
        self.role_probe.stop()
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _index_backends(self) -> None:
        """After a start or a reload: which group backend each key stands for."""
        group = self.group
        rejoined = False
        for backend in self.discovered.values():  # a reload rebuilt the list from the file
            if group.by_name.get(backend.name) is None:
                group.add_backend(backend, refresh=False)  # (one refresh for all: a replica
                rejoined = True  # back before its primary would look like a failover)
        if rejoined:
            group.refresh_tiers()
        if self.config.kind == "http":
            self.by_key = {b.name: b for b in group.backends if b.config.role_url}
        else:
            self.by_key = {str(b.config.address): b for b in group.backends}

    # -- what the sources say ------------------------------------------------------------

    def _report(self, source: str, report: Report) -> None:
        if self.stopped:
            return
        self.reports[source] = report
        if self.config.kind == "redis_sentinel" and report.primary is not None:
            for address in (report.primary, *report.replicas):
                self._ensure_backend(address)
        self._evaluate()

    def _role(self, address: str, role: RoleReport) -> None:
        if not self.stopped:
            self.roles[address] = role
            self._evaluate()

    def _switch_seen(self) -> None:
        for source in self.sentinels:  # one sentinel's word is no majority: ask them all now
            source.ask_now()

    def _evaluate(self) -> None:
        if self.stopped:
            return
        now = self.reactor.now
        verdict = vote(self.config.kind, self.sources, self.reports, self.roles, now,
                       MAX_AGE_INTERVALS * self.config.interval)
        candidate = verdict.candidate
        if candidate is not None:
            role = self.roles.get(candidate)
            if role is None or now - role.at >= self.config.interval:
                address = _address(candidate)
                if address is not None:  # (the sources are untrusted)
                    self.role_probe.ask(candidate, address)
        change = self.state.update(now, verdict)
        if change is not None:
            self._apply(change)
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        due = self.state.next_deadline()
        if due is not None:
            self.deadline = self.reactor.call_at(due, self._evaluate)

    def _apply(self, change: Change) -> None:
        level = "info" if change.state == "confirmed" else "warning"
        log.emit(level, "authority_change", {
            "listener": self.group.listener_name, "state": change.state,
            "primary": change.primary, "generation": change.generation,
            "reason": change.reason})
        if change.fence is not None:
            old = self.by_key.get(change.fence)
            if old is not None and old.sessions:
                count = len(old.sessions)
                self.fenced += count
                log.warning("authority_fenced", listener=self.group.listener_name,
                            backend=old.name, sessions=count, generation=change.generation)
                self.group._close_sessions(old, "fenced")

    def _ensure_backend(self, address: str) -> None:
        """Sentinel named an address no backend has: it becomes one (health from `initial`)."""
        if address in self.by_key or address in self.discovered:
            return
        parsed, resolver = _address(address), self.group.resolver
        if parsed is None or resolver is None:
            return
        config = BackendConfig(name=address, address=parsed)

        def answered(outcome: SockAddr | ResolveError) -> None:
            if self.stopped or address in self.by_key or isinstance(outcome, ResolveError):
                return
            backend = Backend(config, outcome, self.group.config)
            self.discovered[address] = backend
            self._index_backends()
            log.info("authority_backend", listener=self.group.listener_name,
                     backend=backend.name)

        resolver.lookup(config.address, answered)

    # -- what the group asks -------------------------------------------------------------

    @property
    def refusing(self) -> bool:
        return self.by_key.get(self.state.serving or "") is None

    def choose(self, group: BackendGroup, tried: list[Backend],
               untried_only: bool) -> Backend | None:
        """The primary first; replicas after it only with replicas = "backup"; nothing
        while the authority names no primary."""
        primary = self.by_key.get(self.state.serving or "")
        if primary is None:
            if not tried:
                self.refused += 1
            return None
        order: list[Backend] = []
        if primary.health.admin == "ready":
            order.append(primary)
        if self.config.replicas == "backup":
            replicas = self.state.replicas if self.config.kind == "redis_sentinel" else \
                tuple(k for k in self.by_key if k != self.state.serving)
            for key in replicas:
                b = self.by_key.get(key)
                if b is not None and b is not primary and b.health.available:
                    order.append(b)
        index = {id(b): i for i, b in enumerate(order)}
        position = next_attempt(range(len(order)),
                                [index[id(b)] for b in tried if id(b) in index], untried_only)
        return None if position is None else order[position]

    def status(self) -> dict[str, object]:
        sources: dict[str, object] = {}
        for name in self.sources:
            r = self.reports.get(name)
            sources[name] = None if r is None else {
                "reachable": r.reachable, "primary": r.primary, "replicas": list(r.replicas),
                "seconds_ago": round(self.reactor.now - r.at, 3)}
        return {"kind": self.config.kind, "state": self.state.state,
                "primary": self.state.serving, "generation": self.state.generation,
                "reason": self.state.reason, "fenced_sessions": self.fenced,
                "refused_sessions": self.refused, "sources": sources,
                "roles": {a: r.role for a, r in self.roles.items()}}

    def source_up(self) -> dict[str, int]:
        """Per source: 1 when its last answer is fresh."""
        now, max_age = self.reactor.now, MAX_AGE_INTERVALS * self.config.interval
        up: Counter[str] = Counter()
        for name in self.sources:
            r = self.reports.get(name)
            up[name] = int(r is not None and r.reachable and now - r.at <= max_age)
        return dict(up)


def follow_authority(group: BackendGroup, previous: GroupAuthority | None) -> AuthorityWatch:
    """The group's authority (BackendGroup.follow_authority): a reload's new watch takes the
    previous one's generation and what it discovered."""
    return AuthorityWatch(group, previous if isinstance(previous, AuthorityWatch) else None)


class HttpRoleSource:
    """kind = "http": GET the backend's role_url every interval; 200 = it is the primary."""

    def __init__(self, watch: AuthorityWatch, backend: Backend) -> None:
        self.watch = watch
        self.backend = backend
        self.name = backend.name
        assert backend.config.role_url is not None
        self.address, path = parse_role_url(backend.config.role_url)
        self.request = (f"GET {path} HTTP/1.0\r\nHost: {self.address}\r\n"
                        "User-Agent: relay-authority\r\nConnection: close\r\n\r\n").encode()
        self.exchange: Exchange[int] | None = None
        self.timer: Timer | None = None
        self.stopped = False

    def ask(self) -> None:
        watch = self.watch
        self.timer = watch.reactor.call_later(watch.config.interval, self.ask)
        if self.stopped or self.exchange is not None or watch.group.resolver is None:
            return
        watch.group.resolver.lookup(self.address, self._located)

    def _located(self, target: SockAddr | ResolveError) -> None:
        watch = self.watch
        if self.stopped or self.exchange is not None:
            return
        if isinstance(target, ResolveError):
            watch._report(self.name, Report(watch.reactor.now, False))
            return

        def reply(status: int) -> bool:
            self.exchange = None
            primary = self.name if status == 200 else None
            watch._report(self.name, Report(watch.reactor.now, True, primary))
            return False

        def ended(error: str) -> None:
            self.exchange = None
            watch._report(self.name, Report(watch.reactor.now, False))

        self.exchange = Exchange(watch.reactor, target, self.request, _status_line, reply, ended,
                                 timeout=max(watch.config.interval, 0.5),
                                 limit=MAX_STATUS_LINE)

    def stop(self) -> None:
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
        if self.exchange is not None:
            self.exchange.close()
            self.exchange = None


def _status_line(buf: bytes) -> tuple[int, int] | None:
    end = buf.find(b"\r\n")
    if end < 0:
        if len(buf) >= MAX_STATUS_LINE:
            raise ValueError("no status line")
        return None
    parts = buf[:end].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError("not an HTTP reply")
    return int(parts[1]), len(buf)


def _address(text: str) -> Address | None:
    """An address a source named ("host:port", "[v6]:port"), read as the configuration reads
    one; None if it is not one."""
    try:
        return parse_address(text, allow_port_zero=False)
    except ValueError:
        return None


def _read_password(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read(4096).strip() or None
    except OSError as exc:
        log.error("authority_password_unreadable", path=path, error=str(exc))
        return None


__all__ = ["AuthorityWatch"]
