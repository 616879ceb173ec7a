"""Who may connect: allow/deny lists of networks and trusted PROXY senders. Pure.

Deny wins over allow; an empty allow list admits everyone. IPv4 and IPv6 networks
mix freely; an IPv4-mapped IPv6 peer (``::ffff:10.0.0.1``, as a dual-stack socket
reports an IPv4 client) is matched as the IPv4 address it is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_network(text: str) -> Network:
    """A CIDR (``10.0.0.0/8``, ``::1/128``) or a bare address (one host); ValueError if neither.
    Host bits set below the prefix are an error: ``10.0.0.1/8`` is almost always a typo."""
    return ipaddress.ip_network(text.strip(), strict=True)


def peer_address(host: str) -> Address | None:
    """The address a socket reported (scope id dropped, IPv4-mapped unwrapped); None if not IP."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _contains(networks: tuple[Network, ...], address: Address) -> bool:
    for network in networks:  # noqa: SIM110 (a plain loop: no generator per connection)
        if address.version == network.version and address in network:
            return True
    return False


@dataclass(frozen=True)
class SourcePolicy:
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    @classmethod
    def of(cls, allow: Iterable[str], deny: Iterable[str]) -> SourcePolicy:
        return cls(tuple(parse_network(a) for a in allow), tuple(parse_network(d) for d in deny))

    @property
    def open(self) -> bool:
        """Admits everyone: nothing to check per connection."""
        return not self.allow and not self.deny

    def refuses(self, address: Address | None) -> str | None:
        """Why this source is refused ("deny" or "not_allowed"), or None if it may connect.
        A source that is not an IP address (none here: TCP only) is refused when lists exist."""
        if self.open:
            return None
        if address is None:
            return "not_allowed"
        if _contains(self.deny, address):
            return "deny"
        if self.allow and not _contains(self.allow, address):
            return "not_allowed"
        return None


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, networks: Iterable[str]) -> TrustedProxies:
        return cls(tuple(parse_network(n) for n in networks))

    def trusts(self, address: Address | None) -> bool:
        return address is not None and _contains(self.networks, address)


class SourceLimit:
    """Concurrent sessions per client address, at most ``maximum`` each (0 = no limit).
    Memory is bounded by the sessions open: an address leaves the table with its last one."""

    __slots__ = ("counts", "maximum")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.counts: dict[str, int] = {}

    def acquire(self, source: str) -> bool:
        """Count a new session from `source`; False (and nothing counted) when it is at the limit."""
        if not self.maximum:
            return True
        n = self.counts.get(source, 0)
        if n >= self.maximum:
            return False
        self.counts[source] = n + 1
        return True

    def release(self, source: str) -> None:
        if not self.maximum:
            return
        n = self.counts.get(source, 0) - 1
        if n > 0:
            self.counts[source] = n
        else:
            self.counts.pop(source, None)
