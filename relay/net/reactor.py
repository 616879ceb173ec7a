"""The epoll reactor: file descriptor events, timers, deferred calls and signals.

One loop per process. Handlers are objects with ``on_event(fd, events)``; an
exception escaping a handler is logged and handed to its ``on_crash`` so one
connection's bug never stops the loop. Signals are only recorded by the C-level
handler (through ``signal.set_wakeup_fd``); their Python callbacks run in the
loop like any other event.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from mypy_extensions import mypyc_attr

from relay.logs import log
from relay.net import sysio
from relay.net.timers import Timer, TimerHeap

EPOLLIN: Final = select.EPOLLIN
EPOLLOUT: Final = select.EPOLLOUT
EPOLLERR: Final = select.EPOLLERR
EPOLLHUP: Final = select.EPOLLHUP
EPOLLRDHUP: Final = select.EPOLLRDHUP
EPOLLET: Final = select.EPOLLET

MAX_EVENTS: Final = 1024
# epoll_ctl and epoll_wait without the select.epoll methods' wrapping (relay/net/sysio.py)
_epoll_ctl: Final = sysio.epoll_ctl
_epoll_wait: Final = sysio.epoll_wait
_ADD: Final = sysio.EPOLL_CTL_ADD
_MOD: Final = sysio.EPOLL_CTL_MOD


class EventHandler(Protocol):
    """What the loop hands a registered fd's events to."""

    def on_event(self, fd: int, events: int) -> None: ...

    def on_crash(self, exc: BaseException) -> None: ...


@mypyc_attr(allow_interpreted_subclasses=True)  # tests' handlers may derive from it too
class Handler:
    """An EventHandler as a base class, which the compiled handlers (sessions, connects,
    listeners, channels, checks) derive from: the loop calls them through their vtable, where a
    protocol's method is looked up by name and its arguments boxed, per event
    (bench/NOTES.md). Handlers of interpreted modules (admin, PROXY headers) stay plain
    classes: an interpreted class deriving from a compiled one reads its own attributes at
    about half the speed."""

    __slots__ = ()  # (pure Python: subclasses with __slots__ keep no __dict__)

    def on_event(self, fd: int, events: int) -> None:
        raise NotImplementedError

    def on_crash(self, exc: BaseException) -> None:
        raise NotImplementedError


class _SignalPipe(Handler):
    """Reads the signal numbers the C handler wrote to the wakeup socket."""

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self.rsock, self.wsock = socket.socketpair()
        self.rsock.setblocking(False)
        self.wsock.setblocking(False)
        self.callbacks: dict[int, Callable[[int], None]] = {}
        self.previous_wakeup = signal.set_wakeup_fd(self.wsock.fileno(), warn_on_full_buffer=False)
        reactor.register(self.rsock.fileno(), EPOLLIN, self)

    def on_event(self, fd: int, events: int) -> None:
        try:
            data = self.rsock.recv(4096)
        except BlockingIOError:
            return
        for signum in data:
            callback = self.callbacks.get(signum)
            if callback is not None:
                callback(signum)

    def on_crash(self, exc: BaseException) -> None:
        pass

    def close(self) -> None:
        for signum in self.callbacks:
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(self.previous_wakeup)
        self.reactor.unregister(self.rsock.fileno())
        self.rsock.close()
        self.wsock.close()


def _record_only(signum: int, frame: object) -> None:
    """Python-level handler: does nothing; the wakeup fd already carries the signal to the loop."""


class _Waker(Handler):
    """Lets another thread hand the loop a callable (tests, a future supervisor)."""

    def __init__(self, reactor: Reactor) -> None:
        self.rsock, self.wsock = socket.socketpair()
        self.rsock.setblocking(False)
        self.wsock.setblocking(False)
        self.reactor = reactor
        reactor.register(self.rsock.fileno(), EPOLLIN, self)

    def wake(self) -> None:
        try:
            self.wsock.send(b"w")
        except BlockingIOError:
            pass  # already awake-pending

    def on_event(self, fd: int, events: int) -> None:
        try:
            self.rsock.recv(4096)
        except BlockingIOError:
            pass

    def on_crash(self, exc: BaseException) -> None:
        pass

    def close(self) -> None:
        self.reactor.unregister(self.rsock.fileno())
        self.rsock.close()
        self.wsock.close()


Clock = Callable[[], float]


class Reactor:
    """`clock` gives the loop's time (time.monotonic; tests pass a fake one and turn the loop
    with `run_once`, so timers fire when the test moves the clock, not after a real wait)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._epoll = select.epoll()
        self._epfd = self._epoll.fileno()
        self._handlers: dict[int, EventHandler] = {}
        # (a connect's socket changes hands here: see PendingConnect.hand_over)
        self.handlers = self._handlers
        # fds registered while the current batch of events is being dispatched (see run())
        self._fresh: set[int] = set()
        self._timers = TimerHeap(clock)
        self._soon: deque[Callable[[], None]] = deque()
        self._signals: _SignalPipe | None = None
        self._waker: _Waker | None = None
        self._running = False
        self.now = clock()
        self.iterations = 0  # loop turns (tests count the turns checks start in)

    # -- file descriptors -------------------------------------------------

    def register(self, fd: int, mask: int, handler: EventHandler) -> None:
        _epoll_ctl(self._epoll, self._epfd, _ADD, fd, mask)
        self._handlers[fd] = handler
        self._fresh.add(fd)

    def modify(self, fd: int, mask: int) -> None:
        _epoll_ctl(self._epoll, self._epfd, _MOD, fd, mask)

    def forget(self, fd: int) -> None:
        """Drop fd's handler without an epoll_ctl, for the hot path of sessions and checks:
        before closing a socket that was never dup'd or shared (closing its last reference
        takes it out of epoll, which saves unregister()'s epoll_ctl)."""
        handlers = self._handlers
        if fd in handlers:  # (in and del run natively, compiled; dict.pop is a generic call)
            del handlers[fd]

    def unregister(self, fd: int) -> None:
        """Forget fd; must be called before the fd is closed (a closed fd stays in epoll otherwise)."""
        if self._handlers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    # -- time -------------------------------------------------------------

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self._timers.add(self.now + delay, callback)

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        return self._timers.add(when, callback)

    def next_deadline(self) -> float | None:
        """When the earliest live timer is due (None: no timer)."""
        return self._timers.next_deadline()

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run callback on the next turn of the loop, before it waits for events."""
        self._soon.append(callback)

    def call_threadsafe(self, callback: Callable[[], None]) -> None:
        """From another thread: run callback in the loop soon."""
        if self._waker is None:
            raise RuntimeError("enable_threadsafe() first, from the loop's thread")
        self._soon.append(callback)  # deque.append is atomic
        self._waker.wake()

    def enable_threadsafe(self) -> None:
        if self._waker is None:
            self._waker = _Waker(self)

    # -- signals ----------------------------------------------------------

    def add_signal_handler(self, signum: int, callback: Callable[[int], None]) -> None:
        if self._signals is None:
            self._signals = _SignalPipe(self)
        self._signals.callbacks[signum] = callback
        signal.signal(signum, _record_only)

    # -- the loop ---------------------------------------------------------

    def stop(self) -> None:
        self._running = False

    def run(self) -> None:
        self._running = True
        self._turns(None, once=False)

    def run_once(self, max_wait: float | None = 0.0) -> bool:
        """One turn: wait for events (until the next timer, at most `max_wait` seconds of the
        clock's time; None: no limit), dispatch them, run deferred calls and due timers.
        Whether anything happened. A test on a fake clock calls this with max_wait 0 (see
        tests/support/fakeclock.py)."""
        return self._turns(max_wait, once=True)

    def _turns(self, max_wait: float | None, once: bool) -> bool:
        """The loop: until stop(), or one turn with `once` (one body for both, and no call
        per turn: run() keeps the speed of an inlined loop)."""
        epoll, epfd = self._epoll, self._epfd
        handlers = self._handlers
        timers = self._timers
        soon = self._soon
        fresh = self._fresh
        clock = self.clock
        while True:
            entries = timers.entries  # (when, seq, timer), a heap: looked at without a call
            if soon:
                timeout = 0.0
            elif entries and not entries[0][2].cancelled:
                timeout = max(0.0, entries[0][0] - clock())
            else:
                deadline = timers.next_deadline()
                timeout = -1.0 if deadline is None else max(0.0, deadline - clock())
            if max_wait is not None and (timeout < 0 or timeout > max_wait):
                timeout = max_wait
            events = _epoll_wait(epoll, epfd, timeout, MAX_EVENTS)
            self.now = now = clock()
            self.iterations += 1
            busy = once and bool(events or soon)
            # Pitfall: handlers close sockets in the middle of a batch, and the kernel hands the
            # lowest free number to the next socket opened, maybe in the same batch (a session's
            # backend connect). An event later in the batch for that number was about the old
            # socket: delivered to the new handler, a stale EPOLLOUT would tell a connecting
            # session it is connected. So events for fds registered during this batch are
            # skipped: epoll reports a new registration's own readiness at the next poll.
            if fresh:
                fresh.clear()
            for fd, mask in events:
                if fresh and fd in fresh:
                    continue
                handler = handlers.get(fd)
                if handler is not None:
                    try:
                        if isinstance(handler, Handler):  # compiled: through the vtable
                            handler.on_event(fd, mask)
                        else:
                            handler.on_event(fd, mask)
                    except Exception as exc:  # one connection's bug must not stop the loop
                        self._crashed(handler, exc)
            if soon:
                for _turn in range(len(soon)):
                    callback = soon.popleft()
                    try:
                        callback()
                    except Exception as exc:
                        log.exception("internal_error", exc, where="deferred call")
            entries = timers.entries  # (a timer's cancel may have rebuilt it)
            if entries and entries[0][0] <= now:
                for timer in timers.pop_due(now):
                    busy = once
                    try:
                        timer.callback()
                    except Exception as exc:
                        log.exception("internal_error", exc, where="timer")
            if once:
                return busy
            if not self._running:
                return False

    def _crashed(self, handler: EventHandler, exc: BaseException) -> None:
        log.exception("internal_error", exc, where=type(handler).__name__)
        try:
            handler.on_crash(exc)
        except Exception as exc2:
            log.exception("internal_error", exc2, where="on_crash")

    def close(self) -> None:
        if self._waker is not None:
            self._waker.close()
            self._waker = None
        if self._signals is not None:
            self._signals.close()
            self._signals = None
        self._epoll.close()

