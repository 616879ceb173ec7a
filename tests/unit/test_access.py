"""allow/deny, trusted PROXY senders and per-source limits (relay/core/access.py)."""

from __future__ import annotations

import pytest

from relay.core.access import SourceLimit, SourcePolicy, TrustedProxies, parse_network, peer_address


def test_empty_lists_admit_everyone() -> None:
    policy = SourcePolicy.of([], [])
    assert policy.open
    assert policy.refuses(peer_address("203.0.113.9")) is None


def test_deny_wins_over_allow() -> None:
    policy = SourcePolicy.of(["127.0.0.0/8"], ["127.0.0.3"])
    assert policy.refuses(peer_address("127.0.0.2")) is None
    assert policy.refuses(peer_address("127.0.0.3")) == "deny"
    assert policy.refuses(peer_address("10.0.0.1")) == "not_allowed"


def test_ipv6_and_mapped_ipv4() -> None:
    policy = SourcePolicy.of(["::1/128", "10.0.0.0/8"], [])
    assert policy.refuses(peer_address("::1")) is None
    assert policy.refuses(peer_address("::ffff:10.1.2.3")) is None
    assert policy.refuses(peer_address("fe80::1%eth0")) == "not_allowed"
    assert policy.refuses(peer_address("::2")) == "not_allowed"


def test_deny_only_admits_the_rest() -> None:
    policy = SourcePolicy.of([], ["192.0.2.0/24"])
    assert policy.refuses(peer_address("192.0.2.200")) == "deny"
    assert policy.refuses(peer_address("192.0.3.1")) is None


@pytest.mark.parametrize("text", ["10.0.0.1/8", "nonsense", "10.0.0.0/33", ""])
def test_bad_networks_are_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_network(text)


def test_trusted_proxies() -> None:
    trusted = TrustedProxies.of(["127.0.0.2/32"])
    assert trusted.trusts(peer_address("127.0.0.2"))
    assert not trusted.trusts(peer_address("127.0.0.1"))
    assert not trusted.trusts(None)
    assert not TrustedProxies.of([]).trusts(peer_address("127.0.0.2"))


def test_source_limit_counts_and_forgets() -> None:
    limit = SourceLimit(2)
    assert limit.acquire("a") and limit.acquire("a")
    assert not limit.acquire("a")
    assert limit.acquire("b")
    limit.release("a")
    assert limit.acquire("a")
    for _ in range(3):
        limit.release("a")
    limit.release("b")
    assert limit.counts == {}  # memory follows open sessions


def test_source_limit_zero_is_no_limit() -> None:
    limit = SourceLimit(0)
    assert all(limit.acquire("a") for _ in range(1000))
    assert limit.counts == {}
