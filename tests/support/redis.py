"""Real redis-server processes for tests: on loopback, or inside a network namespace."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_port_of(host: str, port: int, timeout: float = 5.0) -> int:
    """Ask a redis (directly or through relay) which port it serves on: tells who answered."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nport\r\n")
        data = b""
        while data.count(b"\r\n") < 5:
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {data!r}")
            data += chunk
    return int(data.split(b"\r\n")[4])


class RedisServer:
    def __init__(self, server_bin: str, port: int, workdir: str, host: str = "127.0.0.1",
                 netns: str | None = None) -> None:
        self.cmd = [server_bin, "--port", str(port), "--bind", host, "--save", "",
                    "--appendonly", "no", "--dir", workdir, "--protected-mode", "no"]
        if netns:
            self.cmd = ["ip", "netns", "exec", netns, *self.cmd]
        self.host = host
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis_port_of(self.host, self.port, timeout=1)
                return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"redis-server did not start: {self.cmd}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Probe:
    """New connections through relay every `every` seconds, each asking who serves it."""

    port: int
    every: float = 0.01
    # (started, finished, port that served it or None, error)
    results: list[tuple[float, float, int | None, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + 120  # bounded whatever the test does
        while not self._stop.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            try:
                port = redis_port_of("127.0.0.1", self.port, timeout=10)
                self.results.append((t, time.monotonic(), port, ""))
            except OSError as exc:
                self.results.append((t, time.monotonic(), None, repr(exc)))
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def errors(self, since: float = 0.0) -> list[tuple[float, float, int | None, str]]:
        """Failed sessions among those started at or after `since`. (A request in flight on
        the primary when it dies fails with it: close_on_down resets it on purpose.)"""
        return [r for r in self.results if r[3] and r[0] >= since]

    def first_served_by(self, port: int, after: float) -> float:
        """When the first session started after `after` and served by `port` got its answer."""
        return min(end for start, end, p, _ in self.results if start >= after and p == port)
