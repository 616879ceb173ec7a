"""[listener.authority] and backends' role_url (product.md section 9, issue 15). Pure.

Kept apart from load.py: load.py hands over its tables (anything with the small
`Table` interface below) and gets an AuthorityConfig back, problems reported with
their key paths like every other key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, get_args
from urllib.parse import urlsplit

from relay.config import converters as to
from relay.config.model import (
    Address,
    AuthorityConfig,
    AuthorityKind,
    BackendConfig,
    ReplicaUse,
)
from relay.config.values import parse_address, show_value

AUTHORITY_KEYS = ("kind", "sentinels", "master_name", "password_file", "interval",
                  "stale_after", "replicas")
MAX_SENTINELS = 15
_KINDS: tuple[AuthorityKind, ...] = get_args(AuthorityKind)
_REPLICAS: tuple[ReplicaUse, ...] = get_args(ReplicaUse)
_MASTER_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # goes into a RESP command and logs

T = TypeVar("T")


class Table(Protocol):
    data: dict[str, object]

    def has(self, key: str) -> bool: ...
    def ok(self, *keys: str) -> bool: ...
    def add(self, key: str, message: str) -> None: ...
    def get(self, key: str, convert: Callable[[object], T], default: T) -> T: ...
    def require(self, key: str, convert: Callable[[object], T]) -> T | None: ...


def read_authority(t: Table) -> AuthorityConfig | None:
    """The listener's [listener.authority] table `t` (empty when absent: None)."""
    if not t.data:
        return None
    kind = t.require("kind", to.choice(_KINDS))
    interval = t.get("interval", to.duration(positive=True), 1.0)
    stale_after = t.get("stale_after", to.duration(), 30.0)
    default: ReplicaUse = "backup"
    replicas = t.get("replicas", to.choice(_REPLICAS), default)
    if kind is None:
        return None
    if kind == "http":
        for key in ("sentinels", "master_name", "password_file"):
            if t.has(key):
                t.add(key, 'only used when kind = "redis_sentinel" (kind is "http")')
        return AuthorityConfig(kind, interval=interval, stale_after=stale_after, replicas=replicas)
    sentinels = t.require("sentinels", _sentinels)
    master_name = t.require("master_name", _master_name)
    password_file = t.get("password_file", _path, None)
    if sentinels is None or master_name is None:
        return None
    return AuthorityConfig(kind, sentinels, master_name, password_file, interval, stale_after,
                           replicas)


def check_backends(authority: AuthorityConfig | None,
                   backends: Sequence[tuple[Table, BackendConfig]]) -> None:
    """role_url belongs to kind = "http", which needs it on every backend."""
    http = authority is not None and authority.kind == "http"
    for t, backend in backends:
        if backend.role_url is not None and not http:
            t.add("role_url", 'only used with [listener.authority] kind = "http"')
        elif http and backend.role_url is None and t.ok("role_url"):
            t.add("role_url", 'is required: [listener.authority] kind = "http" asks every '
                              "backend's role endpoint which one is the primary")


def parse_role_url(value: object) -> tuple[Address, str]:
    """"http://host:port/path" -> (address, path). Only plain http: the role endpoint is
    asked every interval by a small client on the event loop."""
    if not isinstance(value, str):
        raise ValueError(f'must be a URL such as "http://10.0.0.11:8008/primary", '
                         f"got {show_value(value)}")
    parts = urlsplit(value)
    if parts.scheme != "http" or not parts.netloc or parts.query or parts.fragment \
            or "@" in parts.netloc:
        raise ValueError(f'must be a plain http URL such as "http://10.0.0.11:8008/primary" '
                         f"(no https, user, query or fragment), got {show_value(value)}")
    netloc = parts.netloc if (":" in parts.netloc.rsplit("]", 1)[-1]) else f"{parts.netloc}:80"
    address = parse_address(netloc, allow_port_zero=False)
    path = parts.path or "/"
    if any(not "!" <= char <= "~" for char in path):
        raise ValueError(f"path must be printable ASCII without spaces, got {show_value(path)}")
    return address, path


def role_url(value: object) -> str:
    parse_role_url(value)
    assert isinstance(value, str)
    return value


def _sentinels(value: object) -> tuple[Address, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f'must be a non-empty list of "host:port" strings, got {show_value(value)}')
    if len(value) > MAX_SENTINELS:
        raise ValueError(f"at most {MAX_SENTINELS} sentinels, got {len(value)}")
    addresses: list[Address] = []
    for item in value:
        try:
            address = parse_address(item, allow_port_zero=False)
        except ValueError as exc:
            raise ValueError(f"{show_value(item)} in it: {exc}") from None
        if address in addresses:
            raise ValueError(f"{address} is listed twice (it would vote twice)")
        addresses.append(address)
    return tuple(addresses)


def _master_name(value: object) -> str:
    if isinstance(value, str) and _MASTER_NAME_RE.fullmatch(value):
        return value
    raise ValueError("must be 1 to 128 letters, digits, or _ . : - (the name Sentinel monitors), "
                     f"got {show_value(value)}")


def _path(value: object) -> str:
    if isinstance(value, str) and value and "\0" not in value:
        return value
    raise ValueError(f"must be a file path, got {show_value(value)}")


__all__ = ["AUTHORITY_KEYS", "check_backends", "parse_role_url", "read_authority", "role_url"]
