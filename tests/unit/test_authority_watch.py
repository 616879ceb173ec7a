"""AuthorityWatch (relay.net.authority) on a hand-driven reactor: what it does with the
addresses its sources name. The sources are not started; their reports are handed to it."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest

from relay.config import parse_config
from relay.config.model import Address
from relay.core.authority import Report, RoleReport
from relay.net.authority import AuthorityWatch, follow_authority
from relay.net.backends import Backend, BackendGroup
from relay.net.resolve import SockAddr
from relay.net.resolver import Resolver
from tests.support.fakeclock import Reactors

CONFIG = """
[[listener]]
name = "redis"
listen = "127.0.0.1:0"
[listener.authority]
kind = "redis_sentinel"
sentinels = ["127.0.0.1:26379"]
master_name = "mymaster"
[[listener.backend]]
name = "seed"
address = "127.0.0.1:6379"
"""


Watched = tuple[AuthorityWatch, list[tuple[str, Address]]]  # the watch, the ROLE questions


@pytest.fixture
def watched(reactors: Reactors) -> Iterator[Watched]:
    (lc,) = parse_config(CONFIG).listeners
    reactor = reactors(100.0)
    resolver = Resolver(reactor)  # literal addresses: answered at once, no thread
    seed = Backend(lc.backends[0], SockAddr(socket.AF_INET, ("127.0.0.1", 6379)), lc)
    group = BackendGroup(reactor, lc, [seed], random.Random(1), resolver)
    group.follow_authority = follow_authority
    watch = AuthorityWatch(group)
    asked: list[tuple[str, Address]] = []
    watch.role_probe.ask = lambda text, address: asked.append((text, address))
    yield watch, asked
    watch.stop()
    resolver.close()


def test_an_ipv6_primary_a_sentinel_names_is_read_with_its_brackets(watched: Watched) -> None:
    watch, asked = watched
    watch._report("127.0.0.1:26379", Report(100.0, True, "[::1]:6379", ("[::1]:6380",)))
    assert asked == [("[::1]:6379", Address("::1", 6379))]  # ROLE asked of it
    for name, port in (("[::1]:6379", 6379), ("[::1]:6380", 6380)):
        backend = watch.group.by_name[name]
        assert backend.config.address == Address("::1", port)
        assert backend.target.family == socket.AF_INET6
        assert watch.by_key[name] is backend


def test_an_address_the_configuration_would_refuse_becomes_no_backend(watched: Watched) -> None:
    watch, asked = watched
    watch._report("127.0.0.1:26379", Report(100.0, True, "[not-v6]:6379"))
    assert asked == [] and "[not-v6]:6379" not in watch.group.by_name


def test_a_reload_keeps_the_primary_serving_and_counts_no_failover(watched: Watched) -> None:
    """A reload rebuilds the group's list from the file (here only the seed); the backends
    the sentinels named join again before the serving tier is recomputed, so the primary
    never stops serving and relay_failovers_total does not move."""
    watch, _asked = watched
    group = watch.group
    watch._report("127.0.0.1:26379", Report(100.0, True, "127.0.0.2:6379", ("127.0.0.3:6379",)))
    watch._role("127.0.0.2:6379", RoleReport(100.0, "master"))
    group.authority = watch
    assert group.tiers.serving == 0
    before = group.failovers
    changes: list[dict[str, object]] = []
    group.note = lambda kind, **fields: changes.append({"kind": kind, **fields})
    (lc,) = parse_config(CONFIG).listeners
    group.reconfigure(lc, [])  # a file naming no backend: the sentinels name them all
    try:
        assert [c for c in changes if c["kind"] == "tier_change"] == []
        assert group.failovers == before
        assert group.tiers.serving == 0
        assert "127.0.0.2:6379" in group.by_name
    finally:
        if group.authority is not None and group.authority is not watch:
            group.authority.stop()
