"""The reactor with a real epoll but no network: timers, deferred calls, signals, crash isolation."""

import os
import signal
import socket

from relay.net.reactor import EPOLLIN, Reactor


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
