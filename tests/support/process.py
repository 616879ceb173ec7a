"""Stopping a process a test started: by its PID, politely first, never left running."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0,
                 signum: int = signal.SIGTERM) -> int:
    """Send `signum` (if it still runs), wait up to `grace` seconds, then SIGKILL; its exit
    status."""
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            return proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(5)
