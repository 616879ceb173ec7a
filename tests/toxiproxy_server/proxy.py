"""Proxies: a listener that accepts clients and dials the upstream for each; and the
collection of proxies by name."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any

from . import addr, gojson
from .connection import Connection
from .errors import (
    ApiError,
    bad_request_body,
    missing_field,
    proxy_already_exists,
    proxy_not_found,
)
from .toxic_collection import ToxicCollection

log = logging.getLogger("toxiproxy_server")


class Proxy:
    def __init__(self, name: str, listen: str, upstream: str) -> None:
        self.name = name
        self.listen = listen  # the bound address while enabled, else as last given
        self.upstream = upstream
        self.enabled = False
        self.toxics = ToxicCollection()
        self.connections: set[Connection] = set()
        self._listeners: list[socket.socket] = []  # two for a wildcard (see addr.listen)
        self._accepting: list[asyncio.Task[None]] = []
        self._dialling: set[asyncio.Task[None]] = set()
        # accepted clients not yet handed to a Connection nor closed: a dialling task
        # cancelled before it ran never sees its client, so stop() closes what is left here
        self._unanswered: set[socket.socket] = set()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "Logger": {},  # the Go server (2.5+) leaks this field into its JSON
            "toxics": self.toxics.toxic_array(),
        }

    async def start(self) -> None:
        """Bind ``listen`` and accept clients. ApiError 500 if it cannot bind."""
        if self.enabled:
            return
        self._listeners, self.listen = await addr.listen(self.listen)
        self.enabled = True
        loop = asyncio.get_running_loop()
        self._accepting = [loop.create_task(self._accept(sock)) for sock in self._listeners]

    async def stop(self) -> None:
        """Close the listener and drop every connection (both sockets closed)."""
        if not self.enabled:
            return
        self.enabled = False
        tasks = [*self._accepting, *self._dialling]
        self._accepting = []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for client in self._unanswered:
            client.close()
        self._unanswered.clear()
        for sock in self._listeners:
            sock.close()
        self._listeners = []
        await asyncio.gather(*(conn.close() for conn in list(self.connections)))

    async def differs(self, listen: str, upstream: str) -> bool:
        return self.listen != await addr.resolve(listen) or self.upstream != upstream

    async def update(self, listen: str, upstream: str, enabled: bool) -> None:
        """A changed listen or upstream restarts the proxy; a bind failure leaves it disabled
        with the new values (ApiError 500)."""
        if await self.differs(listen, upstream):
            await self.stop()
            self.listen, self.upstream = listen, upstream
            if enabled:
                await self.start()
                return
        if enabled != self.enabled:
            await (self.start() if enabled else self.stop())

    async def _accept(self, listener: socket.socket) -> None:
        # Not loop.sock_accept(): on Python 3.11, cancelling it can accept a client and lose
        # the socket (the callback ignores that the future was cancelled; fixed in 3.12).
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                await _readable(listener)
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    await asyncio.sleep(0.1)
                continue
            self._unanswered.add(client)
            task = loop.create_task(self._connect(client))
            self._dialling.add(task)
            task.add_done_callback(self._dialling.discard)

    async def _connect(self, client: socket.socket) -> None:
        """Dial the upstream for a new client; if that fails, close the client (it reads EOF)."""
        try:
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = await addr.dial(self.upstream)
        except (OSError, addr.AddrError) as exc:
            log.info("proxy %s: cannot reach upstream %s: %s", self.name, self.upstream, exc)
            self._unanswered.discard(client)
            client.close()
            return
        except BaseException:
            self._unanswered.discard(client)
            client.close()
            raise
        self._unanswered.discard(client)
        conn = Connection(self, client, upstream)
        self.connections.add(conn)
        conn.start()


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


class ProxyCollection:
    def __init__(self) -> None:
        self.proxies: dict[str, Proxy] = {}

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise proxy_not_found()
        return proxy

    async def add(self, proxy: Proxy, start: bool) -> None:
        if proxy.name in self.proxies:
            raise proxy_already_exists()
        if start:
            await proxy.start()
        self.proxies[proxy.name] = proxy

    async def add_or_replace(self, proxy: Proxy, start: bool) -> Proxy:
        """For /populate: a proxy with the same upstream and listen is kept as it is."""
        existing = self.proxies.get(proxy.name)
        if existing is not None:
            if not await existing.differs(proxy.listen, proxy.upstream):
                return existing
            await existing.stop()
        if start:
            await proxy.start()
        self.proxies[proxy.name] = proxy
        return proxy

    async def remove(self, name: str) -> None:
        proxy = self.get(name)
        await proxy.stop()
        del self.proxies[name]

    async def clear(self) -> None:
        for name in list(self.proxies):
            await self.remove(name)

    async def populate_json(self, body: bytes) -> tuple[list[Proxy] | None, ApiError | None]:
        """Create or replace every proxy of a JSON array. All entries are checked before any
        is created. Returns the proxies done (None if none) and the error that stopped it."""
        try:
            entries = _parse_populate(body)
        except ApiError as exc:
            return None, exc
        done: list[Proxy] = []
        for name, listen, upstream, enabled in entries:
            try:
                done.append(await self.add_or_replace(Proxy(name, listen, upstream), enabled))
            except ApiError as exc:
                return done or None, exc
        return done or None, None


PROXY_FIELDS = {"name": "string", "listen": "string", "upstream": "string", "enabled": "bool"}
#: The element type /populate decodes into, as Go 1.23's decode errors print it.
POPULATE_ENTRY = 'struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'


def parse_proxy_input(obj: Any, owner: str = "Proxy",
                      go_type: str = "toxiproxy.Proxy") -> dict[str, Any]:
    """name, listen, upstream, enabled of a JSON proxy (None where null or absent). Fields are
    decoded in document order and the first type error is reported, as Go does."""
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise bad_request_body(gojson.type_error(obj, "Go value", go_type))
    fields: dict[str, Any] = dict.fromkeys(PROXY_FIELDS)
    first: gojson.DecodeError | None = None
    for key, value in gojson.pairs(obj):
        if key == "logger" and not isinstance(value, dict | None):
            # Go's Proxy has an exported, untagged Logger *zerolog.Logger field: the key is
            # decoded into it (and then unused), so only an object or null gets through.
            first = first or gojson.type_error(value, f"Go struct field {owner}.Logger",
                                               "zerolog.Logger")
        if key not in PROXY_FIELDS:
            continue
        try:
            checked = gojson.check(value, f"Go struct field {owner}.{key}", PROXY_FIELDS[key])
        except gojson.DecodeError as exc:
            first = first or exc
            continue
        if checked is not None:
            fields[key] = checked
    if first is not None:
        raise bad_request_body(first)
    return fields


def decode_body(body: bytes) -> Any:
    try:
        return gojson.decode(body)
    except gojson.DecodeError as exc:
        raise bad_request_body(exc) from None


def _parse_populate(body: bytes) -> list[tuple[str, str, str, bool]]:
    entries = decode_body(body)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise bad_request_body(gojson.type_error(entries, "Go value", f"[]{POPULATE_ENTRY}"))
    # The entries' type is an anonymous struct: Go names their fields ".name" and so on.
    fields = [parse_proxy_input(entry, "", POPULATE_ENTRY) for entry in entries]
    result = []
    for number, entry in enumerate(fields, 1):
        if not entry["name"]:
            raise missing_field(f"name at proxy {number}")
        if not entry["upstream"]:
            raise missing_field(f"upstream at proxy {number}")
        enabled = True if entry["enabled"] is None else entry["enabled"]
        result.append((entry["name"], entry["listen"] or "", entry["upstream"], enabled))
    return result

