"""Workers share the accept load, from the one accept queue they all listen on.

Every worker waits on the same listening socket; the kernel wakes them all for a new
client and the first to call accept() gets it, which is most often the same worker (one
worker took 20 of 20 sessions). SO_REUSEPORT would split the load but gives each worker
its own queue, whose clients die with it; so the queue stays shared and the workers take
turns instead: each publishes how many sessions it holds in a slot of a small file the
supervisor maps for them all (like the counters, relay.net.counts), and a worker holding
more than the least loaded one (plus a little) lets that one take the next client: it
stops listening for SHARE_REST seconds. A client is never left waiting much longer than
that: when the rest is over and no other worker has taken a client meanwhile (it may be
busy, stuck or dead), this one accepts what is queued, whatever its load.
"""

from __future__ import annotations

import mmap
import os
from typing import Final

SHARE_REST: Final = 0.005  # seconds a worker ahead of its share leaves new clients to the others
ABSENT: Final = -1  # a slot no running worker holds
_WORD: Final = 8


class AcceptBoard:
    """One int64 per worker slot: that worker's open sessions, or ABSENT."""

    def __init__(self, path: str, slots: int, create: bool = False) -> None:
        size = _WORD * max(slots, 1)
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            elif os.fstat(fd).st_size < size:
                raise ValueError(f"{path}: shorter than {slots} slots")
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.values = memoryview(self.map).cast("q")
        if create:
            for i in range(len(self.values)):
                self.values[i] = ABSENT

    def close(self) -> None:
        self.values.release()
        self.map.close()


class AcceptShare:
    """A worker's view of the board: it writes its own slot, reads the others'."""

    def __init__(self, board: AcceptBoard, slot: int) -> None:
        if not 0 <= slot < len(board.values):
            raise ValueError(f"slot {slot} outside the board's {len(board.values)}")
        self.board = board
        self.slot = slot
        self.values = board.values
        self.others = [i for i in range(len(board.values)) if i != slot]
        self.active = True
        self.seen: list[int] = []  # the others' slots when this worker last stood back

    def publish(self, sessions: int) -> None:
        if self.active:
            self.values[self.slot] = sessions

    def leave(self) -> None:
        """This worker accepts no more (it drains): the others no longer wait for it."""
        if self.active:
            self.values[self.slot] = ABSENT
            self.active = False

    def ahead(self, sessions: int) -> bool:
        """Publish `sessions`; True when another worker holds clearly fewer (by more than
        one session and 5%), so that one should take the next client."""
        if not self.active:
            return False
        values = self.values
        values[self.slot] = sessions
        lowest = -1
        for i in self.others:
            v = values[i]
            if v >= 0 and (lowest < 0 or v < lowest):
                lowest = v
        if lowest >= 0 and sessions > lowest + 1 + lowest // 20:
            self.seen = [values[i] for i in self.others]
            return True
        return False

    def moved(self) -> bool:
        """Whether another worker took a client (or closed one) since this one stood back:
        when none did, they are busy, stuck or dead, and this worker takes what is queued."""
        values = self.values
        return [values[i] for i in self.others] != self.seen
