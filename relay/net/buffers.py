"""Copy-path buffers.

Every read of the copy path lands in one scratch buffer per server (one reactor,
one thread) and is written on at once; a session holds no buffer at all while
the receiving socket takes everything. Only when it takes part of it does the
session keep the rest: it takes the scratch buffer itself (no copy) and the pool
puts another one in its place. That one comes back with ``release`` once its
bytes are gone.
"""

from __future__ import annotations

from typing import Final

BUFFER_SIZE: Final = 64 * 1024
# reads shorter than this are sent on through a view of the scratch buffer made once per
# length (`head`): slicing a memoryview builds a new object each time, which cost more
# instructions than the send's own argument handling (bench/NOTES.md). At most this many
# views (about 200 bytes each) are held, for the lengths actually seen.
HEADS: Final = 2048


class BufferPool:
    def __init__(self, size: int = BUFFER_SIZE, max_idle: int = 64) -> None:
        self.size = size
        self.max_idle = max_idle
        self._idle: list[memoryview] = []
        self.in_use = 0  # buffers held by sessions (bytes their receiver has not taken yet)
        self.scratch = memoryview(bytearray(size))
        self._heads: list[memoryview | None] = [None] * HEADS  # scratch[:n], by n
        self._filled: list[int] = []  # the n of each view made (what take() forgets)

    def head(self, n: int) -> memoryview:
        """scratch[:n], the same object each time for a short n."""
        if n < HEADS:
            view = self._heads[n]
            if view is None:
                view = self._heads[n] = self.scratch[:n]
                self._filled.append(n)
            return view
        return self.scratch[:n]

    def take(self) -> memoryview:
        """The scratch buffer, with the bytes just read into it, for a session to keep."""
        buf = self.scratch
        self.in_use += 1
        self.scratch = self._idle.pop() if self._idle else memoryview(bytearray(self.size))
        heads = self._heads  # forget the views of the old scratch: that one is the session's now
        for n in self._filled:
            heads[n] = None
        self._filled.clear()
        return buf

    def release(self, buf: memoryview) -> None:
        self.in_use -= 1
        if len(self._idle) < self.max_idle:
            self._idle.append(buf)
