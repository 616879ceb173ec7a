"""Chunks and channels: the plumbing between the stages of a link (Go's ``stream`` package)."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field

#: Largest chunk read from a socket in one go (Go's io.Copy buffer).
CHUNK_SIZE = 32 * 1024


@dataclass
class Chunk:
    """Bytes read from a socket, stamped with the monotonic time they were read."""

    data: bytes
    timestamp: float = field(default_factory=time.monotonic)


class Channel:
    """A bounded FIFO of chunks that can be closed, like a Go channel.

    ``capacity`` 0 (Go's unbuffered channel) holds one item. After :meth:`close`, :meth:`get`
    returns what is still buffered and then ``None`` for ever; :meth:`put` drops its item.
    Cancelling a waiting ``get`` or ``put`` never loses or duplicates an item.
    """

    def __init__(self, capacity: int = 0) -> None:
        self._capacity = max(1, capacity)
        self._items: collections.deque[Chunk] = collections.deque()
        self._closed = False
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def buffered(self) -> int:
        return len(self._items)

    def get_nowait(self) -> Chunk | None:
        """The next buffered chunk; ``None`` only if closed and empty. Call when buffered()."""
        if self._items:
            item = self._items.popleft()
            self._wake()
            return item
        return None

    async def get(self) -> Chunk | None:
        while not self._items:
            if self._closed:
                return None
            await self._wait()
        return self.get_nowait()

    async def put(self, item: Chunk) -> None:
        while len(self._items) >= self._capacity and not self._closed:
            await self._wait()
        if not self._closed:
            self._items.append(item)
            self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        # Few waiters per channel (a reader and a writer): wake all, each re-checks.
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
