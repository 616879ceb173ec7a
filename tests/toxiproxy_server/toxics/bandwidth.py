"""bandwidth: limits the rate to ``rate`` KB/s (1 KB = 1000 B); 0 = unlimited."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..stream import Chunk
from .toxic import Toxic, ToxicStub, register


@register
@dataclass
class BandwidthToxic(Toxic):
    type_name = "bandwidth"

    rate: int = 0  # KB/s

    async def pipe(self, stub: ToxicStub) -> None:
        sleep = 0.0  # seconds owed; carried over so timer overshoot is paid back
        while True:
            chunk = await stub.input.get()
            if chunk is None:
                stub.close()
                return
            stub.held = chunk
            rate = self.rate
            if rate <= 0:
                sleep = 0.0
                await stub.send(chunk)
                continue
            sleep += len(chunk.data) / (rate * 1000)
            # A chunk bigger than 100 ms worth of data goes out in 100 ms slices.
            piece = rate * 100
            while len(chunk.data) > piece:
                await asyncio.sleep(0.1)
                rest = Chunk(chunk.data[piece:], chunk.timestamp)
                await stub.send(Chunk(chunk.data[:piece], chunk.timestamp), rest)
                chunk = rest
                sleep -= 0.1
            start = time.monotonic()
            await asyncio.sleep(max(sleep, 0))
            sleep -= time.monotonic() - start
            await stub.send(chunk)
