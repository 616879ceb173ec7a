"""latency: each chunk leaves latency +/- jitter ms after it was read."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from .toxic import Toxic, ToxicStub, register


@register
@dataclass
class LatencyToxic(Toxic):
    type_name = "latency"
    buffer_size = 1024  # chunks queue up while earlier ones wait, keeping their read time

    latency: int = 0  # ms
    jitter: int = 0  # ms

    def delay(self) -> float:
        delay = self.latency
        if self.jitter > 0:
            delay += random.randrange(-self.jitter, self.jitter)
        return delay / 1000

    async def pipe(self, stub: ToxicStub) -> None:
        while True:
            chunk = await stub.input.get()
            if chunk is None:
                stub.close()
                return
            stub.held = chunk
            sleep = self.delay() - (time.monotonic() - chunk.timestamp)
            await asyncio.sleep(max(sleep, 0))
            chunk.timestamp += sleep  # so stacked latency toxics add up
            await stub.send(chunk)
