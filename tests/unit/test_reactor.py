"""The reactor with a real epoll but no network: timers, deferred calls, signals, crash isolation."""

import os
import signal
import socket

from relay.net.reactor import EPOLLIN, EPOLLOUT, Handler, Reactor


def test_timers_and_deferred_calls_run_in_the_loop():
    r = Reactor()
    seen = []
    r.call_soon(lambda: seen.append("soon"))
    r.call_later(0.01, lambda: seen.append("later"))
    cancelled = r.call_later(0.005, lambda: seen.append("cancelled"))
    cancelled.cancel()
    r.call_later(0.02, r.stop)
    r.run()
    r.close()
    assert seen == ["soon", "later"]


def test_signal_callback_runs_in_the_loop_not_in_the_handler():
    r = Reactor()
    got = []

    def on_term(signum):
        got.append(signum)
        r.stop()

    r.add_signal_handler(signal.SIGUSR1, on_term)
    r.call_soon(lambda: os.kill(os.getpid(), signal.SIGUSR1))
    r.call_later(5, r.stop)  # safety net
    r.run()
    r.close()
    assert got == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


class _Exploding(Handler):
    def __init__(self):
        self.crashed = []

    def on_event(self, fd, events):
        raise RuntimeError("boom")

    def on_crash(self, exc):
        self.crashed.append(exc)


def test_a_handler_that_raises_does_not_stop_the_loop():
    r = Reactor()
    a, b = socket.socketpair()
    handler = _Exploding()
    r.register(a.fileno(), EPOLLIN, handler)
    b.send(b"x")
    ran_after = []

    def later():
        ran_after.append(True)
        r.unregister(a.fileno())
        r.stop()

    r.call_later(0.05, later)
    r.run()
    r.close()
    a.close()
    b.close()
    assert handler.crashed and isinstance(handler.crashed[0], RuntimeError)
    assert ran_after == [True]


class _PlainReader:
    """A handler that is not a Handler (as admin's and the PROXY header reader are:
    interpreted classes), called by name: it reads, then raises once."""

    def __init__(self, sock):
        self.sock = sock
        self.got = b""
        self.crashed = []

    def on_event(self, fd, events):
        self.got += self.sock.recv(100)
        if not self.crashed:
            raise RuntimeError("once")

    def on_crash(self, exc):
        self.crashed.append(exc)


def test_a_plain_class_handler_gets_its_events_and_its_crash():
    r = Reactor()
    a, b = socket.socketpair()
    a.setblocking(False)
    handler = _PlainReader(a)
    r.register(a.fileno(), EPOLLIN, handler)
    b.send(b"one")
    for _ in range(20):  # (each turn waits for at most 1 s)
        if handler.crashed:
            break
        r.run_once(1.0)
    b.send(b"two")
    for _ in range(20):
        if handler.got == b"onetwo":
            break
        r.run_once(1.0)
    r.unregister(a.fileno())
    r.close()
    a.close()
    b.close()
    assert handler.got == b"onetwo"
    assert len(handler.crashed) == 1 and isinstance(handler.crashed[0], RuntimeError)


class _Recorder(Handler):
    def __init__(self):
        self.events = []

    def on_event(self, fd, events):
        self.events.append(events)

    def on_crash(self, exc):
        raise AssertionError(exc)


def test_an_fd_reused_within_a_batch_gets_no_stale_event():
    """Handler A, woken in the same batch as socket B, closes B and opens a new socket that
    gets B's number: B's event, later in that batch, must not reach the new socket's handler."""
    r = Reactor()
    a1, a2 = socket.socketpair()
    b1, b2 = socket.socketpair()
    c1, c2 = socket.socketpair()
    b_fd = b1.fileno()
    new_handler = _Recorder()
    reused = []

    class _ClosesB(Handler):
        def on_event(self, fd, events):
            if reused:
                return
            r.handlers.pop(b_fd)
            b1.close()  # the kernel may now give b_fd to the next socket opened
            os.dup2(c1.fileno(), b_fd)  # ... and does: a new socket with B's number
            reused.append(socket.socket(fileno=b_fd))
            r.register(b_fd, EPOLLIN | EPOLLOUT, new_handler)

        def on_crash(self, exc):
            raise AssertionError(exc)

    r.register(a1.fileno(), EPOLLIN, _ClosesB())
    r.register(b_fd, EPOLLIN, _Recorder())
    a2.send(b"a")  # a first, then b: one batch, in this order
    b2.send(b"b")
    r.call_later(0.05, r.stop)
    r.run()
    try:
        assert reused, "the batch did not run"
        assert new_handler.events, "the new socket's own readiness must still be reported"
        assert all(not events & EPOLLIN for events in new_handler.events), (
            "a stale EPOLLIN of the closed socket reached the new one")
    finally:
        r.close()
        for sock in (a1, a2, b2, c1, c2, *reused):
            sock.close()


def test_on_a_fake_clock_timers_fire_when_the_clock_moves_and_the_poll_never_waits():
    import time

    from tests.support.fakeclock import FakeClock, advance, settle

    clock = FakeClock(50.0)
    r = Reactor(clock=clock)
    fired = []
    r.call_later(3600.0, lambda: fired.append(("hour", r.now)))
    r.call_later(1.0, lambda: r.call_later(1.0, lambda: fired.append(("chained", r.now))))
    t0 = time.monotonic()
    assert settle(r) == 1 and fired == []  # an hour ahead: nothing due, and no wait for it
    advance(r, clock, 1.999)
    assert fired == []
    advance(r, clock, 3600.0)
    elapsed = time.monotonic() - t0
    r.close()
    assert fired == [("chained", 52.0), ("hour", 3650.0)]  # each at its own time, in order
    assert clock.now == 50.0 + 1.999 + 3600.0
    # an hour of timers in far less than the smallest one's real wait (1 s)
    assert elapsed < 1.0


def test_run_once_waits_at_most_max_wait_for_events():
    from tests.support.fakeclock import FakeClock

    clock = FakeClock()
    r = Reactor(clock=clock)
    a, b = socket.socketpair()
    got = []

    class Reader(Handler):
        def on_event(self, fd, events):
            got.append(a.recv(16))

        def on_crash(self, exc):
            raise AssertionError(exc)

    r.register(a.fileno(), EPOLLIN, Reader())
    r.call_later(10.0, lambda: got.append(b"timer"))
    assert r.run_once(0.0) is False  # nothing ready; the timer is ten fake seconds away
    b.send(b"hi")
    assert r.run_once(0.0) is True and got == [b"hi"]
    r.unregister(a.fileno())
    r.close()
    a.close()
    b.close()
