"""What a failed connect says: its reason (a metric label) and its text (last_error, logs).

The one classification of connect errors: sessions, hedges, losers and health checks all
describe an errno here, so the same errno reads the same everywhere. Pure.
"""

from __future__ import annotations

import errno
import os

REFUSED, TIMEOUT, UNREACHABLE, RESET, DNS, OTHER = (
    "refused", "timeout", "unreachable", "reset", "dns", "other"
)
CONNECT_ERRORS = (REFUSED, TIMEOUT, UNREACHABLE, RESET, DNS, OTHER)

_BY_ERRNO = {
    errno.ECONNREFUSED: REFUSED,
    errno.ETIMEDOUT: TIMEOUT,
    errno.ENETUNREACH: UNREACHABLE,
    errno.EHOSTUNREACH: UNREACHABLE,
    errno.ENETDOWN: UNREACHABLE,
    errno.EHOSTDOWN: UNREACHABLE,
    errno.ECONNRESET: RESET,
    errno.ECONNABORTED: RESET,
    errno.EPIPE: RESET,
}


def classify(err: int) -> str:
    """The reason for a connect errno: one of CONNECT_ERRORS."""
    return _BY_ERRNO.get(err, OTHER)


def describe(err: int) -> tuple[str, str, str]:
    """(reason, the errno's text, the detail kept as last_error): "refused: Connection
    refused"; an errno without a reason of its own is its text alone."""
    reason = classify(err)
    text = os.strerror(err) if err else reason
    return reason, text, (f"{reason}: {text}" if reason != OTHER else text)


def detail(err: int) -> str:
    """The one text an errno has everywhere (a check's or a session's last_error)."""
    return describe(err)[2]
