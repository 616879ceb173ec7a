"""Pipes for os.splice, from a bounded pool.

A session holds a pipe only while bytes are in flight; it goes back to the pool
as soon as it is empty. A pipe that may still hold bytes (its session ended
mid-flight, or a splice failed) is closed, never reused, so no stale bytes can
reach another session.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Final

SPLICE_FLAGS: Final = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK if hasattr(os, "splice") else 0
PIPE_SIZE: Final = 256 * 1024  # bytes a pipe can hold; bigger pipes mean fewer syscalls per MB


def splice_supported() -> bool:
    return hasattr(os, "splice") and hasattr(os, "pipe2")


class Pipe:
    __slots__ = ("capacity", "rfd", "wfd")

    def __init__(self, rfd: int, wfd: int, capacity: int) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self.capacity = capacity

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)


class PipePool:
    """Hands out empty pipes; keeps at most ``max_idle`` spare ones and ``max_total`` in all."""

    def __init__(self, max_total: int = 4096, max_idle: int = 64, size: int = PIPE_SIZE) -> None:
        self.max_total = max_total
        self.max_idle = max_idle
        self.size = size
        self._idle: list[Pipe] = []
        self.in_use = 0

    def acquire(self) -> Pipe | None:
        """An empty pipe, or None when the pool is at its bound or pipes cannot be made now."""
        if self._idle:
            self.in_use += 1
            return self._idle.pop()
        if self.in_use + len(self._idle) >= self.max_total:
            return None
        try:
            rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # EMFILE/ENFILE: the caller copies through a buffer instead
            return None
        capacity = 65536
        try:
            capacity = fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, self.size)
        except OSError:
            pass  # keep the default size (e.g. over the unprivileged pipe limits)
        self.in_use += 1
        return Pipe(rfd, wfd, capacity)

    def release(self, pipe: Pipe) -> None:
        """Return an EMPTY pipe."""
        self.in_use -= 1
        if len(self._idle) < self.max_idle:
            self._idle.append(pipe)
        else:
            pipe.close()

    def discard(self, pipe: Pipe) -> None:
        """Close a pipe that may hold bytes."""
        self.in_use -= 1
        pipe.close()

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        for pipe in self._idle:
            pipe.close()
        self._idle.clear()
