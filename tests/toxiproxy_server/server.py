"""Run the API and every proxy on one asyncio loop in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
from types import TracebackType
from typing import Any

from . import gojson
from .api import ApiServer
from .web import HttpServer


def _loopback(host: str) -> str:
    """``host`` as an IP literal, refusing anything but loopback (a test tool)."""
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"host must be a loopback IP address, not {host!r}") from None
    if not ip.is_loopback:
        raise ValueError(f"host must be a loopback address (127.0.0.1 or ::1), not {host}")
    return str(ip)


class ToxiproxyServer:
    """A Toxiproxy 2.x compatible server for tests.

        server = ToxiproxyServer("127.0.0.1", 0)
        port = server.start()          # API at server.url, e.g. http://127.0.0.1:41234
        ...
        server.stop()                  # closes every socket, joins its thread

    or ``with ToxiproxyServer() as server: ...``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = _loopback(host)
        self.port = port
        self.api: ApiServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: HttpServer | None = None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> int:
        """Bind the API (raises OSError if the port is taken), start serving; the port."""
        if self._thread is not None:
            raise RuntimeError("already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="toxiproxy-server", daemon=True)
        self._thread.start()
        try:
            self.call(self._startup(sock))
        except BaseException:
            sock.close()
            self.stop()
            raise
        return self.port

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _startup(self, sock: socket.socket) -> None:
        self.api = ApiServer()
        self._http = HttpServer(self.api.handle)
        await self._http.start(sock)

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def populate(self, proxies: list[dict[str, Any]]) -> None:
        """Create proxies as POST /populate would (used for ``--config``)."""
        assert self.api is not None
        _, error = self.call(self.api.collection.populate_json(gojson.dumps(proxies)))
        if error is not None:
            raise ValueError(error.message)

    def stop(self) -> None:
        """Stop serving: close the API, every proxy and connection; join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            if thread.is_alive():
                self.call(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self.api is not None:
            await self.api.collection.clear()
        current = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not current]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others)
        loop = asyncio.get_running_loop()
        await loop.shutdown_asyncgens()
        await loop.shutdown_default_executor()

    def __enter__(self) -> ToxiproxyServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
