"""A non-blocking connect to a backend, and the one watcher of a pending connect.

Every connect relay makes for traffic (a session's, its hedge, a connect that lost the race)
is watched by a PendingConnect until it completes or times out. Completion is judged by
SO_ERROR, always: an EPOLLOUT alone does not prove a connect succeeded (a stale event for a
reused fd number, or an error the kernel reports with the writable edge).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from relay.net import sysio
from relay.net.reactor import (
    EPOLLERR,
    EPOLLET,
    EPOLLHUP,
    EPOLLIN,
    EPOLLOUT,
    EPOLLRDHUP,
    EventHandler,
    Handler,
    Reactor,
)
from relay.net.resolve import SockAddr
from relay.net.sysio import Sock

if TYPE_CHECKING:
    from relay.net.timers import Timer

# The mask a relaying session's sockets keep for life (relay/net/session.py): registered with
# it from the start, a connected socket moves to its session without an epoll_ctl.
SESSION_MASK: Final = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET
_COMPLETED: Final = EPOLLOUT | EPOLLHUP | EPOLLERR
_BROKEN: Final = EPOLLHUP | EPOLLERR
_linger_reset: Final = sysio.linger_reset
_connect: Final = sysio.connect
_so_error: Final = sysio.so_error
_close: Final = sysio.close
_fileno: Final = sysio.fileno
_ECONNREFUSED: Final = errno.ECONNREFUSED
_ETIMEDOUT: Final = errno.ETIMEDOUT

B = TypeVar("B")  # the backend a connect goes to


def start_connect(target: SockAddr) -> tuple[Sock, int]:
    """Create a non-blocking socket (TCP_NODELAY) and start connecting; returns (socket,
    errno).

    errno is 0 when connected at once, EINPROGRESS when the answer comes later
    (EPOLLOUT), anything else when it failed already. Raises OSError only when
    no socket could be created (e.g. EMFILE). The socket is a sysio.Sock: compiled, a bare
    number with the few socket methods a backend's socket needs (relay/net/sysio.py).
    """
    return _connect(target.family, target.sockaddr, True)


class Watcher(Generic[B]):
    """Who is told how a pending connect ended (relay/net/dialer.py's Dial and Loser). A base
    class, not a protocol, so that the compiled connect calls them through the vtable, not by
    name (bench/NOTES.md)."""

    __slots__ = ()

    def connect_done(self, pending: PendingConnect[B], err: int) -> None:
        raise NotImplementedError

    def connect_crashed(self, pending: PendingConnect[B]) -> None:
        raise NotImplementedError


class PendingConnect(Handler, Generic[B]):
    """One connect in progress, watched until it completes (SO_ERROR read) or `deadline`
    passes (ETIMEDOUT). Its watcher may change while it is pending (a hedge race's loser
    goes on being watched for its outcome)."""

    __slots__ = ("backend", "events", "fd", "reactor", "sock", "started", "timer", "watcher")

    def __init__(self, reactor: Reactor, watcher: Watcher[B], backend: B,
                 sock: Sock, started: float, deadline: float) -> None:
        self.reactor = reactor
        self.watcher = watcher
        self.backend = backend
        self.sock: Sock | None = sock
        self.fd = _fileno(sock)
        self.started = started
        self.events = 0  # what the completing event said (its readiness goes to the session)
        self.timer: Timer | None = reactor.call_at(deadline, self._timed_out)
        reactor.register(self.fd, SESSION_MASK, self)

    def on_event(self, fd: int, events: int) -> None:
        sock = self.sock
        if sock is None or not events & _COMPLETED:
            return
        err = _so_error(sock, fd)
        if not err and events & _BROKEN:
            err = _ECONNREFUSED  # hung up without saying why
        self.events = events
        self.watcher.connect_done(self, err)

    def on_crash(self, exc: BaseException) -> None:
        self.watcher.connect_crashed(self)

    def _timed_out(self) -> None:
        self.timer = None
        if self.sock is not None:
            self.watcher.connect_done(self, _ETIMEDOUT)

    @property
    def deadline(self) -> float:
        return self.timer.when if self.timer is not None else self.reactor.now

    def close(self, reset: bool = False) -> None:
        """Stop watching and close the socket (with reset, the backend sees RST)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        sock, self.sock = self.sock, None
        if sock is None:
            return
        # never dup'd: closing it takes it out of epoll (no epoll_ctl; see Reactor.forget)
        self.reactor.forget(self.fd)
        if reset:
            reset_on_close(sock, self.fd)
        _close(sock)

    def hand_over(self, handler: EventHandler) -> Sock:
        """The connect succeeded: its socket, still registered with SESSION_MASK, now belongs
        to `handler` (no epoll_ctl)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        sock, self.sock = self.sock, None
        assert sock is not None
        self.reactor.handlers[self.fd] = handler
        return sock


def reset_on_close(sock: Sock, fd: int) -> None:
    """Make close() send RST, not FIN (SO_LINGER 0): the peer cannot take it for an end.
    fd is sock's number (relay/net/sysio.py: the C call takes the number)."""
    try:  # (not contextlib.suppress: compiled, a with block is generic calls, ~3k instructions)
        _linger_reset(sock, fd)
    except OSError:
        pass
