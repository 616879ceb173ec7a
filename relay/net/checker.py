"""Active health checks on the reactor: tcp, send_expect, http; each bounded by its timeout.

One Checker per backend. It only carries out checks and reports pass/fail with a
reason; what that means for the backend is decided in relay.core.health, and
when the next check runs comes from there too (interval, or backoff while down, on
slots shared by the checks due close together: check_at).
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from relay.config.model import BackendConfig, HealthConfig
from relay.core.connect_error import detail
from relay.core.health import HealthState, check_at
from relay.core.proxy_header import encode_v1, encode_v2
from relay.net import sysio
from relay.net.accept import RESOURCE_ERRORS
from relay.net.connect import reset_on_close
from relay.net.reactor import EPOLLIN, EPOLLOUT, Handler, Reactor
from relay.net.resolve import SockAddr
from relay.net.sysio import Sock

if TYPE_CHECKING:
    from relay.net.timers import Timer

MAX_REPLY = 4096  # bytes a check reads at most
_connect: Final = sysio.connect  # (bound once: compiled, no module lookup per check)
_so_error: Final = sysio.so_error
_fileno: Final = sysio.fileno
_close_socket: Final = sysio.close


def _nothing() -> None:
    pass


class Checked(Protocol):
    """What a checker reads of its backend (relay.net.backends.Backend is one)."""

    @property
    def config(self) -> BackendConfig: ...
    @property
    def target(self) -> SockAddr: ...
    @property
    def health(self) -> HealthState: ...


class HealthChecker(Protocol):
    """What a backend group asks of its backend's checker (Checker; the tests' stand-ins)."""

    @property
    def in_flight(self) -> bool: ...

    def schedule(self, delay: float) -> None: ...

    def check_now(self) -> None: ...

    def stop(self) -> None: ...


class Checker(Handler):
    """One backend's active checks: a connect (and for send_expect and http an exchange)
    every `interval`, judged and handed to `on_result`."""

    def __init__(self, reactor: Reactor, backend: Checked, config: HealthConfig, proxy: str,
                 rng: random.Random, on_result: Callable[[bool, str], None]) -> None:
        """proxy: the PROXY header version the backend's listener sends ("off", "v1", "v2");
        on_result(ok, error) gets each check's outcome before the next one is scheduled."""
        self.reactor = reactor
        self.rng = rng
        self.on_result = on_result
        self.backend = backend
        self.config = config
        self.sock: Sock | None = None
        self.fd = -1  # the socket's number while it is open (-1 once closed)
        self.dialed: SockAddr | None = None  # what the check's socket connects to
        self.timer: Timer | None = None
        self.deadline: Timer | None = None
        self.connected = False
        self.reply = b""
        self.request = b""
        self.stopped = False
        self.confirming = False  # an early check failed: check again soon until decided
        # the timers' callbacks, bound once (compiled, binding a method is a generic attribute
        # read and an allocation, ~300 instructions: two per check)
        self._start_cb: Callable[[], None] = self._start
        self._timed_out_cb: Callable[[], None] = self._timed_out
        # send_proxy: a backend that requires PROXY headers rejects checks without one
        self.proxy = proxy if config.send_proxy else "off"
        if config.kind == "send_expect":
            self.request = config.send or b""
        elif config.kind == "http":
            host = backend.config.address.host
            self.request = (f"GET {config.path} HTTP/1.0\r\nHost: {host}\r\n"
                            "User-Agent: relay-health-check\r\nConnection: close\r\n\r\n").encode()

    def schedule(self, delay: float) -> None:
        if self.stopped:
            return
        if self.timer is not None:
            self.timer.cancel()
        # on a slot shared with the checks due close to it, one slot later at random: see
        # relay.core.health.check_at (never early, at most 5 % of the interval late)
        reactor = self.reactor
        self.timer = reactor.call_at(check_at(reactor.now, delay, self.config.interval, self.rng),
                                     self._start_cb)

    @property
    def in_flight(self) -> bool:
        return self.sock is not None

    def check_now(self) -> None:
        """An early check (a session saw something only a check can judge); the regular
        schedule resumes after it."""
        if not self.stopped and self.sock is None:
            self.confirming = True
            self.schedule(0)

    def stop(self) -> None:
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._close()
        # the bound callbacks made a cycle (checker -> its bound method -> checker): broken here,
        # so a stopped checker (and its backend and group) goes with its last reference, even
        # when gc.freeze() (relay/net/server.py) has put it beyond the cyclic collector's reach
        self._start_cb = self._timed_out_cb = _nothing

    def _start(self) -> None:
        self.timer = None
        if not self.backend.health.checks_enabled:
            return  # maint: no checks until the operator sets ready again
        self.connected = False
        self.reply = b""
        target = self.backend.target
        try:  # (no TCP_NODELAY: a check sends a few bytes once; relay/net/sysio.py)
            sock, err = _connect(target.family, target.sockaddr, False)
        except OSError as exc:
            if exc.errno in RESOURCE_ERRORS:  # our shortage: says nothing of the backend
                self._done(False, f"no socket: {os.strerror(exc.errno or 0)}", local=True)
            else:  # (an address the connect refuses: a failed check, seen and logged)
                self._done(False, f"cannot connect: {exc}")
            return
        self.sock = sock
        self.fd = fd = _fileno(sock)
        self.dialed = target
        if err not in (0, errno.EINPROGRESS):
            self._done(False, detail(err))
            return
        self.reactor.register(fd, EPOLLOUT | EPOLLIN, self)
        self.deadline = self.reactor.call_later(self.config.timeout, self._timed_out_cb)

    def _timed_out(self) -> None:
        self.deadline = None
        if self.sock is None:
            return
        if not self.connected:
            self._done(False, detail(errno.ETIMEDOUT))
        else:
            self._done(False, "no answer within timeout")

    def on_event(self, fd: int, events: int) -> None:
        sock = self.sock
        if sock is None:
            return
        if not self.connected:
            # always asked, as every pending connect is (relay/net/connect.py): a clean EPOLLOUT
            # alone is not proof of a connection
            err = _so_error(sock, fd)
            if err:
                self._done(False, detail(err))
                return
            self.connected = True
            request = self.request
            if self.proxy != "off":
                request = self._proxy_header(sock) + request
            if request:
                try:
                    sock.send(request)  # a few bytes: fits any socket buffer
                except OSError as exc:
                    self._done(False, detail(exc.errno or 0))
                    return
            if self.config.kind == "tcp":
                self._done(True, "")
                return
            self.reactor.modify(fd, EPOLLIN)
            return
        try:
            data = sock.recv(MAX_REPLY - len(self.reply))
        except BlockingIOError:
            return
        except OSError as exc:
            self._done(False, detail(exc.errno or 0))
            return
        self.reply += data
        self._judge(eof=not data)

    def _proxy_header(self, sock: Sock) -> bytes:
        """v2: LOCAL (relay speaks for itself); v1 has no LOCAL, so the check's own addresses
        (the peer: the address it connected to)."""
        if self.proxy == "v2":
            return encode_v2(None, None)
        dialed = self.dialed
        try:
            local = sock.getsockname()
        except OSError:
            return b"PROXY UNKNOWN\r\n"
        assert dialed is not None  # (set with the socket)
        return encode_v1((local[0], local[1]), (dialed.sockaddr[0], dialed.sockaddr[1]))

    def _judge(self, eof: bool) -> None:
        if self.config.kind == "send_expect":
            expect = self.config.expect or b""
            if self.reply.startswith(expect):
                self._done(True, "")
            elif len(self.reply) >= len(expect) or eof:
                self._done(False, f"unexpected reply {self.reply[:len(expect)]!r}")
            return
        line_end = self.reply.find(b"\r\n")
        if line_end < 0:
            line_end = self.reply.find(b"\n")
        if line_end < 0 and not eof and len(self.reply) < MAX_REPLY:
            return
        status_line = self.reply[:line_end if line_end >= 0 else len(self.reply)]
        parts = status_line.split()
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            status = int(parts[1])
            if 200 <= status < 400:
                self._done(True, "")
            else:
                self._done(False, f"HTTP {status}")
        else:
            self._done(False, "not an HTTP reply")

    def on_crash(self, exc: BaseException) -> None:
        self._done(False, f"internal error: {exc}", local=True)

    def _close(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        sock = self.sock
        if sock is not None:
            self.sock = None
            # never dup'd or shared: closing it takes it out of epoll (no epoll_ctl DEL)
            fd, self.fd = self.fd, -1
            self.reactor.forget(fd)
            # with a reset, as HAProxy's checks close: no FIN exchange, and no TIME_WAIT socket
            # left per check (2,000 checks a second would keep 120,000 of them)
            reset_on_close(sock, fd)
            _close_socket(sock)

    def _done(self, ok: bool, error: str, local: bool = False) -> None:
        self._close()
        if local:  # our own shortage says nothing about the backend: just try again later
            self.schedule(self.config.interval)
            return
        self.on_result(ok, error)
        delay = self.backend.health.next_check_in(self.rng)
        if self.confirming:  # HAProxy's on-error fastinter: an early check's failure is
            # confirmed or cleared soon, at most `fall` checks per early check
            self.confirming = not ok and self.backend.health.up
            if self.confirming:
                delay = min(delay, self.config.timeout)
        self.schedule(delay)

