"""DNS discovery's pure part (relay.core.discovery) and its configuration keys."""

from __future__ import annotations

import pytest

from relay.config import parse_config
from relay.core.discovery import MAX_RECORDS, Diff, LookupLog, diff, discovered_name
from tests.unit.test_config import config_with, only_problem


def test_records_that_appear_are_added_that_go_are_drained_the_rest_kept() -> None:
    d = diff(["10.0.0.1:6379", "10.0.0.2:6379"], ["10.0.0.2:6379", "10.0.0.3:6379"])
    assert d == Diff(add=("10.0.0.3:6379",), drain=("10.0.0.1:6379",), keep=("10.0.0.2:6379",))
    assert d.changed


def test_the_same_answer_in_another_order_changes_nothing() -> None:
    d = diff(["a:1", "b:1"], ["b:1", "a:1", "b:1"])
    assert d == Diff((), (), ("a:1", "b:1"))
    assert not d.changed


def test_an_empty_answer_drains_nothing() -> None:
    assert diff(["a:1", "b:1"], []) == Diff((), (), ("a:1", "b:1"))


def test_the_first_answer_adds_everything() -> None:
    assert diff([], ["b:1", "a:1"]).add == ("a:1", "b:1")


def test_a_huge_answer_is_cut_to_max_records() -> None:
    answer = [f"10.0.{i // 256}.{i % 256}:1" for i in range(MAX_RECORDS * 3)]
    assert len(diff([], answer).add) == MAX_RECORDS


def test_names_of_discovered_backends() -> None:
    assert discovered_name("redis", "10.0.0.5:6379") == "redis/10.0.0.5:6379"
    assert discovered_name("redis", "[::1]:6379") == "redis/[::1]:6379"


def test_a_run_of_failures_is_logged_once_and_its_end_once() -> None:
    log = LookupLog()
    assert log.answered() is False
    assert [log.failed() for _ in range(3)] == [True, False, False]
    assert log.answered() is True
    assert log.answered() is False
    assert log.failed() is True


# --- configuration ------------------------------------------------------------------------

def _dns(backend: str, top: str = "") -> str:
    return config_with(top=top, backend=backend).replace(
        'address = "127.0.0.1:7001"', 'address = "redis-headless.db.svc:6379"')


def test_discover_and_resolve_interval_are_read() -> None:
    backend = parse_config(_dns('discover = "dns"\nresolve_interval = "5s"')).listeners[0].backends[0]
    assert (backend.discover, backend.resolve_interval) == ("dns", 5.0)
    default = parse_config(_dns("")).listeners[0].backends[0]
    assert (default.discover, default.resolve_interval) == ("off", 30.0)


@pytest.mark.parametrize(("backend", "path", "words"), [
    ('discover = "srv"', "listener[0].backend[0].discover", 'must be one of "off", "dns"'),
    ("discover = true", "listener[0].backend[0].discover", "must be one of"),
    ('discover = "dns"\nresolve_interval = "0s"', "listener[0].backend[0].resolve_interval",
     "> 0"),
    ('discover = "dns"\nresolve_interval = "soon"', "listener[0].backend[0].resolve_interval",
     ""),
    ('resolve_interval = "5s"', "listener[0].backend[0].resolve_interval",
     'only used when discover = "dns"'),
])
def test_bad_discovery_keys_are_named_by_path(backend: str, path: str, words: str) -> None:
    problem = only_problem(_dns(backend))
    assert problem.path == path
    assert words in problem.message


def test_dns_discovery_needs_a_host_name() -> None:
    problem = only_problem(config_with(backend='discover = "dns"'))
    assert problem.path == "listener[0].backend[0].discover"
    assert "needs a host name" in problem.message


def test_dns_discovery_needs_one_worker() -> None:
    problem = only_problem(_dns('discover = "dns"', top="[runtime]\nworkers = 2\n"))
    assert problem.path == "runtime.workers"
    assert 'discover = "dns"' in problem.message


def test_dns_discovery_does_not_mix_with_an_authority() -> None:
    text = _dns('discover = "dns"').replace(
        '[[listener.backend]]',
        '[listener.authority]\nkind = "redis_sentinel"\nsentinels = ["127.0.0.1:26379"]\n'
        'master_name = "m"\n\n[[listener.backend]]', 1)
    problem = only_problem(text)
    assert problem.path == "listener[0].backend[0].discover"
    assert "authority" in problem.message
