"""relay in this process: the reactor turns in a thread, the test calls the operator API."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from relay.config import parse_config
from relay.net.server import RelayServer

T = TypeVar("T")


class InProcessRelay:
    def __init__(self, config_text: str) -> None:
        self.server = RelayServer(parse_config(config_text))
        self.server.open()
        self.server.reactor.enable_threadsafe()
        self.server.start()
        self.thread = threading.Thread(target=self.server.reactor.run, daemon=True)
        self.thread.start()

    def port(self, listener: str) -> int:
        found = self.server.by_name[listener]
        assert found.sock is not None
        return int(found.sock.getsockname()[1])

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run fn in the reactor's thread and return its result (or raise its exception)."""
        done = threading.Event()
        box: dict[str, object] = {}

        def run() -> None:
            try:
                box["result"] = fn()
            except BaseException as exc:
                box["error"] = exc
            done.set()

        self.server.reactor.call_threadsafe(run)
        assert done.wait(timeout), "the reactor did not run the call"
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["result"]  # type: ignore[return-value]

    def reload(self, path: str, timeout: float = 10.0) -> bool:
        """SIGHUP's work on `path`: whether it was applied (once its names are resolved)."""
        applied: list[bool] = []
        finished = threading.Event()

        def done(ok: bool) -> None:
            applied.append(ok)
            finished.set()

        self.call(lambda: self.server.reload(path, done))
        assert finished.wait(timeout), "the reload did not finish"
        return applied[0]

    def stop(self) -> None:
        if self.thread.is_alive():
            self.call(self.server.reactor.stop)
            self.thread.join(10)
        self.server.close()
