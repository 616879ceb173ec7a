"""Waiting for a condition in tests: bounded, and it says so when it gives up.

Every poll in the suite goes through `wait_for` (a timer inside relay is no reason to wait:
tests/support/fakeclock.py moves a fake clock instead)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.05,
             message: str | Callable[[], str] = "condition not reached") -> float:
    """Poll predicate until it is true; returns the seconds waited, fails after timeout
    with `message` (or what it returns)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 >= timeout:
            raise AssertionError(message if isinstance(message, str) else message())
        time.sleep(step)
    return time.monotonic() - t0


def accepts(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """Does something accept connections on host:port now?"""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def refuses(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """Is a connect to host:port refused now (nothing listening)? A connect reset or timed
    out (caught in a backlog as the listener closed) is not an answer yet: False."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def wait_listening(port: int, alive: Callable[[], bool], what: str, host: str = "127.0.0.1",
                   timeout: float = 10.0) -> None:
    """Wait until host:port accepts; fail at once if `alive()` turns false (it exited)."""

    def ready() -> bool:
        if accepts(port, host):
            return True
        assert alive(), f"{what} exited"
        return False

    wait_for(ready, timeout=timeout, message=f"{what} never listened on {host}:{port}")
