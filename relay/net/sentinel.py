"""Asking Redis Sentinel (and ROLE) on the reactor, for an authority.

Per sentinel: every interval a short conversation (AUTH when a password is set,
`SENTINEL get-master-addr-by-name`, `SENTINEL replicas`, `SENTINEL master` for the config
epoch), and one long-lived
connection SUBSCRIBEd to `+switch-master`, re-opened with backoff when it drops. A
switch message alone decides nothing (one sentinel is no majority): it makes every
sentinel be asked again at once, so a switch is acted on within a round trip.
Host names are resolved off the loop by the Resolver; answers are bounded (relay.core.resp).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from relay.config.model import Address
from relay.core.authority import Report, RoleReport
from relay.core.resp import RespError, RespValue, encode, parse
from relay.core.sentinel import (
    config_epoch,
    healthy_replicas,
    master_address,
    role_of,
    switch_master_name,
)
from relay.net.exchange import Exchange
from relay.net.resolve import ResolveError, SockAddr

if TYPE_CHECKING:
    from relay.net.reactor import Reactor
    from relay.net.resolver import Resolver
    from relay.net.timers import Timer

SUBSCRIBE_BACKOFF_MAX = 5.0
MIN_TIMEOUT = 0.5  # a question may take this long even with a shorter interval


def _parse(buf: bytes) -> tuple[RespValue, int] | None:
    return parse(buf)


def _locate(resolver: Resolver | None, address: Address,
            then: Callable[[SockAddr | str], None]) -> None:
    """`then` gets the socket address, or why there is none."""
    if resolver is None:
        then("no resolver")
        return

    def answered(outcome: SockAddr | ResolveError) -> None:
        then(str(outcome) if isinstance(outcome, ResolveError) else outcome)

    resolver.lookup(address, answered)


class SentinelSource:
    def __init__(self, reactor: Reactor, resolver: Resolver | None, address: Address,
                 master_name: str, password: bytes | None, interval: float,
                 on_report: Callable[[str, Report], None], on_switch: Callable[[], None]) -> None:
        self.reactor = reactor
        self.resolver = resolver
        self.address = address
        self.name = str(address)
        self.master_name = master_name
        self.auth = encode("AUTH", password) if password else b""
        self.interval = interval
        self.on_report = on_report
        self.on_switch = on_switch
        self.poll: Exchange[RespValue] | None = None
        self.subscription: Exchange[RespValue] | None = None
        self.timer: Timer | None = None
        self.sub_timer: Timer | None = None
        self.sub_backoff = interval
        self.stopped = False
        self.again = False  # asked while a question was out
        self.last_error = ""
        self.switches = 0  # +switch-master messages seen

    def start(self) -> None:
        self.ask_now()
        self._subscribe()

    def stop(self) -> None:
        self.stopped = True
        for timer in (self.timer, self.sub_timer):
            if timer is not None:
                timer.cancel()
        for exchange in (self.poll, self.subscription):
            if exchange is not None:
                exchange.close()
        self.poll = self.subscription = None

    # -- polling ------------------------------------------------------------------

    def ask_now(self) -> None:
        """Ask now (the regular poll, or a switch seen somewhere); one question at a time:
        asked while one is out, the question is asked again as soon as it is answered."""
        if self.stopped:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.reactor.call_later(self.interval, self.ask_now)  # the chain never breaks
        if self.poll is not None:
            self.again = True
            return
        _locate(self.resolver, self.address, self._ask)

    def _asked(self) -> None:
        self.poll = None
        if self.again:
            self.again = False
            self.reactor.call_soon(self.ask_now)

    def _ask(self, target: SockAddr | str) -> None:
        if self.stopped or self.poll is not None:
            return
        if isinstance(target, str):
            self._failed(target)
            return
        replies: list[RespValue] = []
        expected = 4 if self.auth else 3

        def reply(value: RespValue) -> bool:
            replies.append(value)
            if len(replies) < expected:
                return True
            self._asked()
            self._answered(replies[-3], replies[-2], replies[-1],
                           replies[0] if self.auth else None)
            return False

        def ended(error: str) -> None:
            self._asked()
            self._failed(error)

        request = self.auth + encode("SENTINEL", "get-master-addr-by-name", self.master_name) \
            + encode("SENTINEL", "replicas", self.master_name) \
            + encode("SENTINEL", "master", self.master_name)
        self.poll = Exchange(self.reactor, target, request, _parse, reply, ended,
                             timeout=max(self.interval, MIN_TIMEOUT))

    def _answered(self, master: RespValue, replicas: RespValue, info: RespValue,
                  auth: RespValue) -> None:
        if isinstance(auth, RespError):
            self._failed(f"AUTH refused: {auth.message[:200]}")
            return
        if isinstance(master, RespError):
            self._failed(f"error: {master.message[:200]}")
            return
        self.last_error = ""
        self.on_report(self.name, Report(self.reactor.now, True, master_address(master),
                                         healthy_replicas(replicas), config_epoch(info)))

    def _failed(self, error: str) -> None:
        self.last_error = error
        self.on_report(self.name, Report(self.reactor.now, False))

    # -- +switch-master ------------------------------------------------------------

    def _subscribe(self) -> None:
        self.sub_timer = None
        if self.stopped:
            return
        _locate(self.resolver, self.address, self._subscribe_to)

    def _subscribe_to(self, target: SockAddr | str) -> None:
        if self.stopped:
            return
        if isinstance(target, str):
            self._resubscribe_later()
            return

        def message(value: RespValue) -> bool:
            self.sub_backoff = self.interval  # it answers: the next drop starts afresh
            if switch_master_name(value) == self.master_name:
                self.switches += 1
                self.on_switch()
            return True

        def ended(error: str) -> None:
            self.subscription = None
            self._resubscribe_later()

        self.subscription = Exchange(self.reactor, target,
                                     self.auth + encode("SUBSCRIBE", "+switch-master"),
                                     _parse, message, ended, timeout=None, limit=1 << 16)

    def _resubscribe_later(self) -> None:
        if self.stopped:
            return
        delay, self.sub_backoff = self.sub_backoff, min(self.sub_backoff * 2,
                                                        SUBSCRIBE_BACKOFF_MAX)
        self.sub_timer = self.reactor.call_later(delay, self._subscribe)


class RoleProbe:
    """ROLE asked of the address a majority names (a restarted old primary says master
    until Sentinel demotes it, and a majority may still name a dead one)."""

    def __init__(self, reactor: Reactor, resolver: Resolver | None, password: bytes | None,
                 timeout: float, on_role: Callable[[str, RoleReport], None]) -> None:
        self.reactor = reactor
        self.resolver = resolver
        self.auth = encode("AUTH", password) if password else b""
        self.timeout = timeout
        self.on_role = on_role
        self.asking: dict[str, Exchange[RespValue] | None] = {}

    def ask(self, address_text: str, address: Address) -> None:
        if address_text in self.asking:
            return  # one question per address at a time
        self.asking[address_text] = None

        def located(target: SockAddr | str) -> None:
            if address_text not in self.asking:
                return  # stopped meanwhile
            if isinstance(target, str):
                self._answer(address_text, None)
                return
            replies: list[RespValue] = []

            def reply(value: RespValue) -> bool:
                replies.append(value)
                if len(replies) < (2 if self.auth else 1):
                    return True
                self._answer(address_text, role_of(replies[-1]))
                return False

            self.asking[address_text] = Exchange(
                self.reactor, target, self.auth + encode("ROLE"), _parse, reply,
                lambda error: self._answer(address_text, None), timeout=self.timeout)

        _locate(self.resolver, address, located)

    def _answer(self, address_text: str, role: str | None) -> None:
        if self.asking.pop(address_text, "gone") == "gone":
            return
        self.on_role(address_text, RoleReport(self.reactor.now, role))

    def stop(self) -> None:
        for exchange in self.asking.values():
            if exchange is not None:
                exchange.close()
        self.asking.clear()


__all__ = ["RoleProbe", "SentinelSource"]
