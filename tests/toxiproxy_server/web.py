"""A small HTTP/1.1 server on asyncio streams: keep-alive, Content-Length and chunked bodies,
``Expect: 100-continue``. Enough for the Toxiproxy API and its clients, and no more."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import socket
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("toxiproxy_server")

MAX_HEADER_BYTES = 1 << 20
MAX_BODY_BYTES = 16 << 20


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, like Go's URL.Path
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    pass


class HttpServer:
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._serve, sock=sock,
                                                  limit=MAX_HEADER_BYTES)

    async def close(self) -> None:
        """Stop listening and close every connection (a request being handled finishes)."""
        if self._server is not None:
            self._server.close()
        for writer in self._connections.values():
            writer.close()  # a handler waiting for the next request reads EOF and returns
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=10)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                try:
                    request, keep_alive = await self._read_request(reader, writer)
                except BadRequest as exc:
                    await self._write(writer, Response(400, f"400 Bad Request: {exc}".encode(),
                                                       "text/plain; charset=utf-8"), False)
                    return
                if request is None:
                    return
                try:
                    response = await self._handler(request)
                except Exception as exc:  # a bug: answer 500 rather than hang up
                    log.exception("error handling %s %s", request.method, request.path)
                    response = Response(500, f"{exc}\n".encode(), "text/plain; charset=utf-8")
                await self._write(writer, response, keep_alive)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # only close() cancels; raising would make Python 3.11's streams log it
        finally:
            del self._connections[task]
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                            ) -> tuple[Request | None, bool]:
        line = b"\r\n"
        while line in (b"\r\n", b"\n"):
            try:
                line = await reader.readline()
            except (asyncio.LimitOverrunError, ValueError):
                raise BadRequest("request line too long") from None
            if not line:
                return None, False
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest("malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        size = len(line)
        while True:
            try:
                line = await reader.readline()
            except (asyncio.LimitOverrunError, ValueError):
                raise BadRequest("header too long") from None
            size += len(line)
            if size > MAX_HEADER_BYTES:
                raise BadRequest("headers too large")
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise asyncio.IncompleteReadError(b"", None)
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip():
                raise BadRequest("malformed header")
            headers[name.lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (version != "HTTP/1.0"
                                                     or "keep-alive" in connection)
        if headers.get("expect", "").lower() == "100-continue" and version != "HTTP/1.0":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = await self._read_body(reader, headers)
        if target.startswith("/"):
            raw_path, _, query = target.partition("?")
        else:  # absolute form: http://host/path?query
            url = urllib.parse.urlsplit(target)
            raw_path, query = url.path or "/", url.query
        return Request(method, urllib.parse.unquote(raw_path), query, headers, body), keep_alive

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size_line = await reader.readline()
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequest("bad chunk size") from None
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(body)
                if len(body) + size > MAX_BODY_BYTES:
                    raise BadRequest("body too large")
                body += await reader.readexactly(size)
                await reader.readline()
        length = headers.get("content-length")
        if length is None:
            return b""
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            raise BadRequest("bad Content-Length")
        return await reader.readexactly(int(length))

    async def _write(self, writer: asyncio.StreamWriter, response: Response,
                     keep_alive: bool) -> None:
        status = http.HTTPStatus(response.status)
        lines = [f"HTTP/1.1 {status.value} {status.phrase}"]
        if response.content_type is not None:
            lines.append(f"Content-Type: {response.content_type}")
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        if response.status != 204:
            lines.append(f"Content-Length: {len(response.body)}")
        if not keep_alive:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
        await writer.drain()
