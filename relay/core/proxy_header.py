"""The PROXY protocol (HAProxy's proxy-protocol.txt), versions 1 and 2. Pure: bytes in, values out.

Sending: ``encode_v1`` / ``encode_v2`` build the header relay writes as the first bytes to a
backend. Receiving: ``parse`` looks at the bytes a trusted client has sent so far (read with
MSG_PEEK, so nothing past the header is consumed) and says: need more bytes, invalid (with a
reason), or a header of ``length`` bytes carrying the original source and destination.

Sizes are the spec's: a v1 line is at most 107 bytes including CRLF; a v2 header is 16 bytes
plus the length its header states (at most 65,535). A v2 LOCAL header (a health check, or a
proxy speaking for itself) carries no address: the connection's own peer address stands.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final, Literal

V1_MAX: Final = 107
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED: Final = 16
V2_MAX: Final = V2_FIXED + 0xFFFF

Version = Literal["v1", "v2", "any"]

_V2_LOCAL: Final = 0x20
_V2_PROXY: Final = 0x21  # version 2 in the high nibble, command in the low
_AF_INET_STREAM: Final = 0x11
_AF_INET6_STREAM: Final = 0x21
_AF_UNSPEC: Final = 0x00
_V2_ADDR_LEN = {_AF_INET_STREAM: 12, _AF_INET6_STREAM: 36}


@dataclass(frozen=True)
class Header:
    """A complete header: ``length`` bytes to consume; source/destination None for LOCAL/UNKNOWN."""

    length: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None


@dataclass(frozen=True)
class Invalid:
    reason: str


NEED_MORE: Final = None  # parse(): a valid prefix, more bytes needed

ParseResult = Header | Invalid | None


def encode_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """``PROXY TCP4|TCP6 src dst sport dport\\r\\n``; mixed families give ``PROXY UNKNOWN``."""
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    src, dst = _unmapped(src), _unmapped(dst)
    if src.version != dst.version:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {source[1]} {destination[1]}\r\n".encode("ascii")


def encode_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """A binary header: PROXY with both addresses, or LOCAL when either is None."""
    if source is None or destination is None:
        return V2_SIGNATURE + struct.pack("!BBH", _V2_LOCAL, _AF_UNSPEC, 0)
    src, dst = _unmapped(ipaddress.ip_address(source[0])), _unmapped(
        ipaddress.ip_address(destination[0]))
    if src.version != dst.version:  # cannot be said in one family: speak for ourselves
        return V2_SIGNATURE + struct.pack("!BBH", _V2_LOCAL, _AF_UNSPEC, 0)
    family = _AF_INET_STREAM if src.version == 4 else _AF_INET6_STREAM
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return V2_SIGNATURE + struct.pack("!BBH", _V2_PROXY, family, len(body)) + body


def parse(data: bytes, version: Version = "any") -> ParseResult:
    """What the first bytes of a connection say: NEED_MORE, Invalid(reason) or a Header."""
    if not data:
        return NEED_MORE
    if version in ("v2", "any") and data[:1] == V2_SIGNATURE[:1]:
        return _parse_v2(data)
    if version in ("v1", "any") and data[:1] == b"P":
        return _parse_v1(data)
    expected = {"v1": "a v1 header", "v2": "a v2 header", "any": "a PROXY header"}[version]
    return Invalid(f"expected {expected}")


def _parse_v1(data: bytes) -> ParseResult:
    prefix = b"PROXY "
    if not data.startswith(prefix[:len(data)]):
        return Invalid("not a v1 header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data[:V1_MAX]:
            return Invalid("v1 header too long or not ended by CRLF")
        return NEED_MORE
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        return Invalid("v1 header is not ASCII")
    parts = line.split(" ")
    length = end + 2
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return Header(length, None, None)
    if len(parts) != 6 or parts[0] != "PROXY" or parts[1] not in ("TCP4", "TCP6"):
        return Invalid("malformed v1 header")
    try:
        src = ipaddress.ip_address(parts[2])
        dst = ipaddress.ip_address(parts[3])
        sport, dport = _v1_port(parts[4]), _v1_port(parts[5])
    except ValueError:
        return Invalid("malformed v1 address or port")
    want = 4 if parts[1] == "TCP4" else 6
    if src.version != want or dst.version != want or "%" in parts[2] + parts[3]:
        return Invalid(f"v1 addresses do not match {parts[1]}")
    return Header(length, (str(src), sport), (str(dst), dport))


def _v1_port(text: str) -> int:
    # the spec: decimal, no leading zero, 0..65535
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise ValueError(text)
    port = int(text)
    if port > 65535:
        raise ValueError(text)
    return port


def _parse_v2(data: bytes) -> ParseResult:
    head = data[:len(V2_SIGNATURE)]
    if head != V2_SIGNATURE[:len(head)]:
        return Invalid("not a v2 header")
    if len(data) < V2_FIXED:
        return NEED_MORE
    command, family, size = struct.unpack_from("!BBH", data, 12)
    if command >> 4 != 2:
        return Invalid("v2 header: unsupported version")
    if command not in (_V2_LOCAL, _V2_PROXY):
        return Invalid("v2 header: unknown command")
    length = V2_FIXED + size
    if len(data) < length:
        return NEED_MORE
    if command == _V2_LOCAL:
        return Header(length, None, None)
    need = _V2_ADDR_LEN.get(family)
    if need is None:  # UNSPEC, UDP, UNIX: nothing relay can use; the spec says accept, ignore
        if family >> 4 in (0, 1, 2, 3) and family & 0x0F in (0, 1, 2):
            return Header(length, None, None)
        return Invalid("v2 header: unknown address family")
    if size < need:
        return Invalid("v2 header: address block too short")
    body = data[V2_FIXED:V2_FIXED + need]
    if family == _AF_INET_STREAM:
        src: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(body[0:4])
        dst: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(body[4:8])
        sport, dport = struct.unpack_from("!HH", body, 8)
    else:
        src, dst = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])
        sport, dport = struct.unpack_from("!HH", body, 32)
    return Header(length, (str(src), sport), (str(dst), dport))


def _unmapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
              ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
