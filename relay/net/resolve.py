"""Configured host:port addresses as socket addresses (the DNS edge), and listening on them."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from relay.config.model import Address


@dataclass(frozen=True)
class SockAddr:
    family: int
    sockaddr: tuple[str, int] | tuple[str, int, int, int]

    @property
    def text(self) -> str:
        host, port = self.sockaddr[0], self.sockaddr[1]
        return f"[{host}]:{port}" if self.family == socket.AF_INET6 else f"{host}:{port}"


class ResolveError(Exception):
    pass


def listening_socket(address: SockAddr, backlog: int) -> tuple[socket.socket, str]:
    """A bound, listening, non-blocking socket and the address it really got (port 0)."""
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address.sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    host, port = sock.getsockname()[:2]
    return sock, f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


def resolve(address: Address, *, passive: bool = False) -> SockAddr:
    """First stream address of host:port; IPv4 preferred for names that have both."""
    flags = socket.AI_PASSIVE if passive else 0
    try:
        infos = socket.getaddrinfo(address.host, address.port, 0, socket.SOCK_STREAM, 0, flags)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveError(f"cannot resolve {address.host!r}: {exc}") from None
    infos.sort(key=lambda info: 0 if info[0] == socket.AF_INET else 1)
    family, _, _, _, sockaddr = infos[0]
    return SockAddr(int(family), sockaddr)  # type: ignore[arg-type]


def resolve_every(address: Address) -> tuple[SockAddr, ...]:
    """Every stream address of host:port (DNS discovery), each once, in a stable order."""
    try:
        infos = socket.getaddrinfo(address.host, address.port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveError(f"cannot resolve {address.host!r}: {exc}") from None
    found = {SockAddr(int(family), sockaddr): None  # type: ignore[arg-type]
             for family, _, _, _, sockaddr in infos}
    return tuple(sorted(found, key=lambda a: (a.family != socket.AF_INET, a.text)))
