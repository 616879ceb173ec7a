"""slow_close: data passes; the end of the stream is held back ``delay`` ms."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .toxic import Toxic, ToxicStub, register


@register
@dataclass
class SlowCloseToxic(Toxic):
    type_name = "slow_close"

    delay: int = 0  # ms

    async def pipe(self, stub: ToxicStub) -> None:
        while True:
            chunk = await stub.input.get()
            if chunk is None:
                await asyncio.sleep(self.delay / 1000)
                stub.close()
                return
            stub.held = chunk
            await stub.send(chunk)
