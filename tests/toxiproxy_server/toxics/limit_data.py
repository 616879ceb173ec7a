"""limit_data: forwards up to ``bytes`` bytes per connection and stream (truncating the chunk
that crosses the limit), then closes the connection. The count survives updates."""

from __future__ import annotations

from dataclasses import dataclass

from ..stream import Chunk
from .toxic import Toxic, ToxicStub, register


@dataclass
class LimitState:
    transmitted: int = 0
    #: The limit was reached while writing the last piece (an interrupt came in between).
    reached: bool = False


@register
@dataclass
class LimitDataToxic(Toxic):
    type_name = "limit_data"

    bytes: int = 0

    def new_state(self) -> LimitState:
        return LimitState()

    async def pipe(self, stub: ToxicStub) -> None:
        state: LimitState = stub.state
        if state.reached:
            if self.bytes - state.transmitted <= 0:
                stub.close()
                return
            state.reached = False  # the limit was raised by an update
        while True:
            chunk = await stub.input.get()
            if chunk is None:
                stub.close()
                return
            remaining = max(self.bytes - state.transmitted, 0)
            if remaining < len(chunk.data):
                chunk = Chunk(chunk.data[:remaining], chunk.timestamp)
            if chunk.data:
                state.transmitted += len(chunk.data)
                state.reached = self.bytes - state.transmitted <= 0
                stub.held = chunk
                await stub.send(chunk)
            if self.bytes - state.transmitted <= 0:
                stub.close()
                return
