"""Parsers for single configuration values: durations and addresses.

Pure functions: no DNS, no sockets. Each raises ValueError with a message meant
for the user; the loader prefixes it with the key path and line.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import math
import re

from relay.config.model import Address

_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# "ms" and "us" before "m" and "s", so that "250ms" is not read as 250 minutes + "s".
_DURATION_PART = r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(us|ms|s|m|h)"
_DURATION_RE = re.compile(f"(?:{_DURATION_PART})+")
_DURATION_PART_RE = re.compile(_DURATION_PART)

_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_PORT_RE = re.compile(r"[0-9]{1,5}")


def show_value(value: object) -> str:
    """A value as the user wrote it in TOML, for "got ..." in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, datetime.date | datetime.time):
        return f"a date/time ({value.isoformat()})"
    return repr(value)


def parse_duration(value: object) -> float:
    """A duration in seconds from a number of seconds or a string like "250ms" or "1m30s"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise ValueError(f"must be a finite duration, got {show_value(value)}")
        if seconds < 0:
            raise ValueError(f"must be a duration >= 0, got {show_value(value)}")
        return seconds
    if isinstance(value, str) and _DURATION_RE.fullmatch(value):
        seconds = sum(
            float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART_RE.findall(value)
        )
        if not math.isfinite(seconds):
            raise ValueError(f"must be a finite duration, got {show_value(value)}")
        return seconds
    # A unitless string ("2") is refused: HAProxy reads it as milliseconds, we would not.
    raise ValueError(
        'must be a duration like "250ms", "2s", "5m" or a number of seconds, '
        f"got {show_value(value)}"
    )


def format_duration(seconds: float) -> str:
    """The shortest natural spelling of a duration, for messages and summaries: 0.05 -> "50ms"."""
    if seconds == 0:
        return "0s"
    if seconds >= 1:
        for unit, size in (("h", 3600), ("m", 60)):
            if seconds % size == 0:
                return f"{int(seconds // size)}{unit}"
        return f"{seconds:g}s"
    for small_unit, small_size in (("ms", 1e-3), ("us", 1e-6)):
        count = seconds / small_size
        if abs(count - round(count)) < 1e-6 and round(count) >= 1:
            return f"{round(count)}{small_unit}"
    return f"{seconds:g}s"


def parse_address(value: object, *, allow_port_zero: bool) -> Address:
    """An unresolved address from "host:port" or "[v6]:port".

    Port 0 (an ephemeral port) only makes sense for an address to listen on.
    """
    if not isinstance(value, str):
        raise ValueError(f'must be a string "host:port", got {show_value(value)}')
    if value.startswith("["):
        host, port_text = _split_bracketed(value)
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ValueError(
                f'missing port: must be "host:port" or "[v6]:port", got {show_value(value)}'
            )
        if ":" in host and not re.fullmatch(r"[0-9A-Fa-f:.]+(%.+)?", host):
            raise ValueError(f'must be "host:port" or "[v6]:port", got {show_value(value)}')
        if ":" in host:
            raise ValueError(
                f'an IPv6 address must be in brackets, like "[::1]:6379", got {show_value(value)}'
            )
        if not host:
            raise ValueError(
                'missing host: must be "host:port" (e.g. "0.0.0.0:6380" for every '
                f"interface), got {show_value(value)}"
            )
        _check_host(host)
    return Address(host, _parse_port(port_text, allow_zero=allow_port_zero))


def _split_bracketed(value: str) -> tuple[str, str]:
    match = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", value)
    if match is None:
        raise ValueError(f'must be "[v6]:port", got {show_value(value)}')
    host, port_text = match.group(1), match.group(2)
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise ValueError(
            f"{show_value(host)} in brackets is not an IPv6 address, got {show_value(value)}"
        ) from None
    if port_text is None:
        raise ValueError(f'missing port: must be "[v6]:port", got {show_value(value)}')
    return host, port_text


def _check_host(host: str) -> None:
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{show_value(host)} is not a valid IPv4 address") from None
        return
    if len(host) > 253 or not _HOSTNAME_RE.fullmatch(host):
        raise ValueError(f"{show_value(host)} is not a valid hostname or IP address")


def _parse_port(text: str, *, allow_zero: bool) -> int:
    low = 0 if allow_zero else 1
    port = int(text) if _PORT_RE.fullmatch(text) else None
    if port is None or port > 65535:
        shown = text if re.fullmatch(r"[0-9]+", text) else show_value(text)
        raise ValueError(f"port must be an integer {low}..65535, got {shown}")
    if port < low:
        raise ValueError("port must be 1..65535 (0 is only allowed for listen addresses), got 0")
    return port
