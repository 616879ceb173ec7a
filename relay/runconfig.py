"""A configuration made ready to run: validated, its addresses resolved, its token read.

Used at start (`relay run`) and by SIGHUP reloads; every failure is a ConfigError.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.config import Config, load_config
from relay.errors import ConfigError, ConfigProblem
from relay.net.resolve import ResolveError, SockAddr, resolve


@dataclass(frozen=True)
class RunConfig:
    config: Config
    resolved: dict[str, SockAddr]  # str(Address) -> socket address
    admin_token: str | None


def prepare(path: str) -> RunConfig:
    config = load_config(path)
    return RunConfig(config, resolve_all(config), read_token(config))


def resolve_all(config: Config) -> dict[str, SockAddr]:
    """Resolve every listen (admin's too) and backend address; unresolvable ones are
    ConfigErrors."""
    resolved: dict[str, SockAddr] = {}
    problems: list[ConfigProblem] = []
    wanted = [("admin.listen", config.admin.listen, True)]
    wanted += [(f"listener[{i}].listen", lc.listen, True) for i, lc in enumerate(config.listeners)]
    wanted += [
        (f"listener[{i}].backend[{j}].address", bc.address, False)
        for i, lc in enumerate(config.listeners)
        for j, bc in enumerate(lc.backends)
    ]
    for path, address, passive in wanted:
        try:
            resolved[str(address)] = resolve(address, passive=passive)
        except ResolveError as exc:
            problems.append(ConfigProblem(path, str(exc)))
    if problems:
        raise ConfigError(config.source, problems)
    return resolved


def read_token(config: Config) -> str | None:
    token_file = config.admin.token_file
    if token_file is None:
        return None
    try:
        with open(token_file, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeError) as exc:
        raise ConfigError(config.source, [ConfigProblem("admin.token_file", f"cannot read: {exc}")]) \
            from None
    if not token:
        raise ConfigError(config.source, [ConfigProblem("admin.token_file", "the file is empty")])
    return token
