"""host:port handling like Go's net package: split, resolve, listen (loopback only) and dial."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket

from .errors import internal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddrError(Exception):
    """Go's net.AddrError: ``address <addr>: <why>``."""

    def __init__(self, addr: str, why: str) -> None:
        super().__init__(f"address {addr}: {why}")


def split_host_port(hostport: str) -> tuple[str, str]:
    """Go's net.SplitHostPort."""
    i = hostport.rfind(":")
    if i < 0:
        raise AddrError(hostport, "missing port in address")
    j = k = 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise AddrError(hostport, "missing ']' in address")
        if end + 1 == len(hostport):
            raise AddrError(hostport, "missing port in address")
        if end + 1 != i:
            why = "too many colons" if hostport[end + 1] == ":" else "missing port"
            raise AddrError(hostport, f"{why} in address")
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            raise AddrError(hostport, "too many colons in address")
    if "[" in hostport[j:]:
        raise AddrError(hostport, "unexpected '[' in address")
    if "]" in hostport[k:]:
        raise AddrError(hostport, "unexpected ']' in address")
    return host, hostport[i + 1 :]


def parse_port(port: str) -> int:
    if port == "":
        return 0
    if port.lstrip("+-").isdigit():
        number = int(port)
        if not 0 <= number <= 0xFFFF:
            raise AddrError(port, "invalid port")
        return number
    try:
        return socket.getservbyname(port, "tcp")
    except OSError:
        raise AddrError(port, "unknown port") from None


def join_host_port(ip: IPAddress | None, port: int) -> str:
    if ip is None:
        return f":{port}"
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


async def resolve_host(host: str) -> IPAddress | None:
    """The address a host name stands for, IPv4 preferred like Go; None for ``""``."""
    if host == "":
        return None
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(host)
        mapped = ip.ipv4_mapped if ip.version == 6 else None
        return mapped or ip  # Go treats ::ffff:a.b.c.d as the IPv4 address it maps
    if host.lower() == "localhost":
        return ipaddress.IPv4Address("127.0.0.1")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        raise OSError(f"lookup {host}: no such host") from None
    ips = [ipaddress.ip_address(info[4][0]) for info in infos]
    ips.sort(key=lambda ip: ip.version)
    if not ips:
        raise OSError(f"lookup {host}: no such host")
    return ips[0]


def _split(hostport: str) -> tuple[str, int]:
    """Host and port number of ``hostport``; ``""`` is host ``""``, port 0 (Go's resolver
    skips SplitHostPort for an empty address, so it means "any address, any port")."""
    if hostport == "":
        return "", 0
    host, port = split_host_port(hostport)
    return host, parse_port(port)


async def resolve(hostport: str) -> str:
    """Go's net.ResolveTCPAddr(...).String(): ``localhost:1`` -> ``127.0.0.1:1``, ``""`` ->
    ``:0``."""
    try:
        host, number = _split(hostport)
        ip = await resolve_host(host)
    except (AddrError, OSError) as exc:
        raise internal(str(exc)) from None
    return join_host_port(ip, number)


_WILDCARDS = (None, ipaddress.IPv4Address("0.0.0.0"), ipaddress.IPv6Address("::"))
_LOOPBACK4, _LOOPBACK6 = ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")
_BIND_TRIES = 20  # a random port free on ::1 can be taken on 127.0.0.1: try another


async def listen(hostport: str) -> tuple[list[socket.socket], str]:
    """Listening, non-blocking sockets for ``hostport`` and the bound address as text.

    Go listens on a wildcard (``""``, ``:P``, ``0.0.0.0:P``, ``[::]:P``) with one dual-stack
    socket and reports ``[::]:P``. This stand-in stays on loopback: it binds 127.0.0.1:P and
    [::1]:P on the same port and reports ``[::]:P`` too (``0.0.0.0:P`` where the machine has
    no IPv6, as Go then does). Other non-loopback addresses are refused.

    Raises ApiError 500 with Go's wording, e.g.
    ``listen tcp 127.0.0.1:3310: bind: address already in use``."""
    try:
        host, port = _split(hostport)
        ip = await resolve_host(host)
    except (AddrError, OSError) as exc:
        raise internal(f"listen tcp: {exc}") from None
    wanted = join_host_port(ip, port)
    if ip in _WILDCARDS:
        return _listen_wildcard(wanted, port)
    assert ip is not None
    if not ip.is_loopback:
        raise internal(f"listen tcp {wanted}: bind: cannot assign requested address "
                       "(this Toxiproxy stand-in only listens on loopback addresses)")
    try:
        sock = _bind(ip, port)
    except OSError as exc:
        raise internal(f"listen tcp {wanted}: bind: {_os_text(exc)}") from None
    return [sock], join_host_port(ip, sock.getsockname()[1])


def _listen_wildcard(wanted: str, port: int) -> tuple[list[socket.socket], str]:
    for _ in range(_BIND_TRIES if port == 0 else 1):
        try:
            six = _bind(_LOOPBACK6, port)
        except OSError as exc:
            if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                raise internal(f"listen tcp {wanted}: bind: {_os_text(exc)}") from None
            break  # no IPv6 here: Go would listen on IPv4 only and say 0.0.0.0
        bound = six.getsockname()[1]
        try:
            four = _bind(_LOOPBACK4, bound)
        except OSError as exc:
            six.close()
            if port == 0 and exc.errno == errno.EADDRINUSE:
                continue
            raise internal(f"listen tcp {wanted}: bind: {_os_text(exc)}") from None
        return [six, four], join_host_port(ipaddress.IPv6Address("::"), bound)
    else:
        raise internal(f"listen tcp {wanted}: bind: address already in use")
    try:
        four = _bind(_LOOPBACK4, port)
    except OSError as exc:
        raise internal(f"listen tcp {wanted}: bind: {_os_text(exc)}") from None
    return [four], join_host_port(ipaddress.IPv4Address("0.0.0.0"), four.getsockname()[1])


def _bind(ip: IPAddress, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                         socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go does
        if ip.version == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((str(ip), port))
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _os_text(exc: OSError) -> str:
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]


async def dial(hostport: str) -> socket.socket:
    """A connected, non-blocking TCP socket to ``hostport`` (tries every address)."""
    host, port_text = split_host_port(hostport)
    port = parse_port(port_text)
    loop = asyncio.get_running_loop()
    try:
        ip = ipaddress.ip_address(host or "127.0.0.1")
        targets = [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, str(ip))]
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        targets = [(info[0], info[4][0]) for info in infos]
    error: OSError = OSError(f"dial tcp {hostport}: no addresses")
    for family, address in targets:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, (address, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Go's default
            return sock
        except OSError as exc:
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
    raise error


