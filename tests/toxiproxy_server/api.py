"""The Toxiproxy HTTP API: routes, handlers and the Go server's response formats."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from . import gojson
from .errors import ApiError, missing_field
from .proxy import Proxy, ProxyCollection, decode_body, parse_proxy_input
from .web import Request, Response

VERSION = "2.12.0"

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
NOSNIFF = [("X-Content-Type-Options", "nosniff")]

Route = Callable[..., Awaitable[Response]]


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, gojson.dumps(value), JSON)


def error_response(error: ApiError) -> Response:
    """Go's http.Error: the JSON text plus a newline, sent as text/plain."""
    return Response(error.status, gojson.dumps(error.to_json()) + b"\n", TEXT, NOSNIFF)


def text_response(status: int, text: str) -> Response:
    return Response(status, f"{text}\n".encode(), TEXT, NOSNIFF)


def clean_path(path: str) -> str:
    """gorilla/mux's cleanPath: Go's path.Clean, keeping a trailing slash."""
    if not path.startswith("/"):
        path = "/" + path
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    cleaned = "/" + "/".join(segments)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


class ApiServer:
    def __init__(self) -> None:
        self.collection = ProxyCollection()
        self._lock = asyncio.Lock()  # one API change at a time
        self._routes: list[tuple[re.Pattern[str], dict[str, Route]]] = [
            (re.compile(pattern), methods) for pattern, methods in [
                (r"/reset", {"POST": self.reset}),
                (r"/proxies", {"GET": self.proxy_index, "POST": self.proxy_create}),
                (r"/populate", {"POST": self.populate}),
                (r"/proxies/(?P<proxy>[^/]+)", {
                    "GET": self.proxy_show, "POST": self.proxy_update,
                    "PATCH": self.proxy_update, "DELETE": self.proxy_delete}),
                (r"/proxies/(?P<proxy>[^/]+)/toxics", {
                    "GET": self.toxic_index, "POST": self.toxic_create}),
                (r"/proxies/(?P<proxy>[^/]+)/toxics/(?P<toxic>[^/]+)", {
                    "GET": self.toxic_show, "POST": self.toxic_update,
                    "PATCH": self.toxic_update, "DELETE": self.toxic_delete}),
                (r"/version", {"GET": self.version}),
            ]
        ]

    async def handle(self, request: Request) -> Response:
        cleaned = clean_path(request.path)
        if cleaned != request.path:
            location = cleaned + (f"?{request.query}" if request.query else "")
            return Response(301, headers=[("Location", location)])
        for pattern, methods in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            route = methods.get(request.method)
            if route is None:
                return Response(405)
            if request.headers.get("user-agent", "").startswith("Mozilla/"):
                return text_response(403, "User agent not allowed")
            async with self._lock:
                try:
                    return await route(request, **match.groupdict())
                except ApiError as exc:
                    return error_response(exc)
        return text_response(404, "404 page not found")

    async def version(self, request: Request) -> Response:
        body = f'{{"version": "{VERSION}"}}\n'.encode()
        return Response(200, body, "application/json;charset=utf-8")

    async def reset(self, request: Request) -> Response:
        for proxy in list(self.collection.proxies.values()):
            await proxy.start()
            await proxy.toxics.reset()
        return Response(204)

    async def proxy_index(self, request: Request) -> Response:
        proxies = self.collection.proxies
        return json_response({name: proxies[name].to_json() for name in sorted(proxies)})

    async def proxy_create(self, request: Request) -> Response:
        fields = parse_proxy_input(decode_body(request.body))
        if not fields["name"]:
            raise missing_field("name")
        if not fields["upstream"]:
            raise missing_field("upstream")
        proxy = Proxy(fields["name"], fields["listen"] or "", fields["upstream"])
        enabled = True if fields["enabled"] is None else fields["enabled"]
        await self.collection.add(proxy, enabled)
        return json_response(proxy.to_json(), 201)

    async def populate(self, request: Request) -> Response:
        proxies, error = await self.collection.populate_json(request.body)
        listed = None if proxies is None else [proxy.to_json() for proxy in proxies]
        if error is None:
            return json_response({"proxies": listed}, 201)
        return json_response({**error.to_json(), "proxies": listed}, error.status)

    async def proxy_show(self, request: Request, proxy: str) -> Response:
        return json_response(self.collection.get(proxy).to_json())

    async def proxy_update(self, request: Request, proxy: str) -> Response:
        found = self.collection.get(proxy)
        fields = parse_proxy_input(decode_body(request.body))
        await found.update(
            found.listen if fields["listen"] is None else fields["listen"],
            found.upstream if fields["upstream"] is None else fields["upstream"],
            found.enabled if fields["enabled"] is None else fields["enabled"],
        )
        return json_response(found.to_json())

    async def proxy_delete(self, request: Request, proxy: str) -> Response:
        await self.collection.remove(proxy)
        return Response(204)

    async def toxic_index(self, request: Request, proxy: str) -> Response:
        return json_response(self.collection.get(proxy).toxics.toxic_array())

    async def toxic_create(self, request: Request, proxy: str) -> Response:
        toxics = self.collection.get(proxy).toxics
        return json_response((await toxics.add_json(request.body)).to_json())

    async def toxic_show(self, request: Request, proxy: str, toxic: str) -> Response:
        return json_response(self.collection.get(proxy).toxics.get(toxic).to_json())

    async def toxic_update(self, request: Request, proxy: str, toxic: str) -> Response:
        toxics = self.collection.get(proxy).toxics
        return json_response((await toxics.update_json(toxic, request.body)).to_json())

    async def toxic_delete(self, request: Request, proxy: str, toxic: str) -> Response:
        await self.collection.get(proxy).toxics.remove(toxic)
        return Response(204)
