"""One relay process: the reactor, its listeners and sessions, signals and shutdown."""

from __future__ import annotations

import random
import signal
from typing import TYPE_CHECKING

from relay.config.model import Config
from relay.core.health import ADMIN_STATES
from relay.logs import log
from relay.net.backends import Backend, BackendGroup
from relay.net.buffers import BufferPool
from relay.net.listener import Listener
from relay.net.reactor import Reactor
from relay.net.resolve import SockAddr, resolve
from relay.net.splice import PipePool, splice_supported

if TYPE_CHECKING:
    from relay.net.session import Session


class UnknownName(LookupError):
    pass


class RelayServer:
    def __init__(self, config: Config, resolved: dict[str, SockAddr] | None = None) -> None:
        """resolved maps str(Address) to its socket address; missing ones are resolved here."""
        self.config = config
        self.reactor = Reactor()
        self.max_connections = config.runtime.max_connections
        self.use_splice = config.runtime.splice == "auto" and splice_supported()
        self.pipes = PipePool(max_total=2 * self.max_connections + 64)
        self.buffers = BufferPool()
        self.sessions: set[Session] = set()
        self.active = 0
        self.stopping = False
        resolved = dict(resolved or {})

        def lookup(address: object, passive: bool) -> SockAddr:
            key = str(address)
            if key not in resolved:
                resolved[key] = resolve(address, passive=passive)  # type: ignore[arg-type]
            return resolved[key]

        self.rng = random.Random()  # seeded from the OS: jitter must differ between relays
        self.listeners = [
            Listener(self, lc, lookup(lc.listen, True), BackendGroup(
                self.reactor, lc, [Backend(bc, lookup(bc.address, False), lc) for bc in lc.backends],
                self.rng))
            for lc in config.listeners
        ]
        self.by_name = {listener.name: listener for listener in self.listeners}

    def open(self) -> None:
        """Bind every listener; on failure close the ones already open and re-raise."""
        try:
            for listener in self.listeners:
                listener.open()
        except OSError:
            for listener in self.listeners:
                listener.close()
            raise

    def start(self) -> None:
        """Start health checks; after open(), before the loop turns."""
        for listener in self.listeners:
            listener.group.start_checks()
        log.info("relay_started", listeners=len(self.listeners),
                 splice="on" if self.use_splice else "off")

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT and the drain that follows; then release everything."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.reactor.add_signal_handler(signum, self.handle_stop_signal)
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
        return {"listeners": [listener.group.status() for listener in self.listeners]}

    def _group(self, listener: str) -> BackendGroup:
        found = self.by_name.get(listener)
        if found is None:
            raise UnknownName(f"no listener {listener!r}")
        return found.group

    # -- shutdown -------------------------------------------------------------

    def handle_stop_signal(self, signum: int) -> None:
        if self.stopping:
            log.info("shutdown_now", signal=signal.Signals(signum).name, sessions=len(self.sessions))
            self._force_close()
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

    def _force_close(self) -> None:
        for session in list(self.sessions):
            session.close("shutdown")
        self.reactor.stop()

    def session_closed(self, session: Session) -> None:
        self.active -= 1
        self.sessions.discard(session)
        if self.stopping and not self.sessions:
            self.reactor.stop()

    def close(self) -> None:
        for listener in self.listeners:
            listener.group.stop_checks()
        for session in list(self.sessions):
            session.close("shutdown")
        for listener in self.listeners:
            listener.close()
        self.pipes.close()
        self.reactor.close()
        log.info("relay_stopped")
