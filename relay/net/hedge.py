"""A session's second connect (a hedge), and connects that lost and are only watched.

The first of the two connects to complete wins the session. The other one is never
relayed: a loser is watched until its connect completes (then closed at once) or
times out, and its outcome feeds passive health like any connect.
"""

from __future__ import annotations

import _socket
import errno
import os
import socket
from typing import TYPE_CHECKING

from relay.net import connect
from relay.net.reactor import EPOLLERR, EPOLLHUP, EPOLLOUT

if TYPE_CHECKING:
    from relay.net.backends import Backend
    from relay.net.listener import Listener
    from relay.net.session import Session
    from relay.net.timers import Timer


class PendingConnect:
    """One non-blocking connect, watched by its own handler until it completes or times out."""

    def __init__(self, listener: Listener, backend: Backend, sock: _socket.socket,
                 started: float, deadline: float) -> None:
        self.listener = listener
        self.reactor = listener.reactor
        self.backend = backend
        self.sock: _socket.socket | None = sock
        self.fd = sock.fileno()
        self.started = started
        self.timer: Timer | None = self.reactor.call_at(deadline, self._timed_out)
        self.reactor.register(self.fd, EPOLLOUT | EPOLLERR | EPOLLHUP, self)

    def on_event(self, fd: int, events: int) -> None:
        if self.sock is None:
            return
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.completed(err)

    def on_crash(self, exc: BaseException) -> None:
        self.release(close=True)

    def _timed_out(self) -> None:
        self.timer = None
        if self.sock is not None:
            self.completed(errno.ETIMEDOUT)

    def completed(self, err: int) -> None:
        raise NotImplementedError

    def release(self, close: bool) -> _socket.socket | None:
        """Stop watching; close the socket, or hand it over (returned)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        sock, self.sock = self.sock, None
        if sock is None:
            return None
        self.reactor.unregister(self.fd)
        if close:
            sock.close()
            return None
        return sock

    def record(self, err: int) -> None:
        """Feed the outcome to the backend's health and counters, as a session connect would."""
        group = self.listener.group
        if err:
            reason = connect.classify(err)
            self.backend.connect_errors[reason] += 1
            group.connect_failed(self.backend, f"{reason}: {os.strerror(err)}")
        else:
            seconds = self.reactor.now - self.started
            self.backend.estimate.observe(seconds)


class Hedge(PendingConnect):
    """The second connect of a session still waiting for its first."""

    def __init__(self, session: Session, backend: Backend, sock: _socket.socket,
                 deadline: float) -> None:
        self.session: Session | None = session
        listener = session.listener
        super().__init__(listener, backend, sock, listener.reactor.now, deadline)

    def completed(self, err: int) -> None:
        session = self.session
        if session is None:
            return
        session.hedge_completed(self, err)


class Loser(PendingConnect):
    """A connect that lost the race: watched for its outcome, closed as soon as it completes."""

    def completed(self, err: int) -> None:
        self.record(err)
        self.release(close=True)


def hand_over(pending: PendingConnect) -> Loser | None:
    """Turn a still-pending hedge into a watched loser (its socket is never relayed)."""
    deadline = pending.timer.when if pending.timer is not None else pending.reactor.now
    sock = pending.release(close=False)
    if sock is None:
        return None
    return Loser(pending.listener, pending.backend, sock, pending.started, deadline)
