"""One relay process: the reactor, its listeners and sessions, signals and shutdown."""

from __future__ import annotations

import gc
import os
import random
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from relay import __version__
from relay.config import load_config
from relay.config.model import BackendConfig, Config, ListenerConfig
from relay.core.events import EventRing, History
from relay.core.health import ADMIN_STATES
from relay.errors import ConfigError, ConfigProblem, UnknownName
from relay.logs import log
from relay.metrics import Metrics
from relay.net.admin import AdminServer
from relay.net.authority import follow_authority
from relay.net.backends import Backend, BackendGroup, FollowerGroup
from relay.net.buffers import BufferPool
from relay.net.counts import DOWN, UP
from relay.net.discovery import expand as expand_discovered
from relay.net.idle import IdleSlots
from relay.net.listener import Census, Listener
from relay.net.reactor import Clock, Reactor
from relay.net.resolve import SockAddr, resolve
from relay.net.resolver import Key, Outcome, Resolver
from relay.net.share import AcceptShare
from relay.net.sliced import SlicedJob
from relay.net.splice import PipePool, splice_supported
from relay.runconfig import RunConfig, read_token, resolved_or_error, wanted_addresses

if TYPE_CHECKING:
    from relay.net.session import Session


class RelayServer:
    """One process that does everything: accepts and relays, checks health, serves admin.
    Its two relatives with workers: ControlServer (the supervisor's) and WorkerServer."""

    HEARTBEAT = 1.0  # seconds between heartbeats of the loop
    # heartbeats between metrics flushes: every scrape flushes first anyway; this one keeps
    # the series current between scrapes at a small cost (a flush of 4,000 backends is
    # ~0.3 s of CPU: once a second that was most of an idle relay's CPU)
    FLUSH_EVERY = 30
    HEARTBEAT_STALE = 3.0  # /healthz fails when the last heartbeat is older than this
    STALL_MEMORY = 5.0  # ... and for this long after the loop was stuck that long

    accepts = True  # its listeners accept clients (ControlServer's only hold the sockets)
    group_type: type[BackendGroup] = BackendGroup  # who decides health: its own checks

    def __init__(self, config: Config, resolved: dict[str, SockAddr] | None = None,
                 admin_token: str | None = None, admin: bool = True,
                 inherited: dict[str, socket.socket] | None = None,
                 clock: Clock = time.monotonic) -> None:
        """resolved maps str(Address) to its socket address; missing ones are resolved here.
        admin_token: the bearer token POST actions need (read from admin.token_file).
        inherited: listening sockets by listener name, adopted instead of bound.
        clock: the loop's time (tests pass tests/support/fakeclock.py's)."""
        self.config = config
        self.inherited = inherited or {}
        self.on_beat: Callable[[], None] | None = None
        self.extra_status: Callable[[], dict[str, object]] | None = None
        self.extra_problems: Callable[[], list[str]] | None = None  # /readyz (workers)
        self.remote_sessions = 0  # with workers: the sessions they hold (supervisor's view)
        self.reactor = Reactor(clock)
        self.started = time.time()
        self.metrics = Metrics()
        self.reloads: Counter[str] = Counter()
        self.events = EventRing()  # the status page's recent events (kept by the deciding role)
        self.history = History()  # ... and its per-second sessions and bytes
        self.heartbeat = self.reactor.now
        self._beats = 0
        self.last_stall: tuple[float, float] | None = None  # (when it ended, how long)
        self._flushing: SlicedJob[None] | None = None
        self._series_frozen = False
        self.pipes = PipePool()
        self.buffers = BufferPool()
        self.idle = IdleSlots(self.reactor)
        self.resolver = Resolver(self.reactor)  # names are never looked up on the loop
        self._reload_dones: list[Callable[[bool], None] | None] | None = None  # one in progress
        self._reload_next: list[Callable[[bool], None] | None] | None = None  # asked meanwhile
        self.census = Census(config.runtime.max_connections)  # the sessions, all listeners'
        self._take_runtime(config)
        self._stopping = False
        resolved = dict(resolved or {})

        def lookup(address: object, passive: bool) -> SockAddr:
            key = str(address)
            if key not in resolved:
                resolved[key] = resolve(address, passive=passive)  # type: ignore[arg-type]
            return resolved[key]

        self.rng = random.Random()  # seeded from the OS: jitter must differ between relays
        self.listeners = [
            self._new_listener(lc, lookup(lc.listen, True),
                               [(bc, lookup(bc.address, False)) for bc in lc.backends])
            for lc in config.listeners
        ]
        self.by_name = {listener.name: listener for listener in self.listeners}
        self.admin = (AdminServer(self, lookup(config.admin.listen, True), admin_token)
                      if admin else None)

    def _take_runtime(self, config: Config) -> None:
        """The [runtime] settings that apply to new sessions (at start and on reload)."""
        self.census.max_connections = config.runtime.max_connections
        self.pipes.max_total = 2 * self.census.max_connections + 64
        self.use_splice = config.runtime.splice == "auto" and splice_supported()
        self.metrics.backend_histograms = config.runtime.backend_histograms

    def _new_listener(self, lc: ListenerConfig, address: SockAddr,
                      backends: list[tuple[BackendConfig, SockAddr]]) -> Listener:
        group = self.group_type(self.reactor, lc,
                                [Backend(bc, target, lc) for bc, target in backends],
                                self.rng, resolver=self.resolver, discover=expand_discovered)
        group.note = self.note
        group.follow_authority = follow_authority  # issue 15: [listener.authority]
        return Listener(self, lc, address, group)

    def open(self) -> None:
        """Bind every listener and the admin server; on failure close what was opened and
        re-raise (the caller names the address from `failed_address`)."""
        try:
            for i, listener in enumerate(self.listeners):
                self.failed_address = (f"listener[{i}].listen", listener.address.text)
                inherited = self.inherited.get(listener.name)
                if inherited is not None:
                    host, port = inherited.getsockname()[:2]
                    listener.adopt(inherited, f"{host}:{port}", listener.address)
                else:
                    listener.open(accept=self.accepts)
            if self.admin is not None:
                self.failed_address = ("admin.listen", self.admin.address.text)
                self.admin.open()
        except OSError:
            for listener in self.listeners:
                listener.close()
            raise
        self.failed_address = ("", "")

    def start(self) -> None:
        """Start health checks; after open(), before the loop turns."""
        # What exists now lives as long as the process: keep the collector off it, and let
        # it run less often (sessions free themselves by reference counting).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20000, 20, 20)
        for listener in self.listeners:
            listener.group.start_checks()
        self.reactor.call_later(self.HEARTBEAT, self._beat)
        log.info("relay_started", listeners=len(self.listeners),
                 splice="on" if self.use_splice else "off")
        self.note("started", cause=f"{len(self.listeners)} listener(s)")

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT and the drain that follows; then release everything."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.reactor.add_signal_handler(signum, self.handle_stop_signal)
        self.reactor.add_signal_handler(signal.SIGHUP, self.handle_reload_signal)
        self.start()
        try:
            self.reactor.run()
        finally:
            self.close()

    # -- operator actions (the Python API behind the admin HTTP endpoints) ----------

    def set_backend_state(self, listener: str, backend: str, state: str) -> str:
        """Set a backend's admin state (ready, drain, maint); returns the new state.
        Raises UnknownName for an unknown listener or backend, ValueError for a bad state."""
        group = self._group(listener)
        if backend not in group.by_name:
            raise UnknownName(f"no backend {backend!r} in listener {listener!r}")
        if state not in ADMIN_STATES:
            raise ValueError(f"state must be one of {', '.join(ADMIN_STATES)}, got {state!r}")
        return group.set_admin_state(backend, state)

    def failback(self, listener: str) -> int:
        """Manual failback: new sessions of `listener` go to tier 0 now; returns the serving
        tier. Raises UnknownName, or FailbackRefused when tier 0 has no backend up and ready."""
        return self._group(listener).failback()

    def status(self) -> dict[str, object]:
        """What /status shows: listeners, serving tier, backends and their health."""
        now = self.reactor.now
        return {
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started, 3),
            "sessions": len(self.sessions) + self.remote_sessions,
            "stopping": self.stopping,
            "pid": os.getpid(),
            **(self.extra_status() if self.extra_status is not None else {}),
            "listeners": [{"listen": listener.bound or listener.address.text,
                           "accepting": listener.sock is not None,
                           **listener.group.status(now)} for listener in self.listeners],
            "events": self.events.recent(),
        }

    def note(self, kind: str, **fields: object) -> None:
        """An event for the status page's ring (backend up/down, tier change, operator
        action, reload); a worker keeps none: its supervisor decides and shows them."""
        self.events.add(time.time(), kind, **fields)

    def _sample(self, now: float) -> None:
        """One second of the status page's sparklines: sessions open, bytes relayed."""
        total = 0
        for listener in self.listeners:
            for backend in listener.group.backends:  # 4,000 of them: no call for idle ones
                if backend.sessions:
                    up, down = backend.bytes_total()
                    total += up + down
                else:
                    counts = backend.counts
                    total += counts[UP] + counts[DOWN]
        self.history.add(now, len(self.sessions) + self.remote_sessions, total)

    def stalled(self) -> str:
        """Why /healthz fails: the loop is not turning, or was stuck a moment ago; else ''."""
        now = self.reactor.now
        quiet = now - self.heartbeat
        if quiet > self.HEARTBEAT + self.HEARTBEAT_STALE:
            return f"reactor stalled: its last heartbeat was {quiet:.1f}s ago"
        if self.last_stall is not None and now - self.last_stall[0] < self.STALL_MEMORY:
            ended, length = self.last_stall
            return f"reactor stalled for {length:.1f}s, {now - ended:.1f}s ago"
        return ""

    def not_ready(self) -> list[str]:
        """Why /readyz says 503: shutting down, or a listener with no backend up and ready."""
        problems = ["shutting down"] if self.stopping else []
        for listener in self.listeners:
            if not any(b.health.up and b.health.admin == "ready" for b in listener.group.backends):
                problems.append(f"listener {listener.name}: no backend up")
        if self.extra_problems is not None:
            problems += self.extra_problems()
        return problems

    def _beat(self) -> None:
        """The loop's heartbeat: proves to /healthz that it turns, and flushes the metrics."""
        now = self.reactor.now
        lag = now - self.heartbeat - self.HEARTBEAT
        if lag > self.HEARTBEAT_STALE:
            self.last_stall = (now, lag + self.HEARTBEAT)
            log.warning("reactor_stalled", seconds=round(lag + self.HEARTBEAT, 3))
        self.heartbeat = now
        self._beats += 1
        if self._beats % self.FLUSH_EVERY == 1 and (
                self._flushing is None or not self._flushing.running):  # in slices
            self._flushing = SlicedJob(self.reactor, self.metrics.flush_steps(self),
                                       self._flushed)
        if self.on_beat is not None:
            self.on_beat()
        self._sample(now)
        self.reactor.call_later(self.HEARTBEAT, self._beat)

    def _flushed(self, results: list[None], error: BaseException | None) -> None:
        if not self._series_frozen:
            # the series the first flush created live as long as the process: keep the
            # collector off them (with 1,000 backends a full collection took 20-40 ms)
            self._series_frozen = True
            gc.freeze()

    def _group(self, listener: str) -> BackendGroup:
        found = self.by_name.get(listener)
        if found is None:
            raise UnknownName(f"no listener {listener!r}")
        return found.group

    # -- reload ---------------------------------------------------------------------

    def handle_reload_signal(self, signum: int) -> None:
        self.reload(self.config.source)

    def reload(self, path: str, done: Callable[[bool], None] | None = None) -> None:
        """Apply the file at `path` in place, or keep everything as it is if it is invalid
        (or a name cannot be resolved in time, or a new address cannot be bound). Sessions
        in flight are never cut. The file is read now; its names are resolved off the loop
        and the reload is applied when they are in, then done(applied) runs (at once when
        every address is literal). A reload asked for meanwhile runs after this one."""
        if self.stopping:
            if done is not None:
                done(False)
            return
        if self._reload_dones is not None:  # one at a time: the file is read again after it
            if self._reload_next is None:
                self._reload_next = []
                log.info("reload_queued", source=path)
            if done is not None and done not in self._reload_next:  # a SIGHUP storm: one entry
                self._reload_next.append(done)
            return
        self.metrics.flush(self)  # a backend the reload removes has series to keep till it idles
        try:
            config = load_config(path)
            token = read_token(config)
        except ConfigError as exc:
            self._reload_finished(path, exc, [done])
            return
        self._reload_dones = [done]
        keys = [(address, passive) for _, address, passive in wanted_addresses(config)]
        self.resolver.lookup_all(keys, lambda outcomes: self._reload_resolved(
            path, config, token, outcomes))

    def _reload_resolved(self, path: str, config: Config, token: str | None,
                         outcomes: dict[Key, Outcome]) -> None:
        dones, self._reload_dones = self._reload_dones or [], None
        problem: ConfigError | None = None
        if self.stopping:
            problem = ConfigError(path, [ConfigProblem("", "shutting down")])
        else:
            try:
                self._apply(RunConfig(config, resolved_or_error(config, outcomes), token))
            except ConfigError as exc:
                problem = exc
        self._reload_finished(path, problem, dones)
        queued, self._reload_next = self._reload_next, None
        if queued is not None and not self.stopping:
            self.reload(path, lambda ok: _tell(queued, ok))
        elif queued is not None:
            _tell(queued, False)

    def _reload_finished(self, path: str, problem: ConfigError | None,
                         dones: list[Callable[[bool], None] | None]) -> None:
        if problem is None:
            self.reloads["success"] += 1
            log.info("reload", source=path, listeners=len(self.listeners))
            self.note("reload", cause="applied", listeners=len(self.listeners))
        else:
            for line in problem.lines():
                log.error("reload_rejected", problem=line)
            self.reloads["failure"] += 1
            self.note("reload", cause="rejected", problem=problem.lines()[0] if problem.lines() else "")
        _tell(dones, problem is None)

    def _apply(self, ready: RunConfig) -> None:
        new, resolved = ready.config, ready.resolved
        # First bind every address that is new, so a failure changes nothing.
        fresh: dict[str, tuple[socket.socket, str]] = {}
        admin_fresh: tuple[socket.socket, str] | None = None
        admin_address = resolved[str(new.admin.listen)]
        key = ""
        try:
            for i, lc in enumerate(new.listeners):
                key = f"listener[{i}].listen"
                current = self.by_name.get(lc.name)
                target = resolved[str(lc.listen)]
                same = current is not None and current.sock is not None and (
                    current.address == target or current.bound == target.text)
                if not same:
                    fresh[lc.name] = Listener.bind(target)
            if self.admin is not None and admin_address != self.admin.address:
                key = "admin.listen"
                admin_fresh = AdminServer.bind(admin_address)
        except OSError as exc:
            for sock, _ in fresh.values():
                sock.close()
            raise ConfigError(new.source, [ConfigProblem(key, f"cannot listen: {exc.strerror or exc}")]) \
                from None
        # Then change things.
        self.config = new
        self._take_runtime(new)
        log.configure(new.runtime.log_format, new.runtime.log_level)
        names = {lc.name for lc in new.listeners}
        for listener in self.listeners:
            if listener.name not in names:  # removed: stop accepting, let its sessions finish
                listener.close()
                listener.group.stop_checks()
                log.info("listener_removed", listener=listener.name, sessions=listener.clients)
        listeners = []
        for lc in new.listeners:
            backends = [(bc, resolved[str(bc.address)]) for bc in lc.backends]
            existing = self.by_name.get(lc.name)
            if existing is None:
                listener = self._new_listener(lc, resolved[str(lc.listen)], backends)
                listener.group.start_checks()
            else:
                listener = existing
                listener.reconfigure(lc)
                listener.group.reconfigure(lc, backends)
            if lc.name in fresh:
                listener.adopt(*fresh[lc.name], resolved[str(lc.listen)],
                               accept=self.accepts)
            listeners.append(listener)
        self.listeners = listeners
        self.by_name = {listener.name: listener for listener in listeners}
        if self.admin is not None:
            self.admin.set_token(ready.admin_token)
            if admin_fresh is not None:
                self.admin.close()
                self.admin = AdminServer(self, admin_address, ready.admin_token)
                self.admin.open(admin_fresh)

    # -- shutdown -------------------------------------------------------------

    def handle_stop_signal(self, signum: int) -> None:
        if self.stopping:
            log.info("shutdown_now", signal=signal.Signals(signum).name, sessions=len(self.sessions))
            self._force_close("second_signal")
            return
        self.begin_shutdown(signal.Signals(signum).name)

    def begin_shutdown(self, why: str) -> None:
        """Stop accepting at once; let sessions finish for shutdown_grace; then close the rest."""
        self.stopping = True
        for listener in self.listeners:
            listener.close()
            listener.group.stop_checks()
        grace = self.config.runtime.shutdown_grace
        log.info("shutdown", reason=why, sessions=len(self.sessions), grace=grace)
        if not self.sessions:
            self.reactor.stop()
            return
        self.reactor.call_later(grace, self._force_close)

    def _force_close(self, cause: str = "grace_expired") -> None:
        """Cut what is left: reset on both sides, so no peer takes a cut for a complete
        transfer."""
        for session in list(self.sessions):
            session.close(cause, reset=True)
        self.reactor.stop()

    @property
    def sessions(self) -> set[Session]:
        return self.census.sessions

    @property
    def stopping(self) -> bool:
        return self._stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        """While stopping, the loop stops when the last session closes."""
        self._stopping = value
        self.census.on_empty = self.reactor.stop if value else None

    def close(self) -> None:
        for listener in self.listeners:
            listener.group.stop_checks()
        for session in list(self.sessions):
            session.close("shutdown", reset=True)
        for listener in self.listeners:
            listener.close()
        if self.admin is not None:
            self.admin.close()
        self.pipes.close()
        self.idle.close()
        self.resolver.close()
        self.reactor.close()
        log.info("relay_stopped")


class ControlServer(RelayServer):
    """The supervisor's server with workers: it binds the listening sockets (for its
    workers to inherit) but accepts nothing; it checks health, decides for every worker
    and serves admin. Relaying is the workers' job."""

    accepts = False


class WorkerServer(RelayServer):
    """A worker's server: relays on listening sockets inherited from the supervisor,
    mirrors the supervisor's health decisions (FollowerGroup), serves no admin, and leaves
    reloading to its supervisor (which starts new workers)."""

    group_type = FollowerGroup

    def __init__(self, config: Config, resolved: dict[str, SockAddr],
                 inherited: dict[str, socket.socket]) -> None:
        super().__init__(config, resolved, admin=False, inherited=inherited)
        self.share: AcceptShare | None = None  # set by relay.worker

    def begin_shutdown(self, why: str) -> None:
        if self.share is not None:
            self.share.leave()  # the other workers take every new client from now on
        super().begin_shutdown(why)

    def handle_reload_signal(self, signum: int) -> None:
        pass  # the supervisor reloads by starting new workers on the new configuration

    def note(self, kind: str, **fields: object) -> None:
        pass  # the supervisor decides health and keeps the status page's events

    def _sample(self, now: float) -> None:
        pass  # ... and its sparklines


def _tell(dones: list[Callable[[bool], None] | None], applied: bool) -> None:
    for done in dones:
        if done is not None:
            done(applied)
