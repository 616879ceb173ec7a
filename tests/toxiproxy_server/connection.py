"""One proxied connection: a client socket, an upstream socket and a link each way."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import TYPE_CHECKING

from .link import ToxicLink
from .stream import CHUNK_SIZE
from .toxic_collection import DOWNSTREAM, UPSTREAM

if TYPE_CHECKING:
    from .proxy import Proxy


class Connection:
    def __init__(self, proxy: Proxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.sockets = (client, upstream)
        collection = proxy.toxics
        self.links = (ToxicLink(self, collection, UPSTREAM, client, upstream),
                      ToxicLink(self, collection, DOWNSTREAM, upstream, client))
        self._receiving: dict[socket.socket, asyncio.Task[bytes]] = {}
        self._closing: set[socket.socket] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start both links (synchronously, so they match the toxic chains right now)."""
        for link in self.links:
            self.proxy.toxics.links.add(link)
            link.start()
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        try:
            await asyncio.wait([link.writer for link in self.links if link.writer])
        finally:
            for link in self.links:
                await link.abort()
            for sock in self.sockets:
                await self.close_socket(sock)
            self.proxy.connections.discard(self)

    async def close(self) -> None:
        """Drop the connection: close both sockets now, deliver nothing more."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})

    def set_linger_zero(self) -> None:
        """Closing the sockets will send an RST (reset_peer present at connect)."""
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def recv(self, sock: socket.socket) -> bytes:
        """Up to CHUNK_SIZE bytes; b"" at the end of the stream, on error or once
        :meth:`close_socket` started on ``sock``."""
        if sock in self._closing:
            return b""
        receiving = asyncio.get_running_loop().create_task(
            asyncio.get_running_loop().sock_recv(sock, CHUNK_SIZE))
        self._receiving[sock] = receiving
        try:
            await asyncio.wait({receiving})
        except asyncio.CancelledError:
            receiving.cancel()
            await asyncio.wait({receiving})
            raise
        finally:
            self._receiving.pop(sock, None)
            if receiving.done() and not receiving.cancelled():
                receiving.exception()  # retrieved, so asyncio does not log it
        if receiving.cancelled() or receiving.exception() is not None:
            return b""
        return receiving.result()

    async def close_socket(self, sock: socket.socket) -> None:
        """Close ``sock`` fully; a reader waiting on it sees the end of its stream."""
        self._closing.add(sock)
        receiving = self._receiving.get(sock)
        if receiving is not None:
            receiving.cancel()
            await asyncio.wait({receiving})
        sock.close()
