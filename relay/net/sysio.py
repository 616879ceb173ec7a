"""The system calls of a session's copy path and of the accept loop: from relay/net/_sysio.c
where the compiled build made it (setup.py builds it with the mypyc modules), else the same
calls through Python's os and socket modules.

The C versions keep the GIL across each call that cannot wait (every socket here is
non-blocking; recv and send pass MSG_DONTWAIT besides, where the fallback's os calls would
wait on a blocking socket with the GIL released; epoll_wait releases it for a wait that
may block), take positional arguments only, and format an
IPv4 client's address without inet_ntop's printf (bench/NOTES.md, "Profiling the compiled
build", has what that saves).
Both raise OSError from errno the same way (BlockingIOError when the socket has nothing to
read, or no room).

    recv_into(fd, buffer) -> int          recv(2); 0 at EOF
    send(fd, data) -> int                 send(2) (EPIPE, never SIGPIPE)
    accept(sock, fd) -> (client, host, port)    accept4(2) on sock (fd its number): the
                                          client a Sock, non-blocking, close-on-exec; None
                                          if none waits
    epoll_ctl(epoll, epfd, op, fd, events)          register (EPOLL_CTL_ADD) or modify
    epoll_wait(epoll, epfd, timeout, maxevents)     [(fd, events), ...], as epoll.poll()
                                          (a timeout beyond INT_MAX ms waits that long; a
                                          signal: its handlers run, the C version gives [])
    linger_reset(sock, fd)                SO_LINGER 0: close() sends RST, not FIN
    so_error(sock, fd) -> int             getsockopt(2) SO_ERROR: how a connect ended
    shutdown(sock, fd, how)               shutdown(2)
    close(sock)                           sock.close() (in C without a method lookup)
    fileno(sock) -> int                   sock.fileno() (likewise)
    connect(family, address, nodelay) -> (sock, errno)   a non-blocking TCP socket (with
                                          TCP_NODELAY if nodelay: a session's, not a
                                          check's), its connect(2) started (errno 0, EINPROGRESS, or
                                          why it failed at once: as socket.connect_ex);
                                          OSError only when no socket could be made

A Sock (what accept and connect make) is, in C, a bare number with the socket methods relay
uses on a session's sockets; in the fallback a socket.socket.

Where a call takes an object and its number (a socket, a select.epoll), the C version uses
the number and the fallback the object.
"""

from __future__ import annotations

import _socket
import errno
import os
import select
import socket
import struct
from typing import Final, Protocol, cast

__all__ = ["EPOLL_CTL_ADD", "EPOLL_CTL_DEL", "EPOLL_CTL_MOD", "NATIVE", "Sock", "accept",
           "close", "connect", "epoll_ctl", "epoll_wait", "fileno", "linger_reset", "recv_into", "send",
           "shutdown", "so_error", "socket_connect"]


class Sock(Protocol):
    """What relay does with a session's sockets, the client's and the backend's: the C
    accept's and connect's Socket, or the fallback's socket.socket."""

    def fileno(self) -> int: ...

    def close(self) -> None: ...

    def shutdown(self, how: int, /) -> None: ...

    def getsockopt(self, level: int, option: int, /) -> int: ...

    def send(self, data: bytes, /) -> int: ...

    def recv(self, size: int, flags: int = 0, /) -> bytes: ...

    def getsockname(self) -> tuple[str, int] | tuple[str, int, int, int]: ...


EPOLL_CTL_ADD: Final = 1  # <sys/epoll.h> (Linux); the select module does not export these
EPOLL_CTL_DEL: Final = 2
EPOLL_CTL_MOD: Final = 3
# the longest wait epoll_wait(2) takes, INT_MAX ms (epoll.poll raises OverflowError beyond:
# a timer 25 days away would end the loop)
LONGEST_WAIT: Final = 2_147_483.0

_STREAM_NONBLOCK: Final = int(socket.SOCK_STREAM | socket.SOCK_NONBLOCK)


def socket_connect(family: int, address: tuple[str, int] | tuple[str, int, int, int],
                   nodelay: bool, /) -> tuple[_socket.socket, int]:
    """connect's fallback, and for callers that need a whole socket.socket (its recv, its
    addresses): the same socket and connect through the socket module."""
    sock = _socket.socket(family, _STREAM_NONBLOCK)
    try:
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(address)
    except BaseException:  # (a bad address raises TypeError or OverflowError: closed too)
        sock.close()
        raise
    return sock, err


try:
    from relay.net._sysio import (
        accept,
        close,
        connect,
        epoll_ctl,
        epoll_wait,
        fileno,
        linger_reset,
        recv_into,
        send,
        shutdown,
        so_error,
    )
except ImportError:

    def recv_into(fd: int, buffer: memoryview | bytearray, /) -> int:
        return os.readv(fd, (buffer,))

    send = os.write  # (Python ignores SIGPIPE: EPIPE, as MSG_NOSIGNAL gives)

    # the C socket type's own family member: socket.socket's `family` property makes an
    # AddressFamily enum from it, about 1 µs per accept, pure
    _family: Final = _socket.socket.family.__get__

    def accept(sock: _socket.socket, fd: int, /) -> tuple[Sock, str, int] | None:
        try:
            client, addr = sock._accept()  # type: ignore[attr-defined]
        except BlockingIOError:
            return None
        conn: _socket.socket | None = None
        try:
            os.set_blocking(client, False)
            conn = _socket.socket(_family(sock), _STREAM_NONBLOCK, 0, client)
        except BaseException:
            if conn is None:  # (else the socket object holds the number and closes it)
                os.close(client)
            raise
        return conn, addr[0], addr[1]  # (IPv6's flowinfo and scope_id dropped)

    def epoll_ctl(epoll: select.epoll, epfd: int, op: int, fd: int, events: int, /) -> None:
        if op == EPOLL_CTL_ADD:
            epoll.register(fd, events)
        elif op == EPOLL_CTL_MOD:
            epoll.modify(fd, events)
        elif op == EPOLL_CTL_DEL:
            epoll.unregister(fd)
        else:
            raise OSError(errno.EINVAL, f"epoll_ctl: unknown op {op}")

    def epoll_wait(epoll: select.epoll, epfd: int, timeout: float, maxevents: int,
                   /) -> list[tuple[int, int]]:
        if timeout > LONGEST_WAIT:
            timeout = LONGEST_WAIT
        return epoll.poll(timeout, maxevents)

    _LINGER_RESET: Final = struct.pack("ii", 1, 0)  # struct linger: l_onoff 1, l_linger 0

    def linger_reset(sock: Sock, fd: int, /) -> None:
        # (every socket is a socket.socket here: accept and connect below make them)
        cast(_socket.socket, sock).setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)

    def so_error(sock: Sock, fd: int, /) -> int:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def shutdown(sock: Sock, fd: int, how: int, /) -> None:
        sock.shutdown(how)

    def close(sock: Sock, /) -> None:
        sock.close()

    def fileno(sock: Sock, /) -> int:
        return sock.fileno()

    connect = socket_connect

    NATIVE = False
else:
    NATIVE = True
