"""The edge keys of product.md §3: PROXY protocol both ways, allow/deny, per-source limits."""

from __future__ import annotations

import pytest

from relay.config import parse_config
from tests.unit.test_config import config_with, problems_of


def test_edge_keys_are_read() -> None:
    config = parse_config(config_with(
        listener='accept_proxy = "any"\ntrusted_proxies = ["127.0.0.2", "10.0.0.0/8"]\n'
                 'allow = ["127.0.0.0/8", "::1/128"]\ndeny = ["127.0.0.9/32"]\n'
                 'max_connections_per_source = 5\nproxy_protocol = "v1"',
        tables="[listener.health]\nsend_proxy = true"))
    listener = config.listeners[0]
    assert listener.accept_proxy == "any"
    assert listener.trusted_proxies == ("127.0.0.2/32", "10.0.0.0/8")
    assert listener.allow == ("127.0.0.0/8", "::1/128")
    assert listener.deny == ("127.0.0.9/32",)
    assert listener.max_connections_per_source == 5
    assert listener.proxy_protocol == "v1"
    assert listener.health.send_proxy is True


def test_edge_defaults_admit_everyone_and_send_nothing() -> None:
    listener = parse_config(config_with()).listeners[0]
    assert (listener.accept_proxy, listener.trusted_proxies, listener.allow, listener.deny) == (
        "off", (), (), ())
    assert listener.max_connections_per_source == 0
    assert listener.health.send_proxy is False


@pytest.mark.parametrize(("listener", "path", "message"), [
    ('allow = "10.0.0.0/8"', "listener[0].allow", "must be a list of CIDR strings"),
    ("deny = [1]", "listener[0].deny", "must be a list of CIDR strings"),
    ('deny = ["10.0.0.1/8"]', "listener[0].deny", "host bits must be zero"),
    ('allow = ["localhost"]', "listener[0].allow", "is not a CIDR"),
    ('accept_proxy = "v3"\ntrusted_proxies = ["127.0.0.1"]', "listener[0].accept_proxy", "v1"),
    ('accept_proxy = "v1"', "listener[0].trusted_proxies", "is required when accept_proxy"),
    ('trusted_proxies = ["127.0.0.1"]', "listener[0].trusted_proxies", "only used when"),
    ("max_connections_per_source = -1", "listener[0].max_connections_per_source", ">= 0"),
])
def test_bad_edge_keys(listener: str, path: str, message: str) -> None:
    problems = problems_of(config_with(listener=listener))
    assert [p.path for p in problems] == [path], problems
    assert message in problems[0].message


def test_bad_send_proxy() -> None:
    problems = problems_of(config_with(tables='[listener.health]\nsend_proxy = "yes"'))
    assert [p.path for p in problems] == ["listener[0].health.send_proxy"]


def test_send_proxy_needs_a_proxy_protocol() -> None:
    problems = problems_of(config_with(tables="[listener.health]\nsend_proxy = true"))
    assert [p.path for p in problems] == ["listener[0].health.send_proxy"]
    assert "needs proxy_protocol" in problems[0].message
