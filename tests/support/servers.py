"""Small backends for tests, each on 127.0.0.1 port 0 in a background thread."""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections.abc import Callable, Iterator


class EchoServer:
    """Echoes every byte back; passes EOF on as EOF. One selector thread serves all clients."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.sock, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._conns: dict[socket.socket, bytearray] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            for key, mask in self._sel.select(0.5):
                if key.data == "wake":
                    continue
                if key.fileobj is self.sock:
                    self._accept()
                else:
                    self._serve(key.fileobj, mask)  # type: ignore[arg-type]

    def _accept(self) -> None:
        for _ in range(64):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, OSError):
                return
            self.accepted += 1
            conn.setblocking(False)
            self._conns[conn] = bytearray()
            self._sel.register(conn, selectors.EVENT_READ, "conn")

    def _serve(self, conn: socket.socket, mask: int) -> None:
        pending = self._conns[conn]
        try:
            if mask & selectors.EVENT_READ and len(pending) < 1 << 20:
                data = conn.recv(262144)
                if not data:
                    self._flush_and_close(conn)
                    return
                pending += data
            if pending:
                n = conn.send(pending)
                del pending[:n]
        except BlockingIOError:
            pass
        except OSError:
            self._drop(conn)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0)
        self._sel.modify(conn, events, "conn")

    def _flush_and_close(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        with contextlib.suppress(OSError):
            conn.sendall(self._conns[conn])
            conn.shutdown(socket.SHUT_WR)
        self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        self._sel.unregister(conn)
        del self._conns[conn]
        conn.close()

    def close(self) -> None:
        self._stop = True
        self._wake_w.send(b"x")
        self._thread.join(5)
        for conn in list(self._conns):
            self._drop(conn)
        self._sel.close()
        self.sock.close()
        self._wake_r.close()
        self._wake_w.close()


class ThreadServer:
    """Runs handler(conn) in a thread per accepted connection; closes everything on close()."""

    def __init__(self, handler: Callable[[socket.socket], None],
                 family: int = socket.AF_INET, port: int = 0, host: str | None = None) -> None:
        self.handler = handler
        self.sock = socket.socket(family)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if host is None:
            host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.handler(conn)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(5)
        with self._lock:
            for conn in self._conns:
                conn.close()


def reset(conn: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def recv_all(conn: socket.socket, limit: int = 1 << 30) -> bytes:
    chunks = []
    total = 0
    while total < limit:
        data = conn.recv(1 << 20)
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b"".join(chunks)


@contextlib.contextmanager
def serving(server: EchoServer | ThreadServer) -> Iterator[EchoServer | ThreadServer]:
    try:
        yield server
    finally:
        server.close()
