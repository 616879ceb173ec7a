"""What a session's end says about its backend: passive health's rule. Pure.

HAProxy's ``observe layer4`` with ``on-error fastinter``, narrowed so that no client
can move the serving tier while the active checks pass:

- a connect failure (refused, timeout, unreachable) proves the backend unwell: it
  counts as a failure at once (relay/core/health.py, ``traffic_failed``);
- a reset, or the backend's close, before the backend sent its first byte may have
  been provoked by the client (Redis closing a silent client at its ``timeout``;
  unread client bytes turning the backend's close into a RST), so it only asks for an
  early active check of that backend, and the check's result decides;
- a reset after the backend sent bytes, or after its own FIN, is the client's business.
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    IGNORE = "ignore"  # says nothing about the backend
    CHECK = "check"  # may be the backend: check it early; the check decides


def judge_backend_end(reset: bool, backend_spoke: bool, backend_fin: bool) -> Verdict:
    """A relaying session's backend side ended: by a reset (`reset`) or by the backend's
    FIN. `backend_spoke`: the backend had sent at least one byte; `backend_fin`: its FIN
    had come before (a reset then answers a client that wrote after the goodbye)."""
    if backend_spoke:
        return Verdict.IGNORE
    if reset and backend_fin:
        return Verdict.IGNORE
    return Verdict.CHECK


class EarlyCheck:
    """Rate limit for early checks of one backend: none while a check is in flight, and at
    most one per check interval, however many sessions ask."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: float | None = None  # when the last early check was granted

    def request(self, now: float, interval: float, in_flight: bool) -> bool:
        """True: run a check of this backend now."""
        if in_flight:
            return False
        if self.last is not None and now - self.last < interval:
            return False
        self.last = now
        return True
