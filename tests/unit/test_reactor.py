"""The reactor with a real epoll but no network: timers, deferred calls, signals, crash isolation."""

import os
import signal
import socket

from relay.net.reactor import EPOLLIN, EPOLLOUT, Reactor


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


class _Exploding:
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


class _Recorder:
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

    class _ClosesB:
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
