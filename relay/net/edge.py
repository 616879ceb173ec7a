"""The edge of a listener: who may connect, how many at once per source, and PROXY headers.

A client from a trusted proxy (``trusted_proxies``, with ``accept_proxy`` on) must start
with a PROXY header; ``HeaderReader`` reads it without blocking (MSG_PEEK, so not a byte
past the header is taken from the kernel), within ``connect_timeout`` and the spec's sizes.
Then the address the header gives is the client's for everything after: allow/deny,
per-source limits, access logs and the header relay itself sends to backends. Nobody
else's header is believed: for an untrusted peer, its bytes are just bytes.

Rejections are counted per reason and logged as one line per listener per interval with
the counts, never a line per client.
"""

from __future__ import annotations

import array
import fcntl
import socket
import termios
from collections import Counter
from typing import TYPE_CHECKING, Protocol

from relay.config.model import ListenerConfig
from relay.core.access import SourceLimit, SourcePolicy, TrustedProxies, peer_address
from relay.core.proxy_header import (
    V1_MAX,
    V2_FIXED,
    V2_MAX,
    V2_SIGNATURE,
    Header,
    Invalid,
    Version,
    parse,
)
from relay.logs import log
from relay.net.connect import reset_on_close
from relay.net.reactor import EPOLLERR, EPOLLET, EPOLLHUP, EPOLLIN, EPOLLRDHUP, Reactor
from relay.net.sysio import Sock

if TYPE_CHECKING:
    from relay.net.timers import Timer

REJECT_LOG_INTERVAL = 10.0  # seconds between aggregated rejection lines per listener
_PEEK = socket.MSG_PEEK
# edge-triggered: the header is only peeked at, so its bytes stay readable; level-triggered
# epoll would wake us for them again and again while we wait for the rest
_HEADER_MASK = EPOLLIN | EPOLLRDHUP | EPOLLET


class Edge:
    """A listener's edge settings, rebuilt on reload; the per-source counts carry over."""

    def __init__(self, config: ListenerConfig, previous: Edge | None = None) -> None:
        self.accept_proxy = config.accept_proxy
        self.trusted = TrustedProxies.of(config.trusted_proxies)
        self.policy = SourcePolicy.of(config.allow, config.deny)
        self.limit: SourceLimit
        self.log_due: float
        if previous is not None:
            self.limit = previous.limit
            self.limit.maximum = config.max_connections_per_source
            if not self.limit.maximum:
                self.limit.counts.clear()
        else:
            self.limit = SourceLimit(config.max_connections_per_source)
        self.rejected: Counter[str] = previous.rejected if previous is not None else Counter()
        self.log_due = previous.log_due if previous is not None else 0.0
        # nothing to check per connection (the common case: one test on the hot path)
        self.plain = self.accept_proxy == "off" and self.policy.open and not self.limit.maximum
        self.header_version: Version = "any" if config.accept_proxy == "off" else config.accept_proxy


    def wants_header(self, host: str) -> bool:
        return self.accept_proxy != "off" and self.trusted.trusts(peer_address(host))

    def refuses(self, host: str) -> str | None:
        """Why a client at `host` may not open a session now, or None; counts it if admitted."""
        reason = self.policy.refuses(peer_address(host)) if not self.policy.open else None
        if reason is not None:
            return "denied"
        if not self.limit.acquire(host):
            return "per_source"
        return None


def reset_and_close(sock: Sock) -> None:
    """Refuse a client with RST: nothing it could read as an answer."""
    reset_on_close(sock, sock.fileno())
    sock.close()


class HeaderSink(Protocol):
    """Where a HeaderReader hands its client (relay.net.listener.Listener is one)."""

    @property
    def reactor(self) -> Reactor: ...
    @property
    def config(self) -> ListenerConfig: ...
    @property
    def edge(self) -> Edge: ...

    def header_read(self, client: Sock, source: tuple[str, int],
                    destination: tuple[str, int] | None) -> None: ...
    def header_failed(self, client: Sock, addr: tuple[str, int], reason: str) -> None: ...


class HeaderReader:
    """Waits for a trusted client's PROXY header, then hands the client to its listener."""

    __slots__ = ("addr", "client", "fd", "listener", "need", "timer")

    def __init__(self, listener: HeaderSink, client: Sock, addr: tuple[str, int]) -> None:
        self.listener = listener
        self.client = client
        self.addr = addr
        self.fd = client.fileno()
        self.need = 1  # bytes the kernel must hold before the next look (a v2 header says how many)
        reactor = listener.reactor
        reactor.register(self.fd, _HEADER_MASK, self)
        self.timer: Timer | None = reactor.call_later(listener.config.connect_timeout,
                                                      self._timed_out)
        self._read()  # the header often came with the handshake's first segment

    def on_event(self, fd: int, events: int) -> None:
        if events & (EPOLLERR | EPOLLHUP) and not events & EPOLLIN:
            self._fail("closed before its PROXY header")
            return
        self._read()

    def on_crash(self, exc: BaseException) -> None:
        self._fail("internal error")

    def _read(self) -> None:
        if self.timer is None:
            return  # done already
        limit = V2_MAX if self.listener.edge.accept_proxy != "v1" else V1_MAX
        try:
            queued = _queued(self.fd)
            if queued and queued < self.need:
                return  # a slow sender: look again when the rest is there, not at every byte
            data = self.client.recv(max(1, min(queued, limit)), _PEEK)
        except BlockingIOError:
            return
        except OSError:
            self._fail("reset before its PROXY header")
            return
        if not data:
            self._fail("closed before its PROXY header")
            return
        result = parse(data, self.listener.edge.header_version)
        if result is None:
            if len(data) >= limit:
                self._fail("PROXY header larger than the spec allows")
            elif len(data) >= V2_FIXED and data.startswith(V2_SIGNATURE):
                self.need = V2_FIXED + int.from_bytes(data[14:16], "big")
            else:
                self.need = len(data) + 1
            return
        if isinstance(result, Invalid):
            self._fail(result.reason)
            return
        self._accept(result)

    def _accept(self, header: Header) -> None:
        try:
            taken = self.client.recv(header.length)  # exactly the header; the rest stays queued
        except OSError:
            self._fail("reset before its PROXY header")
            return
        if len(taken) != header.length:
            self._fail("PROXY header vanished while being read")
            return
        self._stop()
        source = header.source if header.source is not None else self.addr
        self.listener.header_read(self.client, source, header.destination)

    def _timed_out(self) -> None:
        self.timer = None
        self._fail("no complete PROXY header within connect_timeout", timer_fired=True)

    def _stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.listener.reactor.unregister(self.fd)

    def _fail(self, reason: str, timer_fired: bool = False) -> None:
        if self.timer is None and not timer_fired:
            return
        self._stop()
        self.listener.header_failed(self.client, self.addr, reason)


def _queued(fd: int) -> int:
    """Bytes waiting in the socket's receive queue (FIONREAD), without reading them."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count, True)
    return count[0]


def log_rejections(listener_name: str, edge: Edge, now: float, reason: str, detail: str) -> None:
    """Count a rejection; log the counts at most once per interval per listener."""
    edge.rejected[reason] += 1
    if now < edge.log_due:
        return
    edge.log_due = now + REJECT_LOG_INTERVAL
    counts = dict(edge.rejected)
    edge.rejected.clear()
    log.warning("connections_rejected", listener=listener_name, counts=counts, last=detail,
                interval=REJECT_LOG_INTERVAL)
