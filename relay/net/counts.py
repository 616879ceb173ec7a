"""The data path's counters, kept where a SIGKILL cannot take them.

Each listener and backend counts into `counts`, a flat run of integers laid out by
LISTENER_FIELDS / BACKEND_FIELDS: a list in a single process; in a worker, a slice of
a file the worker maps into memory (CountFile), written in place at every increment,
so the supervisor reads exact totals even of a worker killed with SIGKILL (the idea of
prometheus_client's multiprocess mode: values live in mmap'd files, summed by the reader).
An increment is one store into that memory: no lock, no message, no flush.
"""

from __future__ import annotations

import json
import mmap
import os
from array import array
from collections.abc import Iterator, MutableMapping
from typing import Final, Protocol

from relay.core.connect_error import CONNECT_ERRORS

CONNECT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DURATION_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
REJECT_REASONS = ("max_connections", "no_backend", "accept_error", "denied", "per_source",
                  "proxy_header")
HEDGE_OUTCOMES = ("primary_won", "hedge_won", "both_failed")


def _histogram(name: str, bounds: tuple[float, ...]) -> tuple[str, ...]:
    return (*(f"{name}:{b}" for b in bounds), f"{name}:+Inf", f"{name}:sum_ns")


LISTENER_FIELDS = ("accepted", *(f"rejected:{r}" for r in REJECT_REASONS),
                   *(f"hedges:{h}" for h in HEDGE_OUTCOMES),
                   *_histogram("duration", DURATION_BUCKETS))
# up/down: bytes of closed sessions; *_live: closed and open ones, as of the worker's last
# heartbeat (open sessions' bytes are not worth a store per splice).
BACKEND_FIELDS = ("up", "down", "up_live", "down_live", *(f"errors:{e}" for e in CONNECT_ERRORS),
                  *_histogram("connect", CONNECT_BUCKETS))
L = {name: i for i, name in enumerate(LISTENER_FIELDS)}
B = {name: i for i, name in enumerate(BACKEND_FIELDS)}
ACCEPTED: Final = L["accepted"]
UP: Final = B["up"]
DOWN: Final = B["down"]
UP_LIVE: Final = B["up_live"]
DOWN_LIVE: Final = B["down_live"]


Counts = list[int] | memoryview  # a memoryview of 64-bit integers ("q") in a worker


def add(counts: Counts, slot: int, n: int) -> None:
    """counts[slot] += n (per connection: a list in one process is added to natively by
    compiled code, which goes the generic way for the union)."""
    if isinstance(counts, list):
        values: list[int] = counts  # (typed, and no "+=": mypyc then adds natively)
        values[slot] = values[slot] + n
    else:
        counts[slot] += n


class Counted(Protocol):
    counts: Counts


class Tally(MutableMapping[str, int]):
    """A Counter-like view (`t[key] += 1`, items()) of some of an owner's counts. Keys
    outside the layout (none today) are kept aside, in this process only."""

    def __init__(self, owner: Counted, prefix: str, keys: tuple[str, ...],
                 fields: dict[str, int]) -> None:
        self.owner = owner
        self.slots = {k: fields[f"{prefix}:{k}"] for k in keys}
        self.extra: dict[str, int] = {}

    def __getitem__(self, key: str) -> int:
        slot = self.slots.get(key)
        return self.extra.get(key, 0) if slot is None else self.owner.counts[slot]

    def __setitem__(self, key: str, value: int) -> None:
        slot = self.slots.get(key)
        if slot is None:
            self.extra[key] = value
        else:
            self.owner.counts[slot] = value

    def __delitem__(self, key: str) -> None:
        self[key] = 0

    def __iter__(self) -> Iterator[str]:
        yield from self.slots
        yield from self.extra

    def __len__(self) -> int:
        return len(self.slots) + len(self.extra)


class HistogramCounts:
    """A histogram in an owner's counts: one slot per bucket (not cumulative), then the sum
    in nanoseconds."""

    def __init__(self, owner: Counted, name: str, bounds: tuple[float, ...],
                 fields: dict[str, int]) -> None:
        self.owner = owner
        self.bounds = bounds
        self.first = fields[f"{name}:{bounds[0]}"]
        self.sum_slot = fields[f"{name}:sum_ns"]

    def observe(self, counts: Counts, seconds: float) -> None:
        """Count `seconds` into `counts`, the owner's (its caller reads them natively: through
        the owner's protocol, a generic attribute read per connection)."""
        # (per connection: the bucket found by a plain loop, which compiled code runs natively;
        # a call to bisect_left cost more than the dozen comparisons it saves)
        bounds = self.bounds
        i, n = 0, len(bounds)
        while i < n and bounds[i] < seconds:  # bisect_left: the first bound >= seconds
            i += 1
        add(counts, self.first + i, 1)
        add(counts, self.sum_slot, int(seconds * 1e9))

    def buckets(self) -> list[int]:
        return list(self.owner.counts[self.first:self.first + len(self.bounds) + 1])

    def sum_ns(self) -> int:
        """The sum of the observed values, in nanoseconds."""
        return self.owner.counts[self.sum_slot]


def new_counts(fields: tuple[str, ...]) -> list[int]:
    return [0] * len(fields)


def settled(backend_counts: list[int]) -> list[int]:
    """One worker's backend counts with the live byte totals folded into up/down: the most
    that worker is known to have relayed (closed sessions, or all as of its last beat)."""
    out = list(backend_counts)
    out[UP] = max(out[UP], out[UP_LIVE])
    out[DOWN] = max(out[DOWN], out[DOWN_LIVE])
    out[UP_LIVE] = out[DOWN_LIVE] = 0
    return out


# -- a worker's file -----------------------------------------------------------------------

Key = tuple[str, str | None]  # (listener, backend) or (listener, None)
_WORD: Final = 8


class CountFile:
    """A worker's counters as a file mapped into its memory: a header (JSON: which listener
    and backend each run of slots belongs to), then the slots as signed 64-bit integers."""

    def __init__(self, path: str, layout: list[tuple[str, list[str]]]) -> None:
        header = json.dumps({"layout": layout, "listener": len(LISTENER_FIELDS),
                             "backend": len(BACKEND_FIELDS)}).encode()
        header += b" " * (-len(header) % _WORD)
        slots = sum(len(LISTENER_FIELDS) + len(BACKEND_FIELDS) * len(b) for _, b in layout)
        size = _WORD + len(header) + _WORD * slots
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
            os.pwrite(fd, len(header).to_bytes(_WORD, "little") + header, 0)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.values = memoryview(self.map)[_WORD + len(header):].cast("q")
        self.runs: dict[Key, memoryview] = {}
        at = 0
        for lname, backends in layout:
            self.runs[(lname, None)] = self.values[at:at + len(LISTENER_FIELDS)]
            at += len(LISTENER_FIELDS)
            for bname in backends:
                self.runs[(lname, bname)] = self.values[at:at + len(BACKEND_FIELDS)]
                at += len(BACKEND_FIELDS)


def read_counts(path: str) -> dict[Key, list[int]]:
    """Every run of a CountFile (of a live worker or a dead one); {} when there is none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return {}
    if len(data) < _WORD:
        return {}
    size = int.from_bytes(data[:_WORD], "little")
    try:
        header = json.loads(data[_WORD:_WORD + size])
        layout = header["layout"]
        nl, nb = int(header["listener"]), int(header["backend"])
    except (ValueError, KeyError, TypeError):
        return {}
    if (nl, nb) != (len(LISTENER_FIELDS), len(BACKEND_FIELDS)):
        return {}
    values = array("q")
    body = data[_WORD + size:]
    values.frombytes(body[:len(body) - len(body) % _WORD])
    runs: dict[Key, list[int]] = {}
    at = 0
    for lname, backends in layout:
        runs[(lname, None)] = values[at:at + nl].tolist()
        at += nl
        for bname in backends:
            runs[(lname, bname)] = values[at:at + nb].tolist()
            at += nb
    return runs
