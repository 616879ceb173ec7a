"""timeout: drops all data; if ``timeout`` > 0, closes the connection after ``timeout`` ms
without incoming data in that stream. Removing it closes the connections it sits on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .toxic import Toxic, ToxicStub, register


@register
@dataclass
class TimeoutToxic(Toxic):
    type_name = "timeout"

    timeout: int = 0  # ms

    async def pipe(self, stub: ToxicStub) -> None:
        timeout = self.timeout / 1000 if self.timeout > 0 else None
        while True:
            try:
                chunk = await asyncio.wait_for(stub.input.get(), timeout)
            except TimeoutError:
                chunk = None
            if chunk is None:
                stub.close()
                return
            # The data is dropped on the floor; the timer starts again.

    def cleanup(self, stub: ToxicStub) -> None:
        stub.close()
