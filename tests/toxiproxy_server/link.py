"""A link: one direction of one connection, a chain of toxic stubs between two sockets.

    source socket -> reader -> [noop] -> [toxic 1] -> ... -> [toxic n] -> writer -> dest socket

Stub i runs toxic i of the proxy's chain for that direction (index 0 is a hidden noop, so a
toxic added at the end can always be spliced in behind it). When the writer sees the end of
the stream, or fails, it closes the destination socket; the other link's reader then reads
the end of its stream, and so the whole connection goes down.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .stream import Channel, Chunk
from .toxics import ToxicStub

if TYPE_CHECKING:
    import socket

    from .connection import Connection
    from .toxic_collection import ToxicCollection, ToxicWrapper


class ToxicLink:
    def __init__(self, conn: Connection, collection: ToxicCollection, direction: int,
                 source: socket.socket, dest: socket.socket) -> None:
        self.conn = conn
        self.collection = collection
        self.direction = direction
        self.source = source
        self.dest = dest
        self.chain = collection.chain[direction]  # the live list, read again on rewiring
        self.input = Channel()
        self.stubs: list[ToxicStub] = []
        last = self.input
        for i in range(len(self.chain)):
            after = Channel(self.chain[i + 1].toxic.buffer_size) if i + 1 < len(self.chain) \
                else Channel()
            self.stubs.append(ToxicStub(last, after))
            last = after
        self.output = last
        self.finished = False
        self._reader: asyncio.Task[None] | None = None
        self.writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read())
        for stub, wrapper in zip(self.stubs, self.chain, strict=True):
            stub.state = wrapper.toxic.new_state()
            if wrapper.toxic.resets_peer:
                self.conn.set_linger_zero()
            stub.run(wrapper.toxic, wrapper.toxicity)
        self.writer = loop.create_task(self._write())

    async def _read(self) -> None:
        try:
            while data := await self.conn.recv(self.source):
                await self.input.put(Chunk(data))
        finally:
            self.input.close()

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while (chunk := await self.output.get()) is not None:
            try:
                await loop.sock_sendall(self.dest, chunk.data)
            except OSError:
                break
        self.finished = True
        self.collection.links.discard(self)
        await self.conn.close_socket(self.dest)
        await self._stop_stages()

    async def _stop_stages(self) -> None:
        """Stop what is left upstream of a finished writer: nothing can be delivered now."""
        tasks = [task for stub in self.stubs if (task := stub.abort()) is not None]
        if self._reader is not None:
            self._reader.cancel()
            tasks.append(self._reader)
        if tasks:
            await asyncio.wait(tasks)

    async def abort(self) -> None:
        """Stop everything at once (the connection is dropped)."""
        self.finished = True
        self.collection.links.discard(self)
        if self.writer is not None:
            self.writer.cancel()
            await asyncio.wait({self.writer})
        await self._stop_stages()

    # Changes to the chain while the link runs (Go's ToxicLink.AddToxic/UpdateToxic/RemoveToxic).

    async def add_toxic(self, wrapper: ToxicWrapper) -> None:
        if self.finished:
            return
        i = len(self.stubs)
        new_input = Channel(wrapper.toxic.buffer_size)
        last = self.stubs[i - 1]
        stub = ToxicStub(new_input, last.output)
        self.stubs.append(stub)
        if await last.interrupt():
            last.output = new_input
            stub.state = wrapper.toxic.new_state()
            stub.run(wrapper.toxic, wrapper.toxicity)
            previous = self.chain[i - 1]
            last.run(previous.toxic, previous.toxicity)
        else:
            stub.output = new_input  # the link is closing: keep the new stub closed too
            stub.close()

    async def update_toxic(self, wrapper: ToxicWrapper) -> None:
        if self.finished or wrapper.index >= len(self.stubs):
            return
        stub = self.stubs[wrapper.index]
        if await stub.interrupt():
            stub.run(wrapper.toxic, wrapper.toxicity)

    async def remove_toxic(self, wrapper: ToxicWrapper, index: int) -> None:
        if self.finished or index >= len(self.stubs):
            return
        stub = self.stubs[index]
        if not await stub.interrupt():
            return
        wrapper.toxic.cleanup(stub)
        if stub.closed:
            return
        # Stop the stage before it, moving on whatever it pushes meanwhile.
        previous = self.stubs[index - 1]
        stopping = asyncio.get_running_loop().create_task(previous.interrupt())
        try:
            interrupted = await self._drain_until(stub, stopping)
        finally:
            if not stopping.done():
                stopping.cancel()
                await asyncio.wait({stopping})
        if not interrupted:
            return
        while stub.input.buffered():
            chunk = stub.input.get_nowait()
            if chunk is None:
                stub.close()
                return
            await stub.write_output(chunk)
        previous.output = stub.output
        del self.stubs[index]
        before = self.chain[index - 1]
        previous.run(before.toxic, before.toxicity)

    async def _drain_until(self, stub: ToxicStub, stopping: asyncio.Task[bool]) -> bool:
        """Pass chunks from ``stub``'s input to its output until ``stopping`` is done; True if
        the previous stage was interrupted, False if the stream ended (``stub`` is closed)."""
        loop = asyncio.get_running_loop()
        while True:
            if stopping.done() and stopping.result():
                return True
            getting = loop.create_task(stub.input.get())
            waiting = {getting} if stopping.done() else {getting, stopping}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                getting.cancel()
                await asyncio.wait({getting})
            if getting.cancelled():
                continue
            chunk = getting.result()
            if chunk is None:
                stub.close()
                return False
            await stub.write_output(chunk)
