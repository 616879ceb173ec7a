"""The messages between the supervisor and its workers (on relay.net.channel), typed.

On the wire each is one JSON object with "t" naming its kind. `encode` turns a message
into that object; `decode` turns an object that came off a channel into a message, or
raises BadMessage: what a peer sends is input, and a malformed message must not crash
the process that reads it.

worker -> supervisor: Ready, Failed, WorkerStats, PassiveFailure, CheckWanted
supervisor -> worker: Health (the supervisor's decision about a backend, or the tier)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeGuard

from relay.core.health import ADMIN_STATES, AdminState
from relay.net.resolve import SockAddr

Key = tuple[str, str]  # (listener, backend)


class BadMessage(ValueError):
    pass


@dataclass(frozen=True)
class Ready:
    """The worker serves."""


@dataclass(frozen=True)
class Failed:
    """The worker could not start, and why."""

    reason: str


@dataclass(frozen=True)
class WorkerStats:
    """A worker's gauges, sent every heartbeat: its sessions, and per backend."""

    sessions: int
    backends: dict[Key, int] = field(default_factory=dict)  # sessions per backend


@dataclass(frozen=True)
class PassiveFailure:
    """A worker's connect to a backend failed (passive health, for the supervisor to judge)."""

    listener: str
    backend: str
    error: str


@dataclass(frozen=True)
class CheckWanted:
    """A worker's session ended in a way only an active check can judge."""

    listener: str
    backend: str


@dataclass(frozen=True)
class BackendHealth:
    name: str
    level: int
    suspect: bool
    admin: AdminState
    checked: bool
    error: str
    target: SockAddr


@dataclass(frozen=True)
class Health:
    """The supervisor's serving tier of a listener and, unless None, one backend's health."""

    listener: str
    serving: int | None
    backend: BackendHealth | None = None


Message = Ready | Failed | WorkerStats | PassiveFailure | CheckWanted | Health


def encode(message: Message) -> dict[str, Any]:
    match message:
        case Ready():
            return {"t": "ready"}
        case Failed(reason):
            return {"t": "failed", "reason": reason}
        case WorkerStats(sessions, backends):
            nested: dict[str, dict[str, dict[str, int]]] = {}
            for (listener, backend), count in backends.items():
                nested.setdefault(listener, {})[backend] = {"active": count}
            return {"t": "stats", "sessions": sessions, "backends": nested}
        case PassiveFailure(listener, backend, error):
            return {"t": "passive", "l": listener, "b": backend, "error": error}
        case CheckWanted(listener, backend):
            return {"t": "check", "l": listener, "b": backend}
        case Health(listener, serving, b):
            out: dict[str, Any] = {"t": "health", "l": listener, "serving": serving}
            if b is not None:
                out.update(b=b.name, level=b.level, suspect=b.suspect, admin=b.admin,
                           checked=b.checked, error=b.error,
                           target=[b.target.family, list(b.target.sockaddr)])
            return out
    raise TypeError(f"not a message: {message!r}")


def decode(raw: dict[str, Any]) -> Message:
    """The message `raw` holds; BadMessage if it is none (unknown kind, missing or
    mistyped field)."""
    kind = raw.get("t")
    if kind == "ready":
        return Ready()
    if kind == "failed":
        return Failed(_get(raw, "reason", str)[:1000])
    if kind == "stats":
        backends: dict[Key, int] = {}
        for listener, per_backend in _get(raw, "backends", dict).items():
            if not isinstance(per_backend, dict):
                raise BadMessage(f"stats: backends of {listener!r} is not an object")
            for backend, gauges in per_backend.items():
                if not isinstance(gauges, dict):
                    raise BadMessage(f"stats: {listener}/{backend} is not an object")
                backends[(listener, backend)] = _count(gauges, "active")
        return WorkerStats(_count(raw, "sessions"), backends)
    if kind == "passive":
        return PassiveFailure(_get(raw, "l", str), _get(raw, "b", str), _get(raw, "error", str))
    if kind == "check":
        return CheckWanted(_get(raw, "l", str), _get(raw, "b", str))
    if kind == "health":
        serving = raw.get("serving")
        if serving is not None and not _is_int(serving):
            raise BadMessage(f"health: serving must be an integer or null, got {serving!r}")
        return Health(_get(raw, "l", str), serving,
                      _backend_health(raw) if "b" in raw else None)
    raise BadMessage(f"unknown message kind {kind!r}")


def _backend_health(raw: dict[str, Any]) -> BackendHealth:
    admin = _get(raw, "admin", str)
    if admin not in ADMIN_STATES:
        raise BadMessage(f"health: admin must be one of {', '.join(ADMIN_STATES)}, got {admin!r}")
    target = raw.get("target")
    # (a SockAddr's address is (host, port) or (host, port, flowinfo, scope_id): compiled,
    # SockAddr refuses any other shape with TypeError, which no reader of a channel catches)
    if not (isinstance(target, list) and len(target) == 2 and _is_int(target[0])
            and isinstance(target[1], list) and len(target[1]) in (2, 4)
            and isinstance(target[1][0], str) and all(_is_int(v) for v in target[1][1:])):
        raise BadMessage("health: target must be [family, [host, port]] or "
                         f"[family, [host, port, flowinfo, scope_id]], got {target!r}")
    return BackendHealth(_get(raw, "b", str), _count(raw, "level"), _get(raw, "suspect", bool),
                         admin, _get(raw, "checked", bool),
                         _get(raw, "error", str), SockAddr(target[0], tuple(target[1])))


def _get(raw: dict[str, Any], key: str, kind: type) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadMessage(f"{raw.get('t')}: {key} must be {kind.__name__}, got {value!r}")
    return value


def _count(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if not _is_int(value) or value < 0:
        raise BadMessage(f"{raw.get('t')}: {key} must be an integer >= 0, got {value!r}")
    return int(value)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
