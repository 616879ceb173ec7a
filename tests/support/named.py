"""A backend that says its name: "PING" gets "+PONG" while healthy ("-DOWN" otherwise), any
other line gets the backend's name; the connection stays open until the client closes it."""

from __future__ import annotations

import socket

from tests.support.servers import ThreadServer


class Named:
    """A backend that can be stopped (port refused), restarted on the same port, or made to
    fail its health checks while its sessions stay open."""

    def __init__(self, name: str, port: int = 0, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.healthy = True
        self.server: ThreadServer | None = None
        self.port = port
        self.start()

    def _handle(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            for line in reader:
                if line.strip() == b"PING":
                    conn.sendall(b"+PONG\r\n" if self.healthy else b"-DOWN\r\n")
                else:
                    conn.sendall(self.name.encode() + b"\n")
        finally:
            reader.close()

    def start(self) -> None:
        self.server = ThreadServer(self._handle, port=self.port, host=self.host)
        self.port = self.server.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"WHO\n")
        reader = conn.makefile("rb")
        try:
            return reader.readline().decode().strip()
        finally:
            reader.close()


