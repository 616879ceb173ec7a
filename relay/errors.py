"""Errors a user can cause: values with a message for the user, printed without a traceback."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration file, located by key path and (where known) line."""

    path: str  # key path, e.g. "listener[0].health.rise"; "" for the whole file
    message: str  # e.g. "must be an integer >= 1, got 0"
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        if self.path:
            return f"relay: {where}: {self.path}: {self.message}"
        return f"relay: {where}: {self.message}"


class ConfigError(Exception):
    """A configuration that cannot be used; carries every problem found, not just the first."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [p.render(self.source) for p in self.problems]


class UnknownName(LookupError):
    """An operator named a listener or backend that the running configuration lacks."""
