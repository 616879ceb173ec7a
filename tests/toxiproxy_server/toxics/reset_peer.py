"""reset_peer: on the first chunk or the end of the stream, drop it, wait ``timeout`` ms and
close. Present when the connection opened, the sockets close with linger 0: peers get RST."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .toxic import Toxic, ToxicStub, register


@register
@dataclass
class ResetPeerToxic(Toxic):
    type_name = "reset_peer"
    resets_peer = True
    go_name = "ResetToxic"

    timeout: int = 0  # ms

    async def pipe(self, stub: ToxicStub) -> None:
        await stub.input.get()  # data or end of stream: either way, dropped
        stub.closing = True
        await asyncio.sleep(self.timeout / 1000)
        stub.close()
