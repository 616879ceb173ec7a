"""Locating keys in TOML source text, since tomllib does not report lines: the line of
each key path, and the line of a syntax error."""

from __future__ import annotations

import re

from relay.errors import ConfigProblem

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_SYNTAX_LINE_RE = re.compile(r"\(at line (\d+), column \d+\)")


def syntax_problem(message: str, text: str) -> ConfigProblem:
    match = _SYNTAX_LINE_RE.search(message)
    if match:
        line: int | None = int(match.group(1))
    elif "end of document" in message:
        line = text.rstrip("\n").count("\n") + 1
    else:
        line = None
    return ConfigProblem("", f"invalid TOML: {message}", line)


def locate_lines(text: str) -> dict[str, int]:
    """Map key paths ("listener[1].health.rise") and table paths to their line in `text`.

    A scanner, not a parser: the text is already known to be valid TOML. It follows
    headers, counts [[array]] tables, and skips the inside of multi-line strings and
    arrays so that a line in them is not taken for a header or a key.
    """
    lines: dict[str, int] = {}
    counts: dict[tuple[str, ...], int] = {}  # array-of-tables header -> tables seen so far
    table_path = ""
    open_string: str | None = None  # closing delimiter of a multi-line string we are in
    depth = 0  # brackets and braces still open
    for lineno, line in enumerate(text.split("\n"), start=1):
        if open_string is not None or depth > 0:
            open_string, depth = _scan_value(line, 0, open_string, depth)
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            is_array = stripped.startswith("[[")
            parsed = _parse_key(stripped, 2 if is_array else 1)
            if parsed is None:
                continue
            key = tuple(parsed[0])
            if is_array:
                counts[key] = counts.get(key, 0) + 1
                for nested in [k for k in counts if len(k) > len(key) and k[: len(key)] == key]:
                    del counts[nested]  # a new [[listener]] restarts its [[listener.backend]]s
            table_path = _table_path(key, counts)
            lines.setdefault(table_path, lineno)
            continue
        parsed = _parse_key(stripped, 0)
        if parsed is None:
            continue
        parts, end = parsed
        if not stripped.startswith("=", end):
            continue
        path = table_path
        for part in parts:  # a dotted key also places the tables it opens
            path = f"{path}.{part}" if path else part
            lines.setdefault(path, lineno)
        open_string, depth = _scan_value(stripped, end + 1, None, 0)
    return lines


def _table_path(key: tuple[str, ...], counts: dict[tuple[str, ...], int]) -> str:
    parts: list[str] = []
    for end in range(1, len(key) + 1):
        name = key[end - 1]
        count = counts.get(key[:end])
        parts.append(f"{name}[{count - 1}]" if count else name)
    return ".".join(parts)


def _parse_key(text: str, pos: int) -> tuple[list[str], int] | None:
    """A (dotted) key starting at `pos`: its parts and the position after it."""
    parts: list[str] = []
    while True:
        pos = _skip_blanks(text, pos)
        if text.startswith(('"', "'"), pos):
            quote = text[pos]
            end = _find_closing(text, pos + 1, quote)
            if end < 0:
                return None
            parts.append(text[pos + 1 : end])
            pos = end + 1
        else:
            match = _BARE_KEY_RE.match(text, pos)
            if match is None:
                return None
            parts.append(match.group())
            pos = match.end()
        pos = _skip_blanks(text, pos)
        if not text.startswith(".", pos):
            return parts, pos
        pos += 1


def _skip_blanks(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _scan_value(text: str, pos: int, open_string: str | None, depth: int) -> tuple[str | None, int]:
    """Scan a value (or its continuation line); return the open multi-line string and depth."""
    while pos < len(text):
        if open_string is not None:
            end = _find_closing(text, pos, open_string)
            if end < 0:
                return open_string, depth
            pos = end + len(open_string)
            open_string = None
            continue
        char = text[pos]
        if char == "#":
            break
        if char in "\"'":
            if text.startswith(char * 3, pos):
                open_string = char * 3
                pos += 3
                continue
            end = _find_closing(text, pos + 1, char)
            pos = end + 1 if end >= 0 else len(text)
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(depth - 1, 0)
        pos += 1
    return open_string, depth


def _find_closing(text: str, pos: int, delimiter: str) -> int:
    escapes = delimiter.startswith('"')  # basic strings have backslash escapes, literal ones not
    while pos < len(text):
        if escapes and text[pos] == "\\":
            pos += 2
            continue
        if text.startswith(delimiter, pos):
            return pos
        pos += 1
    return -1

