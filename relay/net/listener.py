"""A listening socket: accepts clients (bounded per wake-up), enforces connection limits
and opens a Session for each client, whose Dial (relay/net/dialer.py) connects it."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from relay.config.model import ListenerConfig
from relay.logs import log
from relay.net import sysio
from relay.net.accept import RESOURCE_ERRORS, AcceptPause
from relay.net.backends import BackendGroup
from relay.net.buffers import BufferPool
from relay.net.connect import start_connect
from relay.net.counts import (
    ACCEPTED,
    DOWN,
    DURATION_BUCKETS,
    HEDGE_OUTCOMES,
    LISTENER_FIELDS,
    REJECT_REASONS,
    UP,
    Counts,
    HistogramCounts,
    Tally,
    add,
    new_counts,
)
from relay.net.counts import L as FIELDS
from relay.net.dialer import Dial
from relay.net.edge import Edge, HeaderReader, log_rejections, reset_and_close
from relay.net.idle import IdleSlots
from relay.net.reactor import EPOLLIN, Reactor
from relay.net.resolve import SockAddr, listening_socket
from relay.net.session import Origin, Session, SessionHost
from relay.net.share import SHARE_REST, AcceptShare
from relay.net.splice import PipePool
from relay.net.sysio import Sock

ACCEPT_BATCH: Final = 64  # clients accepted per wake-up before other work gets a turn
_accept: Final = sysio.accept
_fileno: Final = sysio.fileno  # (a method call by name on the C socket costs more)


def _somaxconn() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(128, int(f.read()))
    except (OSError, ValueError):
        return 4096


class Census:
    """The sessions of the whole process, which every listener admits against and reports
    its closed sessions to. Its own compiled object, so that the per-session bookkeeping runs
    natively: kept on the (interpreted) server it cost attribute reads through a protocol
    and a Python call per session (bench/NOTES.md)."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections  # [runtime] max_connections (a reload sets it)
        self.clients = 0  # admitted clients of all listeners
        self.sessions: set[Session] = set()
        self.on_empty: Callable[[], None] | None = None  # while stopping: the last one closed

    def closed(self, session: Session) -> None:
        self.clients -= 1
        sessions = self.sessions
        sessions.discard(session)
        if not sessions and self.on_empty is not None:
            self.on_empty()


class Host(Protocol):
    """The process a listener serves in (relay.net.server.RelayServer): its loop, the pools
    its listeners share and the census of its sessions."""

    reactor: Reactor
    pipes: PipePool
    buffers: BufferPool
    idle: IdleSlots
    use_splice: bool
    census: Census

    @property
    def listeners(self) -> Sequence[Listener]: ...


class Listener(SessionHost):
    def __init__(self, server: Host, config: ListenerConfig, address: SockAddr,
                 group: BackendGroup) -> None:
        self.server = server
        self.census = server.census
        self.reactor = server.reactor
        self.config = config
        self.name = config.name
        self.address = address
        self.group = group
        self.pipes = server.pipes
        self.buffers = server.buffers
        self.idle = server.idle
        self.use_splice = server.use_splice
        self.sock: socket.socket | None = None
        self._fd = -1  # the listening socket's number
        self.bound = ""
        self.accepting = False
        self.clients = 0
        self.counts: Counts = new_counts(LISTENER_FIELDS)  # see relay.net.counts
        self.rejected = Tally(self, "rejected", REJECT_REASONS, FIELDS)
        self.edge = Edge(config)
        self.plain = self.edge.plain  # (read per client: natively here, not from the Edge)
        self.durations = HistogramCounts(self, "duration", DURATION_BUCKETS, FIELDS)
        group.hedge_outcomes = Tally(self, "hedges", HEDGE_OUTCOMES, FIELDS)
        self.pause = AcceptPause(self.reactor, self.name, lambda: self.sock)
        self.share: AcceptShare | None = None  # a worker's turn-taking (relay.net.share)

    @property
    def accepted(self) -> int:
        return self.counts[ACCEPTED]

    # -- the listening socket -------------------------------------------------

    def open(self, accept: bool = True) -> None:
        """Bind and listen; OSError (e.g. address in use) goes to the caller. With accept
        False the socket is only held (a supervisor's, for its workers to accept on)."""
        self.adopt(*self.bind(self.address), self.address, accept)

    @staticmethod
    def bind(address: SockAddr) -> tuple[socket.socket, str]:
        sock, bound = listening_socket(address, _somaxconn())
        try:  # accepted sockets inherit TCP_NODELAY from the listening one: none per client
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        return sock, bound

    def adopt(self, sock: socket.socket, bound: str, address: SockAddr, accept: bool = True) -> None:
        """Accept on `sock` from now on (a reload may move the listener); the old socket closes."""
        self.close()
        self.sock, self.bound, self.address = sock, bound, address
        self._fd = sock.fileno()
        self.pause.paused = False
        self.accepting = accept
        if accept:
            self.reactor.register(sock.fileno(), EPOLLIN, self)
        log.info("listener_open", listener=self.name, address=self.bound)

    def reconfigure(self, config: ListenerConfig) -> None:
        """New settings for new sessions; open sessions keep the ones they started with."""
        self.config = config
        self.edge = Edge(config, self.edge)
        self.plain = self.edge.plain
        self.use_splice = self.server.use_splice

    def close(self) -> None:
        """Stop accepting: the socket is closed so a load balancer in front sees it at once."""
        if self.sock is not None:
            if self.accepting:
                self.reactor.unregister(self.sock.fileno())
            self.sock.close()
            self.sock = None
            self._fd = -1

    def on_event(self, fd: int, events: int) -> None:
        self._accept(self.share)

    def _accept_queued(self) -> None:
        """After a rest: if the others took nobody meanwhile, whatever is queued is ours."""
        share = self.share
        self._accept(share if share is not None and share.moved() else None)

    def _accept(self, share: AcceptShare | None) -> None:
        sock = self.sock
        if sock is None or self.pause.paused:
            return
        sessions = self.census.sessions
        for _turn in range(ACCEPT_BATCH):  # (a named int: "_" is boxed per round, compiled)
            if share is not None and share.ahead(len(sessions)):
                self.pause.rest(SHARE_REST, self._accept_queued)
                return
            try:
                got = _accept(sock, self._fd)
            except OSError as exc:
                if exc.errno in RESOURCE_ERRORS:
                    self.rejected["accept_error"] += 1
                    self.pause.pause(exc)
                    return
                continue  # ECONNABORTED, EPROTO...: that client is gone, the next may not be
            if got is None:
                return  # no one else waiting
            client, host, port = got  # (non-blocking already)
            self.pause.logged = False
            self._admit(client, _fileno(client), (host, port))

    def on_crash(self, exc: BaseException) -> None:
        pass  # the accept loop keeps no per-client state to clean

    def _admit(self, client: Sock, fd: int, addr: tuple[str, int]) -> None:
        add(self.counts, ACCEPTED, 1)
        census = self.census
        if self.clients >= self.config.max_connections or census.clients >= census.max_connections:
            self.rejected["max_connections"] += 1
            client.close()
            return
        origin = None
        if not self.plain:
            if self.edge.wants_header(addr[0]):  # counted as active while its header is awaited
                self.clients += 1
                census.clients += 1
                HeaderReader(self, client, addr)
                return
            origin = self._admitted(client, addr, None)
            if origin is None:
                return
        self.clients += 1
        census.clients += 1
        self._open(client, fd, addr, origin)

    def _open(self, client: Sock, fd: int, addr: tuple[str, int],
              origin: Origin | None) -> None:
        session = Session(self, client, fd, addr, origin)
        self.census.sessions.add(session)
        if log.debug_enabled:
            log.debug("session_open", listener=self.name, client=session.client_addr)
        Dial(self, session).start()

    def _admitted(self, client: Sock, source: tuple[str, int],
                  destination: tuple[str, int] | None) -> Origin | None:
        """allow/deny and the per-source limit, for the client's own address or the one a
        trusted PROXY header gave; None (the client reset and counted) when refused."""
        reason = self.edge.refuses(source[0])
        if reason is not None:
            self._reject(client, reason, f"{source[0]}: {reason}")
            return None
        return Origin(source, destination, bool(self.edge.limit.maximum))

    def _reject(self, client: Sock, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        log_rejections(self.name, self.edge, self.reactor.now, reason, detail)
        reset_and_close(client)

    def header_read(self, client: Sock, source: tuple[str, int],
                    destination: tuple[str, int] | None) -> None:
        """A trusted client's PROXY header is in: from here on it is the client it names."""
        origin = self._admitted(client, source, destination)
        if origin is None:
            self.clients -= 1
            self.census.clients -= 1
            return
        self._open(client, client.fileno(), source, origin)

    def header_failed(self, client: Sock, addr: tuple[str, int], reason: str) -> None:
        self.clients -= 1
        self.census.clients -= 1
        self._reject(client, "proxy_header", f"{addr[0]}: {reason}")

    def start_connect(self, target: SockAddr) -> tuple[Sock, int]:
        """A backend connect for a dial (relay.net.dialer.Dial)."""
        return start_connect(target)

    def out_of_fds(self, exc: OSError) -> None:
        """A session could not get a socket: every listener rests, as on EMFILE at accept."""
        for listener in self.server.listeners:
            if listener.sock is not None and not listener.pause.paused:
                listener.pause.pause(exc)

    # -- session callbacks --------------------------------------------------------

    def session_closed(self, session: Session, was_relaying: bool) -> None:
        self.clients -= 1
        origin = session.origin
        if origin is not None and origin.counted:
            self.edge.limit.release(origin.source[0])
        self.census.closed(session)
        backend = session.backend
        up = session.up.bytes if session.up else 0
        down = session.down.bytes if session.down else 0
        duration = self.reactor.now - session.opened
        if was_relaying and backend is not None:
            backend.sessions.discard(session)
            self.durations.observe(self.counts, duration)
            add(backend.counts, UP, up)  # (backend.bytes_up += up, without two property calls)
            add(backend.counts, DOWN, down)
        if session.cause == "no_backend":
            self.rejected["no_backend"] += 1
        elif session.cause == "local_error":
            self.rejected["accept_error"] += 1
        if self.config.access_log or log.debug_enabled:
            fields = dict(listener=self.name, client=session.client_addr,
                          backend=backend.name if backend else "-", bytes_up=up,
                          bytes_down=down, hedged=session.hedged,
                          duration=round(duration, 6),
                          cause=session.cause)
            if self.config.access_log:
                log.info("access", **fields)
            else:
                log.debug("session_close", **fields)
