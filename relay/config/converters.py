"""Value converters for config keys: each returns the typed value or raises
ValueError(message), the message saying what the key must be and what it got."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from typing import TypeVar

from relay.config.model import HEDGE_AUTO, Address
from relay.config.values import parse_address, parse_duration, show_value
from relay.core.access import parse_network

S = TypeVar("S", bound=str)


def integer(minimum: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return value
        raise ValueError(f"must be an integer >= {minimum}, got {show_value(value)}")

    return convert


def number(minimum: float, maximum: float | None = None) -> Callable[[object], float]:
    def convert(value: object) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            top = math.inf if maximum is None else maximum
            if math.isfinite(number) and minimum <= number <= top:
                return number
        if maximum is None:
            raise ValueError(f"must be a number >= {minimum}, got {show_value(value)}")
        raise ValueError(
            f"must be a number from {minimum:g} to {maximum:g}, got {show_value(value)}"
        )

    return convert


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"must be true or false, got {show_value(value)}")


def choice(options: tuple[S, ...]) -> Callable[[object], S]:
    def convert(value: object) -> S:
        for option in options:
            if value == option and isinstance(value, str):
                return option
        listed = ", ".join(f'"{option}"' for option in options)
        message = f"must be one of {listed}, got {show_value(value)}"
        if isinstance(value, str):
            close = difflib.get_close_matches(value, options, n=1)
            if close:
                message += f' (did you mean "{close[0]}"?)'
        raise ValueError(message)

    return convert


def duration(*, positive: bool = False) -> Callable[[object], float]:
    def convert(value: object) -> float:
        seconds = parse_duration(value)
        if positive and seconds <= 0:
            raise ValueError(f"must be a duration > 0, got {show_value(value)}")
        return seconds

    return convert


def hedge(value: object) -> float | None:
    if value == "auto":
        return HEDGE_AUTO
    try:
        return duration_or_off(positive=True)(value)
    except ValueError:
        raise ValueError('must be "auto", "off" or a duration like "20ms", '
                         f"got {show_value(value)}") from None


def duration_or_off(*, positive: bool = False) -> Callable[[object], float | None]:
    parse = duration(positive=positive)

    def convert(value: object) -> float | None:
        if value == "off":
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return parse(value)
        try:
            return parse(value)
        except ValueError:
            raise ValueError(
                'must be "off" or a duration like "250ms", "2s", "5m" or a number of seconds, '
                f"got {show_value(value)}"
            ) from None

    return convert


MAX_WORKERS = 256


def workers(value: object) -> int | None:
    if value == "auto":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS:
        return value
    raise ValueError(f'must be an integer from 1 to {MAX_WORKERS} or "auto", '
                     f"got {show_value(value)}")


def string(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"must be a string, got {show_value(value)}")


def non_empty_string(value: object) -> str:
    if string(value):
        return str(value)
    raise ValueError("must not be empty")


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # names appear in admin URLs and metric labels


def name(value: object) -> str:
    text = non_empty_string(value)
    if not _NAME_RE.fullmatch(text):
        raise ValueError(
            'must start with a letter or digit and hold only letters, digits, "_", "." and "-" '
            f"(names are used in URLs and metric labels), got {show_value(text)}"
        )
    return text


def listen_address(value: object) -> Address:
    return parse_address(value, allow_port_zero=True)


def backend_address(value: object) -> Address:
    return parse_address(value, allow_port_zero=False)


def networks(value: object) -> tuple[str, ...]:
    """A list of CIDRs (or single addresses), kept as normalised text."""
    if not isinstance(value, list):
        raise ValueError(f"must be a list of CIDR strings, got {show_value(value)}")
    networks: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"must be a list of CIDR strings, got {show_value(item)} in it")
        try:
            networks.append(str(parse_network(item)))
        except ValueError:
            raise ValueError(f"{item!r} is not a CIDR such as \"10.0.0.0/8\" or \"::1/128\" "
                             "(host bits must be zero)") from None
    return tuple(networks)


def utf8_bytes(value: object) -> bytes:
    return string(value).encode("utf-8")


def http_path(value: object) -> str:
    path = string(value)
    if not path.startswith("/"):
        raise ValueError(f'must start with "/", got {show_value(path)}')
    if any(not "!" <= char <= "~" for char in path):
        raise ValueError(
            "must be printable ASCII without spaces (percent-encode other characters), "
            f"got {show_value(path)}"
        )
    return path


# --- locating keys in the source text (tomllib does not report lines) --------------------
