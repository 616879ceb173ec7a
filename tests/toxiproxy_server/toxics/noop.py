"""noop: passes data unchanged (also the hidden head of every chain)."""

from __future__ import annotations

from dataclasses import dataclass

from .toxic import Toxic, ToxicStub, register


@register
@dataclass
class NoopToxic(Toxic):
    type_name = "noop"

    async def pipe(self, stub: ToxicStub) -> None:
        while True:
            chunk = await stub.input.get()
            if chunk is None:
                stub.close()
                return
            stub.held = chunk
            await stub.send(chunk)
