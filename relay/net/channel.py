"""Newline-delimited JSON messages between the supervisor and a worker, on the reactor.

Non-blocking both ways: writes are buffered (bounded) and flushed on EPOLLOUT; a
broken peer closes the channel and calls `on_close`.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any, Final

from relay.net.reactor import EPOLLIN, EPOLLOUT, Handler, Reactor

MAX_BUFFER: Final = 16 * 1024 * 1024  # a peer that stops reading is dropped past this


class Channel(Handler):
    def __init__(self, reactor: Reactor, sock: socket.socket,
                 on_message: Callable[[dict[str, Any]], None],
                 on_close: Callable[[], None]) -> None:
        self.reactor = reactor
        self.sock = sock
        self.fd = sock.fileno()
        sock.setblocking(False)
        self.on_message = on_message
        self.on_close = on_close
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.mask = EPOLLIN
        self.closed = False
        reactor.register(self.fd, EPOLLIN, self)

    def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        self.outbuf += json.dumps(message, separators=(",", ":")).encode() + b"\n"
        if len(self.outbuf) > MAX_BUFFER:
            self.close()
            return
        self._flush()

    def _flush(self) -> None:
        while self.outbuf:
            try:
                n = self.sock.send(self.outbuf)
            except BlockingIOError:
                break
            except OSError:
                self.close()
                return
            del self.outbuf[:n]
        want = EPOLLIN | (EPOLLOUT if self.outbuf else 0)
        if want != self.mask:
            self.mask = want
            self.reactor.modify(self.fd, want)

    def on_event(self, fd: int, events: int) -> None:
        if events & EPOLLOUT:
            self._flush()
        if self.closed or not events & ~EPOLLOUT:
            return
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.inbuf += data
        while True:
            end = self.inbuf.find(b"\n")
            if end < 0:
                break
            line = bytes(self.inbuf[:end])
            del self.inbuf[:end + 1]
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours to crash on
            if isinstance(message, dict):
                self.on_message(message)
            if self.closed:
                return

    def on_crash(self, exc: BaseException) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.reactor.unregister(self.fd)
        self.sock.close()
        self.on_close()
