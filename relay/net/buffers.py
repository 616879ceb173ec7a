"""Copy-path buffers, pooled like pipes: a session holds one only while bytes are in flight."""

from __future__ import annotations

BUFFER_SIZE = 64 * 1024


class BufferPool:
    def __init__(self, size: int = BUFFER_SIZE, max_idle: int = 64) -> None:
        self.size = size
        self.max_idle = max_idle
        self._idle: list[bytearray] = []
        self.in_use = 0

    def acquire(self) -> bytearray:
        self.in_use += 1
        if self._idle:
            return self._idle.pop()
        return bytearray(self.size)

    def release(self, buf: bytearray) -> None:
        self.in_use -= 1
        if len(self._idle) < self.max_idle:
            self._idle.append(buf)
