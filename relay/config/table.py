"""Reading parsed TOML tables: each knows its key path, rejects keys it does not expect,
converts values, and files every problem (at the line of its key) in one Problems list."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any, TypeVar

from relay.config.values import show_value
from relay.errors import ConfigProblem

T = TypeVar("T")


class Problems:
    """Collects problems, each placed on the line of its key (or of the nearest enclosing table)."""

    def __init__(self, lines: dict[str, int]) -> None:
        self.problems: list[ConfigProblem] = []
        self._lines = lines
        self._failed: set[str] = set()

    def add(self, path: str, message: str) -> None:
        self._failed.add(path)
        self.problems.append(ConfigProblem(path, message, self._line_of(path)))

    def failed(self, path: str) -> bool:
        return path in self._failed

    def sorted_problems(self) -> list[ConfigProblem]:
        return sorted(self.problems, key=lambda p: (p.line is None, p.line or 0))

    def _line_of(self, path: str) -> int | None:
        while path:
            if path in self._lines:
                return self._lines[path]
            path = _parent_path(path)
        return None


def _parent_path(path: str) -> str:
    if path.endswith("]"):
        return path[: path.rindex("[")]
    return path[: max(path.rfind("."), 0)]


class Table:
    """One TOML table being read: knows its key path and rejects keys it does not expect."""

    def __init__(
        self, checker: Problems, data: dict[str, Any], path: str, keys: tuple[str, ...]
    ) -> None:
        self.checker = checker
        self.data = data
        self.path = path
        for key in data:
            if key not in keys:
                checker.add(self.key_path(key), _unknown_key_message(key, keys))

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data

    def ok(self, *keys: str) -> bool:
        """True when none of `keys` had a bad value (absent keys are fine: they take defaults)."""
        return not any(self.checker.failed(self.key_path(key)) for key in keys)

    def add(self, key: str, message: str) -> None:
        self.checker.add(self.key_path(key), message)

    def get(self, key: str, convert: Callable[[object], T], default: T) -> T:
        if key not in self.data:
            return default
        try:
            return convert(self.data[key])
        except ValueError as exc:
            self.add(key, str(exc))
            return default

    def require(self, key: str, convert: Callable[[object], T]) -> T | None:
        if key not in self.data:
            self.add(key, "is required")
            return None
        try:
            return convert(self.data[key])
        except ValueError as exc:
            self.add(key, str(exc))
            return None

    def table(self, key: str, keys: tuple[str, ...]) -> Table:
        """The sub-table `key`; empty (all defaults) when absent or not a table."""
        path = self.key_path(key)
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            header = _header(path)
            self.add(key, f"must be a table ([{header}]), got {show_value(value)}")
            value = {}
        return Table(self.checker, value, path, keys)

    def tables(self, key: str, keys: tuple[str, ...]) -> list[Table] | None:
        """The array of tables `key`: [] when absent, None when it is not an array of tables."""
        path = self.key_path(key)
        value = self.data.get(key, [])
        if not isinstance(value, list):
            header = _header(path)
            self.add(key, f"must be an array of tables ([[{header}]]), got {show_value(value)}")
            return None
        result: list[Table] = []
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            if isinstance(item, dict):
                result.append(Table(self.checker, item, item_path, keys))
            else:
                self.checker.add(item_path, f"must be a table, got {show_value(item)}")
        return result if len(result) == len(value) else None


def _header(path: str) -> str:
    """The TOML header of a table path: "listener[0].health" -> "listener.health"."""
    return re.sub(r"\[\d+\]", "", path)


def _unknown_key_message(key: str, keys: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, keys, n=1)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    return "unknown key; expected one of: " + ", ".join(keys)

