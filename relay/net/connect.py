"""Non-blocking connect to a backend and the classification of what went wrong."""

from __future__ import annotations

import _socket
import errno
import socket

from relay.net.resolve import SockAddr

REFUSED, TIMEOUT, UNREACHABLE, RESET, DNS, OTHER = (
    "refused", "timeout", "unreachable", "reset", "dns", "other"
)
CONNECT_ERRORS = (REFUSED, TIMEOUT, UNREACHABLE, RESET, DNS, OTHER)

_BY_ERRNO = {
    errno.ECONNREFUSED: REFUSED,
    errno.ETIMEDOUT: TIMEOUT,
    errno.ENETUNREACH: UNREACHABLE,
    errno.EHOSTUNREACH: UNREACHABLE,
    errno.ENETDOWN: UNREACHABLE,
    errno.EHOSTDOWN: UNREACHABLE,
    errno.ECONNRESET: RESET,
    errno.ECONNABORTED: RESET,
    errno.EPIPE: RESET,
}


_STREAM_NONBLOCK = int(socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
_TCP, _NODELAY = socket.IPPROTO_TCP, socket.TCP_NODELAY


def classify(err: int) -> str:
    """Map a connect errno to one of CONNECT_ERRORS."""
    return _BY_ERRNO.get(err, OTHER)


def start_connect(target: SockAddr) -> tuple[_socket.socket, int]:
    """Create a non-blocking socket and start connecting; returns (socket, errno).

    errno is 0 when connected at once, EINPROGRESS when the answer comes later
    (EPOLLOUT), anything else when it failed already. Raises OSError only when
    no socket could be created (e.g. EMFILE).
    """
    # the C socket type: none of the Python-level socket.socket wrapper's costs
    sock = _socket.socket(target.family, _STREAM_NONBLOCK)
    try:
        sock.setsockopt(_TCP, _NODELAY, 1)
        err = sock.connect_ex(target.sockaddr)
    except OSError:
        sock.close()
        raise
    return sock, err

