"""host:port handling like Go's net package: split, resolve, listen (loopback only) and dial."""

from __future__ import annotations

import asyncio
import contextlib
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
        return ipaddress.ip_address(host)
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


async def resolve(hostport: str) -> str:
    """Go's net.ResolveTCPAddr(...).String(): ``localhost:1`` -> ``127.0.0.1:1``."""
    try:
        host, port = split_host_port(hostport)
        number = parse_port(port)
        ip = await resolve_host(host)
    except (AddrError, OSError) as exc:
        raise internal(str(exc)) from None
    return join_host_port(ip, number)


def _loopback_for(ip: IPAddress | None) -> IPAddress | None:
    """The address this stand-in binds for ``ip``: wildcards become loopback, other
    non-loopback addresses are refused (it is a test tool: nothing outside the machine)."""
    if ip is None or ip == ipaddress.IPv4Address("0.0.0.0"):
        return ipaddress.IPv4Address("127.0.0.1")
    if ip == ipaddress.IPv6Address("::"):
        return ipaddress.IPv6Address("::1")
    return ip if ip.is_loopback else None


async def listen(hostport: str) -> tuple[socket.socket, str]:
    """A listening, non-blocking socket for ``hostport`` and its bound address as text.

    Raises ApiError 500 with Go's wording, e.g.
    ``listen tcp 127.0.0.1:3310: bind: address already in use``."""
    try:
        host, port_text = split_host_port(hostport)
        port = parse_port(port_text)
        ip = await resolve_host(host)
    except (AddrError, OSError) as exc:
        raise internal(f"listen tcp: {exc}") from None
    wanted = join_host_port(ip, port)
    bind_ip = _loopback_for(ip)
    if bind_ip is None:
        raise internal(f"listen tcp {wanted}: bind: cannot assign requested address "
                       "(this Toxiproxy stand-in only listens on loopback addresses)")
    family = socket.AF_INET6 if bind_ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go does
        sock.bind((str(bind_ip), port))
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise internal(f"listen tcp {wanted}: bind: {_os_text(exc)}") from None
    bound = ipaddress.ip_address(sock.getsockname()[0])
    return sock, join_host_port(bound, sock.getsockname()[1])


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


