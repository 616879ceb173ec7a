"""A configuration made ready to run: validated, its addresses resolved, its token read.

`prepare` is for start-up (it waits, bounded, for the resolver); a SIGHUP reload reads
the file here but resolves through the loop's Resolver (relay.net.server). Every
failure is a ConfigError.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.config import Config, load_config
from relay.config.load import line_of
from relay.config.model import Address
from relay.errors import ConfigError, ConfigProblem
from relay.net.resolve import ResolveError, SockAddr
from relay.net.resolver import Key, Outcome, resolve_now


@dataclass(frozen=True)
class RunConfig:
    config: Config
    resolved: dict[str, SockAddr]  # str(Address) -> socket address
    admin_token: str | None


def prepare(path: str) -> RunConfig:
    """At start: nothing serves yet, so this may wait (bounded) for the resolver."""
    config = load_config(path)
    return RunConfig(config, resolve_all(config), read_token(config))


def wanted_addresses(config: Config) -> list[tuple[str, Address, bool]]:
    """(key path, address, passive) of every address the configuration names."""
    wanted = [("admin.listen", config.admin.listen, True)]
    wanted += [(f"listener[{i}].listen", lc.listen, True) for i, lc in enumerate(config.listeners)]
    wanted += [
        (f"listener[{i}].backend[{j}].address", bc.address, False)
        for i, lc in enumerate(config.listeners)
        for j, bc in enumerate(lc.backends)
    ]
    return wanted


def resolve_all(config: Config) -> dict[str, SockAddr]:
    """Resolve every address, in parallel, waiting at most RESOLVE_TIMEOUT; unresolvable
    ones (or no answer in time) are ConfigErrors."""
    wanted = wanted_addresses(config)
    return resolved_or_error(config, resolve_now((address, passive) for _, address, passive in wanted))


def resolved_or_error(config: Config, outcomes: dict[Key, Outcome]) -> dict[str, SockAddr]:
    """The socket address of each address of `config`, or a ConfigError naming those that
    could not be resolved (the outcomes of resolve_now or Resolver.lookup_all)."""
    resolved: dict[str, SockAddr] = {}
    problems: list[ConfigProblem] = []
    for path, address, passive in wanted_addresses(config):
        outcome = outcomes[(address, passive)]
        if isinstance(outcome, ResolveError):
            problems.append(ConfigProblem(path, str(outcome), line_of(config.text, path)))
        else:
            resolved[str(address)] = outcome
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
