"""Just enough of Go's encoding/json to answer like the Go server.

Decoding: only the first JSON value of a body counts (trailing bytes are ignored), object keys
match struct fields case-insensitively (the last duplicate wins), ``null`` leaves a field as it
was, and a value of the wrong type is an error worded like Go's. Encoding: compact, with
``<``, ``>`` and ``&`` escaped, and float32 values printed in their shortest form.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class DecodeError(Exception):
    """A body that does not decode; the message is Go's error text."""


class GoObject(dict[str, Any]):
    """A decoded JSON object: lower-cased keys (the last duplicate wins), and ``pairs``, every
    key and value in document order, for decoding in place as Go does (each pair in turn)."""

    pairs: list[tuple[str, Any]]


def _fold_keys(pairs: list[tuple[str, Any]]) -> GoObject:
    obj = GoObject((key.lower(), value) for key, value in pairs)
    obj.pairs = pairs
    return obj


def pairs(obj: dict[str, Any]) -> list[tuple[str, Any]]:
    """The key/value pairs of a decoded object in document order, keys lower-cased."""
    items = obj.pairs if isinstance(obj, GoObject) else list(obj.items())
    return [(key.lower(), value) for key, value in items]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


class GoFloat(float):
    """A JSON number with a fraction or exponent, keeping its text (Go's errors quote it)."""

    literal: str


def _parse_float(text: str) -> GoFloat:
    number = GoFloat(text)
    number.literal = text
    return number


_DECODER = json.JSONDecoder(object_pairs_hook=_fold_keys, parse_constant=_reject_constant,
                            parse_float=_parse_float)
_WHITESPACE = " \t\n\r"


def decode(body: bytes) -> Any:
    """The first JSON value in ``body``; objects become dicts with lower-cased keys."""
    text = body.decode("utf-8", "replace")
    start = len(text) - len(text.lstrip(_WHITESPACE))
    if start == len(text):
        raise DecodeError("EOF")
    try:
        value, _end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise DecodeError(_describe(exc, text)) from None
    except ValueError as exc:
        raise DecodeError(str(exc)) from None
    return value


def _describe(exc: json.JSONDecodeError, text: str) -> str:
    if exc.pos >= len(text.rstrip(_WHITESPACE)):
        return "unexpected EOF"
    char = text[exc.pos]
    context = {
        "Expecting value": "looking for beginning of value",
        "Expecting property name enclosed in double quotes":
            "looking for beginning of object key string",
        "Expecting ':' delimiter": "after object key",
        "Expecting ',' delimiter": "after object key:value pair",
    }.get(exc.msg, "in string literal" if "control character" in exc.msg else "")
    quoted = "'\\''" if char == "'" else f"'{char}'"
    return f"invalid character {quoted} {context}".rstrip()


def kind(value: Any) -> str:
    """The JSON kind of a decoded value, as Go names it in type errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def type_error(value: Any, target: str, go_type: str, literal: bool = False) -> DecodeError:
    """Go's UnmarshalTypeError text; ``target`` is e.g. ``Go struct field Proxy.name``."""
    what = kind(value)
    if literal and what == "number":
        what = f"number {getattr(value, 'literal', None) or json.dumps(value)}"
    return DecodeError(f"json: cannot unmarshal {what} into {target} of type {go_type}")


def field(obj: dict[str, Any], name: str, owner: str, go_type: str) -> Any:
    """The value of struct field ``name`` checked against ``go_type``; None if null/absent.

    go_type is one of ``string``, ``bool``, ``float32``, ``int64``, ``int``."""
    return check(obj.get(name), f"Go struct field {owner}.{name}", go_type)


def check(value: Any, target: str, go_type: str) -> Any:
    """``value`` checked against ``go_type`` (as ``field``); None if null."""
    if value is None:
        return None
    if go_type == "string":
        if isinstance(value, str):
            return value
    elif go_type == "bool":
        if isinstance(value, bool):
            return value
    elif isinstance(value, bool) or not isinstance(value, int | float):
        pass
    elif go_type == "float32":
        try:
            return to_float32(float(value))
        except OverflowError:
            raise type_error(value, target, go_type, literal=True) from None
    elif isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        return value
    else:
        raise type_error(value, target, go_type, literal=True)
    raise type_error(value, target, go_type)


def to_float32(value: float) -> float:
    """``value`` rounded to float32; OverflowError if out of its range (as Go refuses it)."""
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    if math.isinf(result) and not math.isinf(value):
        raise OverflowError(value)
    return result


def float32_value(value: float) -> int | float:
    """A float32 as Go's encoder prints it: shortest form, integral values without ``.0``."""
    if math.isnan(value) or math.isinf(value):
        return 0
    text = repr(value)
    for digits in range(1, 10):
        candidate = f"{value:.{digits}g}"
        if to_float32(float(candidate)) == value:
            text = candidate
            break
    number = float(text)
    return int(number) if number.is_integer() and abs(number) < 1e21 else number


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
               "\u2028": "\\u2028", "\u2029": "\\u2029"}


def dumps(value: Any) -> bytes:
    """Compact JSON as Go's json.Marshal writes it."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if any(char in text for char in _GO_ESCAPES):
        text = "".join(_GO_ESCAPES.get(char, char) for char in text)
    return text.encode("utf-8")
