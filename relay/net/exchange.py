"""One bounded TCP conversation on the reactor (an authority's questions: RESP, HTTP).

Connect without blocking, send the request, hand every complete reply to `on_reply`
until it says stop or the peer closes. The peer is untrusted: at most `limit` bytes
are buffered, the parser bounds what a reply may be, and `timeout` (when given)
bounds the whole conversation.
"""

from __future__ import annotations

import _socket
import errno
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from relay.core.connect_error import detail
from relay.net.reactor import EPOLLIN, EPOLLOUT, Handler
from relay.net.resolve import SockAddr
from relay.net.sysio import socket_connect

if TYPE_CHECKING:
    from relay.net.reactor import Reactor
    from relay.net.timers import Timer

V = TypeVar("V")


class Exchange(Handler, Generic[V]):
    def __init__(self, reactor: Reactor, target: SockAddr, request: bytes,
                 parser: Callable[[bytes], tuple[V, int] | None],
                 on_reply: Callable[[V], bool], on_end: Callable[[str], None],
                 timeout: float | None, limit: int = 1 << 20) -> None:
        self.reactor = reactor
        self.parser = parser
        self.on_reply = on_reply
        self.on_end = on_end
        self.limit = limit
        self.buffer = b""
        self.pending = request
        self.connected = False
        self.ended = False
        self.sock: _socket.socket | None = None
        self.deadline: Timer | None = None
        try:
            sock, err = socket_connect(target.family, target.sockaddr, True)
        except OSError as exc:
            why = f"no socket: {os.strerror(exc.errno or 0)}"
            reactor.call_soon(lambda: self._end(why))
            return
        self.sock = sock
        if err not in (0, errno.EINPROGRESS):
            reactor.call_soon(lambda: self._end(detail(err)))
            return
        reactor.register(sock.fileno(), EPOLLOUT | EPOLLIN, self)
        if timeout is not None:
            self.deadline = reactor.call_later(timeout, lambda: self._end("timed out"))

    @property
    def open(self) -> bool:
        return self.sock is not None

    def send(self, data: bytes) -> None:
        """More to say (a few bytes: a command); sent when connected."""
        self.pending += data
        if self.connected and self.sock is not None:
            self._flush(self.sock)

    def close(self) -> None:
        """Ours: no on_end."""
        self.ended = True
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if self.sock is not None:
            self.reactor.unregister(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def on_event(self, fd: int, events: int) -> None:
        sock = self.sock
        if sock is None:
            return
        if not self.connected:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._end(detail(err))
                return
            self.connected = True
            self.reactor.modify(fd, EPOLLIN)
            if not self._flush(sock):
                return
        if not events & EPOLLIN:
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._end(detail(exc.errno or 0))
            return
        if not data:
            self._end("closed by peer")
            return
        self.buffer += data
        if len(self.buffer) > self.limit:
            self._end(f"reply larger than {self.limit} bytes")
            return
        while self.sock is not None:
            try:
                parsed = self.parser(self.buffer)
            except ValueError as exc:
                self._end(f"protocol error: {exc}")
                return
            if parsed is None:
                return
            value, used = parsed
            self.buffer = self.buffer[used:]
            if not self.on_reply(value):
                self.close()
                return

    def _flush(self, sock: _socket.socket) -> bool:
        if not self.pending:
            return True
        try:
            sent = sock.send(self.pending)
        except BlockingIOError:
            return True
        except OSError as exc:
            self._end(detail(exc.errno or 0))
            return False
        self.pending = self.pending[sent:]
        if self.pending:  # a few hundred bytes never fill a fresh socket's buffer
            self._end("request not sent at once")
            return False
        return True

    def on_crash(self, exc: BaseException) -> None:
        self._end(f"internal error: {exc}")

    def _end(self, error: str) -> None:
        if self.ended:
            return
        self.close()
        self.on_end(error)



__all__ = ["Exchange"]
