"""The supervisor <-> worker messages: typed, and a malformed one is refused, not a crash."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from relay.net.messages import (
    BackendHealth,
    BadMessage,
    CheckWanted,
    Failed,
    Health,
    Message,
    PassiveFailure,
    Ready,
    WorkerStats,
    decode,
    encode,
)
from relay.net.resolve import SockAddr

TARGET = SockAddr(socket.AF_INET, ("127.0.0.1", 6379))


@pytest.mark.parametrize("message", [
    Ready(),
    Failed("no socket"),
    WorkerStats(3, {("db", "a"): 2, ("db", "b"): 1, ("web", "x"): 0}),
    PassiveFailure("db", "a", "refused: Connection refused"),
    CheckWanted("db", "a"),
    Health("db", 1),
    Health("db", None, BackendHealth("a", 2, True, "drain", True, "timeout", TARGET)),
    Health("db", None, BackendHealth("a", 2, True, "ready", True, "",
                                     SockAddr(socket.AF_INET6, ("::1", 6379, 0, 0)))),
])
def test_round_trip_through_json(message: Message) -> None:
    assert decode(json.loads(json.dumps(encode(message)))) == message


@pytest.mark.parametrize("raw", [
    {},
    {"t": "nope"},
    {"t": 7},
    {"t": "failed"},
    {"t": "failed", "reason": ["x"]},
    {"t": "stats", "sessions": "3", "backends": {}},
    {"t": "stats", "sessions": -1, "backends": {}},
    {"t": "stats", "sessions": True, "backends": {}},
    {"t": "stats", "sessions": 1, "backends": []},
    {"t": "stats", "sessions": 1, "backends": {"db": 3}},
    {"t": "stats", "sessions": 1, "backends": {"db": {"a": 3}}},
    {"t": "stats", "sessions": 1, "backends": {"db": {"a": {"active": None}}}},
    {"t": "passive", "l": "db", "b": None, "error": "x"},
    {"t": "check", "l": 1, "b": "a"},
    {"t": "health", "l": "db", "serving": "0"},
    {"t": "health", "l": "db", "serving": 0, "b": "a", "level": 1, "suspect": False,
     "admin": "gone", "checked": True, "error": "", "target": [2, ["127.0.0.1", 1]]},
    {"t": "health", "l": "db", "serving": 0, "b": "a", "level": 1, "suspect": False,
     "admin": "ready", "checked": True, "error": "", "target": [2, "127.0.0.1:1"]},
    {"t": "health", "l": "db", "serving": 0, "b": "a", "level": "1", "suspect": False,
     "admin": "ready", "checked": True, "error": "", "target": [2, ["127.0.0.1", 1]]},
    # addresses no SockAddr has: 3 or 5 items, a port or flowinfo that is no integer
    *({"t": "health", "l": "db", "serving": 0, "b": "a", "level": 1, "suspect": False,
       "admin": "ready", "checked": True, "error": "", "target": [10, address]}
      for address in (["::1", 1, 0], ["::1", 1, 0, 0, 0], ["::1", "1"], ["::1", 1, "0", 0])),
])
def test_malformed_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(BadMessage):
        decode(raw)


def test_a_long_failure_reason_is_cut() -> None:
    message = decode({"t": "failed", "reason": "x" * 5000})
    assert isinstance(message, Failed) and len(message.reason) == 1000
