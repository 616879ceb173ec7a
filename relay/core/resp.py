"""RESP2 (Redis protocol) encoding and a bounded parser. Pure.

A sentinel or a Redis server is untrusted input here: every length is capped and
nesting is limited, so a hostile or broken peer costs bounded memory and time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

MAX_BULK = 64 * 1024  # one bulk string
MAX_ELEMENTS = 4096  # one array
MAX_DEPTH = 4  # ROLE of a master: [role, offset, [[ip, port, offset], ...]]
MAX_LINE = 1024  # a simple string, error or length line

class ProtocolError(ValueError):
    """The peer does not speak RESP within our limits."""


@dataclass(frozen=True)
class RespError:
    """An error reply (-ERR ...), a value, not an exception: the exchange goes on."""

    message: str


RespValue: TypeAlias = "str | int | bytes | list[RespValue] | RespError | None"


def encode(*args: str | bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse(buf: bytes, pos: int = 0, depth: int = 0) -> tuple[RespValue, int] | None:
    """The value starting at `pos` and the position after it; None while incomplete.
    Raises ProtocolError on anything outside RESP2 or the limits."""
    end = buf.find(b"\r\n", pos, pos + MAX_LINE + 2)
    if end < 0:
        if len(buf) - pos > MAX_LINE:
            raise ProtocolError("line too long")
        return None
    kind, line = buf[pos:pos + 1], buf[pos + 1:end]
    after = end + 2
    if kind == b"+":
        return line.decode("utf-8", "replace"), after
    if kind == b"-":
        return RespError(line.decode("utf-8", "replace")), after
    if kind == b":":
        return _integer(line), after
    if kind == b"$":
        size = _integer(line)
        if size == -1:
            return None, after
        if not 0 <= size <= MAX_BULK:
            raise ProtocolError(f"bulk string of {size} bytes")
        if len(buf) < after + size + 2:
            return None
        if buf[after + size:after + size + 2] != b"\r\n":
            raise ProtocolError("bulk string not followed by CRLF")
        return buf[after:after + size], after + size + 2
    if kind == b"*":
        count = _integer(line)
        if count == -1:
            return None, after
        if not 0 <= count <= MAX_ELEMENTS:
            raise ProtocolError(f"array of {count} elements")
        if depth >= MAX_DEPTH:
            raise ProtocolError("arrays nested too deep")
        items: list[RespValue] = []
        for _ in range(count):
            parsed = parse(buf, after, depth + 1)
            if parsed is None:
                return None
            value, after = parsed
            items.append(value)
        return items, after
    raise ProtocolError(f"unknown type byte {kind!r}")


def _integer(line: bytes) -> int:
    if not line or len(line) > 20 or not line.lstrip(b"-").isdigit():
        raise ProtocolError(f"bad integer {line[:32]!r}")
    return int(line)


def text(value: RespValue) -> str | None:
    """A bulk or simple string as text; None for anything else."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


__all__ = ["ProtocolError", "RespError", "RespValue", "encode", "parse", "text"]
