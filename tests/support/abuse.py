"""Hostile admin clients, and the yardsticks to judge relay under them: echo round trips
on live sessions, /healthz probes, relay's RSS and CPU time."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

from tests.support.relayproc import admin_request

METRICS_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"


class EchoLoop:
    """Round trips on a few sessions opened at the start, one after the other, in a thread;
    `take()` hands back the round-trip times measured since the last call."""

    def __init__(self, port: int, sessions: int = 4, message: bytes = b"ping\n") -> None:
        self.message = message
        self.conns = [socket.create_connection(("127.0.0.1", port), timeout=30)
                      for _ in range(sessions)]
        self.times: list[float] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        deadline = time.monotonic() + 300  # bounded whatever the test does
        while not self._stop.is_set() and time.monotonic() < deadline:
            conn = self.conns[i % len(self.conns)]
            i += 1
            t0 = time.perf_counter()
            try:
                conn.sendall(self.message)
                got = b""
                while len(got) < len(self.message):
                    data = conn.recv(len(self.message) - len(got))
                    if not data:
                        raise ConnectionError("session closed")
                    got += data
            except OSError as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                return
            with self._lock:
                self.times.append(time.perf_counter() - t0)
            self._stop.wait(0.002)

    def take(self) -> list[float]:
        with self._lock:
            times, self.times = self.times, []
        return times

    def measure(self, seconds: float) -> list[float]:
        self.take()
        time.sleep(seconds)
        return self.take()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(35)
        for conn in self.conns:
            conn.close()


def probe_healthz(port: int, timeout: float = 2.0) -> int:
    """What a liveness probe sees: the status, or 0 when it got no answer in time."""
    try:
        return admin_request(port, "GET", "/healthz", timeout=timeout)[0]
    except OSError:
        return 0


def pipelined_metrics_flood(port: int, connections: int, size: int = 64 * 1024) -> list[socket.socket]:
    """Connections that each send `size` bytes of pipelined GET /metrics and never read."""
    burst = METRICS_REQUEST * (size // len(METRICS_REQUEST))
    conns = []
    for _ in range(connections):
        conn = socket.socket()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it does not read anyway
        conn.settimeout(5)
        conn.connect(("127.0.0.1", port))
        with contextlib.suppress(OSError):  # relay may stop reading: what is sent is sent
            conn.setblocking(False)
            conn.send(burst)
        conns.append(conn)
    return conns


class Slowloris:
    """`count` connections each sending a request head at one byte a second; a connection
    relay closes is opened again (as the attack would)."""

    HEAD = b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.conns: list[tuple[socket.socket, int] | None] = [None] * count
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _open(self) -> tuple[socket.socket, int] | None:
        conn = socket.socket()
        conn.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            conn.connect_ex(("127.0.0.1", self.port))
        return conn, 0

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            for i, entry in enumerate(self.conns):
                if entry is None:
                    self.conns[i] = self._open()
                    continue
                conn, sent = entry
                try:
                    conn.send(self.HEAD[sent:sent + 1])
                    self.conns[i] = (conn, (sent + 1) % len(self.HEAD))
                except BlockingIOError:
                    pass
                except OSError:  # closed by relay: come back
                    conn.close()
                    self.reopened += 1
                    self.conns[i] = self._open()
            self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for entry in self.conns:
            if entry is not None:
                entry[0].close()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
