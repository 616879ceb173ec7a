"""Waiting for a condition in tests: bounded, and it says so when it gives up."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.05) -> float:
    """Poll predicate until it is true; returns the seconds waited, fails after timeout."""
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout, "condition not reached"
        time.sleep(step)
    return time.monotonic() - t0
