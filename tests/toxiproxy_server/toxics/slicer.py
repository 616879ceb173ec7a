"""slicer: splits each chunk into pieces of about ``average_size`` bytes (+/- ``size_variation``)
by repeated halving, and waits ``delay`` microseconds after writing each piece."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from ..stream import Chunk
from .toxic import Toxic, ToxicStub, register


@register
@dataclass
class SlicerToxic(Toxic):
    type_name = "slicer"
    go_field_type = "int"

    average_size: int = 0  # bytes
    size_variation: int = 0  # bytes
    delay: int = 0  # microseconds

    def cuts(self, start: int, end: int) -> list[tuple[int, int]]:
        """(start, end) of each piece. Unlike the Go server, never makes an empty piece (the
        Go server recurses for ever when average_size and size_variation are both 0)."""
        if (end - start) - self.average_size <= self.size_variation or end - start <= 1:
            return [(start, end)]
        mid = start + (end - start) // 2
        if self.size_variation > 0:
            mid += random.randrange(-self.size_variation, self.size_variation)
        mid = min(max(mid, start + 1), end - 1)
        return self.cuts(start, mid) + self.cuts(mid, end)

    async def pipe(self, stub: ToxicStub) -> None:
        while True:
            chunk = await stub.input.get()
            if chunk is None:
                stub.close()
                return
            stub.held = chunk
            data, stamp = chunk.data, chunk.timestamp
            for start, end in self.cuts(0, len(data)):
                rest = Chunk(data[end:], stamp) if end < len(data) else None
                await stub.send(Chunk(data[start:end], stamp), rest)
                await asyncio.sleep(self.delay / 1_000_000)
