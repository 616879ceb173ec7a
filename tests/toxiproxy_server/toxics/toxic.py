"""The toxic interface, the per-link stub a toxic runs on, and the registry of toxic types.

A toxic's ``pipe(stub)`` reads chunks from ``stub.input`` (``None`` = the stream ended) and
writes chunks to ``stub.output``; when the stream ends (or it decides to end it) it calls
``stub.close()``, which closes its output so the stages after it see the end too.

A running toxic can be *interrupted* (its task is cancelled) so that the link can be rewired or
the toxic restarted with new attributes. Whatever the toxic has taken from its input but not
yet written must be in ``stub.held``; an interrupt forwards it, so no data is lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from typing import Any, ClassVar

from ..stream import Channel, Chunk

log = logging.getLogger("toxiproxy_server")

#: How long an interrupted toxic may block forwarding what it holds before dropping it.
FLUSH_TIMEOUT = 5.0


@dataclasses.dataclass
class Toxic:
    """Base class of the toxic types. Subclasses are dataclasses whose ``int`` fields are the
    toxic's attributes, in the order the API lists them."""

    type_name: ClassVar[str] = ""
    #: Capacity of the channel in front of this toxic (latency buffers chunks in flight).
    buffer_size: ClassVar[int] = 0
    #: Present when a connection opens, the connection's sockets close with an RST.
    resets_peer: ClassVar[bool] = False
    #: The Go struct's name (``toxics.<go_name>``) and its fields' type, as decode errors
    #: name them; None means the class name.
    go_name: ClassVar[str | None] = None
    go_field_type: ClassVar[str] = "int64"

    @classmethod
    def go_struct(cls) -> str:
        return cls.go_name or cls.__name__

    @classmethod
    def attribute_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def attributes(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.attribute_names()}

    async def pipe(self, stub: ToxicStub) -> None:
        raise NotImplementedError

    def new_state(self) -> Any:
        """Per-link state kept on the stub across restarts, or None."""
        return None

    def cleanup(self, stub: ToxicStub) -> None:
        """Called on a live link when the toxic is removed (after it was interrupted)."""


REGISTRY: dict[str, type[Toxic]] = {}


def register(cls: type[Toxic]) -> type[Toxic]:
    REGISTRY[cls.type_name] = cls
    return cls


class ToxicStub:
    """One toxic's place in one link: its input and output channels and its running task."""

    def __init__(self, input: Channel, output: Channel) -> None:
        self.input = input
        self.output = output
        self.state: Any = None
        #: Data taken from the input and not yet written; forwarded if interrupted.
        self.held: Chunk | None = None
        #: Set by a toxic that has committed to closing; an interrupt then waits for the close.
        self.closing = False
        self._closed = False
        self._aborted = False
        self._task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, toxic: Toxic, toxicity: float) -> None:
        """Start ``toxic`` on this stub; with probability 1 - toxicity a noop runs instead."""
        self._task = asyncio.get_running_loop().create_task(self._run(toxic, toxicity))

    async def _run(self, toxic: Toxic, toxicity: float) -> None:
        if random.random() >= toxicity:
            toxic = REGISTRY["noop"]()
        try:
            await toxic.pipe(self)
        except asyncio.CancelledError:
            if self._aborted:
                raise
            # An interrupt: hand on what the toxic holds, then stop so it can be replaced.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            held, self.held = self.held, None
            if held is not None and held.data:
                await self.write_output(held)

    async def send(self, chunk: Chunk, rest: Chunk | None = None) -> None:
        """Write ``chunk`` on; ``rest`` is what the toxic still holds afterwards."""
        await self.output.put(chunk)
        self.held = rest

    async def write_output(self, chunk: Chunk, timeout: float = FLUSH_TIMEOUT) -> None:
        try:
            await asyncio.wait_for(self.output.put(chunk), timeout)
        except TimeoutError:
            log.warning("could not write %d held bytes after an interrupt", len(chunk.data))

    async def interrupt(self) -> bool:
        """Stop the running toxic (Go's InterruptToxic). True if it stopped and the stub can be
        restarted; False if the stub is closed."""
        task = self._task
        if self._closed or task is None:
            return False
        if not task.done():
            if not self.closing:
                task.cancel()
            await asyncio.wait({task})
        return not self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.output.close()

    def abort(self) -> asyncio.Task[None] | None:
        """Stop without forwarding anything (the connection is being dropped)."""
        self._aborted = True
        self.close()
        if self._task is not None:
            self._task.cancel()
        return self._task
