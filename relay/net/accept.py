"""Accept that rests: what a listening socket does when the process runs out of descriptors
or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM). Accepting again at once would spin on the same
error, so accept is switched off for ACCEPT_PAUSE and the episode is logged once (the first
accept that works ends it). Data listeners and the admin listener share it."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from typing import Final

from relay.logs import log
from relay.net.reactor import EPOLLIN, Reactor

ACCEPT_PAUSE: Final = 0.25  # seconds accept rests after a resource error
RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class AcceptPause:
    __slots__ = ("logged", "name", "paused", "reactor", "sock_of")

    def __init__(self, reactor: Reactor, name: str,
                 sock_of: Callable[[], socket.socket | None]) -> None:
        self.reactor = reactor
        self.name = name  # the listener's, for the log line
        self.sock_of = sock_of  # the listening socket now (a reload may replace it)
        self.paused = False
        self.logged = False

    def pause(self, exc: OSError) -> None:
        if not self.logged:
            self.logged = True
            log.warning("accept_paused", listener=self.name, error=os.strerror(exc.errno or 0),
                        seconds=ACCEPT_PAUSE)
        sock = self.sock_of()
        if sock is None or self.paused:
            return
        self.paused = True
        self.reactor.modify(sock.fileno(), 0)
        self.reactor.call_later(ACCEPT_PAUSE, self._resume)

    def rest(self, seconds: float, then: Callable[[], None]) -> None:
        """Stop accepting for `seconds` (not for an error: no log), then call `then`."""
        sock = self.sock_of()
        if sock is None or self.paused:
            return
        self.paused = True
        self.reactor.modify(sock.fileno(), 0)
        self.reactor.call_later(seconds, lambda: self._rested(then))

    def _rested(self, then: Callable[[], None]) -> None:
        if self.paused:  # (not: a reload adopted another socket meanwhile)
            self._resume()
            then()

    def _resume(self) -> None:
        if not self.paused:
            return  # a reload adopted another socket meanwhile (already accepting, or held)
        self.paused = False
        sock = self.sock_of()
        if sock is not None:
            self.reactor.modify(sock.fileno(), EPOLLIN)
