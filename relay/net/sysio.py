"""The system calls of a session's copy path and of the accept loop: from relay/net/_sysio.c
where the compiled build made it (setup.py builds it with the mypyc modules), else the same
calls through Python's os and socket modules.

The C versions keep the GIL across each call (every socket here is non-blocking, so none
waits), take positional arguments only, and format an IPv4 client's address without
inet_ntop's printf (bench/NOTES.md, "Profiling the compiled build", has what that saves).
Both raise OSError from errno the same way (BlockingIOError when the socket has nothing to
read, or no room).

    recv_into(fd, buffer) -> int         recv(2); 0 at EOF
    send(fd, data) -> int                send(2) (EPIPE, never SIGPIPE)
    accept(sock) -> (fd, host, port)     accept4(2): the new socket non-blocking, cloexec
"""

from __future__ import annotations

import os
import socket

__all__ = ["NATIVE", "accept", "recv_into", "send"]

try:
    from relay.net._sysio import accept, recv_into, send
except ImportError:

    def recv_into(fd: int, buffer: memoryview | bytearray, /) -> int:
        return os.readv(fd, (buffer,))

    def send(fd: int, data: bytes | memoryview, /) -> int:
        return os.write(fd, data)  # (Python ignores SIGPIPE: EPIPE, as MSG_NOSIGNAL gives)

    def accept(sock: socket.socket, /) -> tuple[int, str, int]:
        fd, addr = sock._accept()  # type: ignore[attr-defined]
        try:
            os.set_blocking(fd, False)
        except OSError:
            os.close(fd)
            raise
        return fd, addr[0], addr[1]  # (IPv6's flowinfo and scope_id dropped)

    NATIVE = False
else:
    NATIVE = True
