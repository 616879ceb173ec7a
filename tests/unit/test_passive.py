"""Passive health's rule (relay/core/passive.py) and how a backend group carries it out,
on a fake clock: only a check can turn what a client may have provoked into a failure."""

from __future__ import annotations

import random
import socket
from typing import Any

import pytest

from relay.config import parse_config
from relay.core.passive import EarlyCheck, Verdict, judge_backend_end
from relay.net.backends import Backend, BackendGroup, FollowerGroup
from relay.net.reactor import Reactor
from relay.net.resolve import SockAddr
from tests.support.fakeclock import Reactors

# -- the rule ----------------------------------------------------------------------------


@pytest.mark.parametrize("reset", [True, False])
def test_an_end_after_the_backend_spoke_says_nothing_about_it(reset):
    assert judge_backend_end(reset=reset, backend_spoke=True, backend_fin=False) is Verdict.IGNORE
    assert judge_backend_end(reset=reset, backend_spoke=True, backend_fin=True) is Verdict.IGNORE


def test_a_reset_after_the_backends_own_fin_is_the_clients_business():
    assert judge_backend_end(reset=True, backend_spoke=False, backend_fin=True) is Verdict.IGNORE


def test_a_reset_or_a_close_before_the_first_byte_asks_for_a_check():
    assert judge_backend_end(reset=True, backend_spoke=False, backend_fin=False) is Verdict.CHECK
    assert judge_backend_end(reset=False, backend_spoke=False, backend_fin=True) is Verdict.CHECK


def test_early_checks_none_while_one_runs_and_at_most_one_per_interval():
    early = EarlyCheck()
    assert not early.request(10.0, interval=2.0, in_flight=True)
    assert early.request(10.0, interval=2.0, in_flight=False)
    granted = sum(early.request(10.0 + i * 0.001, 2.0, False) for i in range(1, 1999))
    assert granted == 0  # 2,000 asks within one interval: the first only
    assert early.request(12.0, 2.0, False)


# -- a backend group on a fake clock -----------------------------------------------------------


class FakeChecker:
    def __init__(self) -> None:
        self.in_flight = False
        self.early = 0

    def check_now(self) -> None:
        self.early += 1
        self.in_flight = True


def group_of(reactors: Reactors, kind: str = "tcp", backends: int = 2,
             group_type: type[BackendGroup] = BackendGroup, **retry: Any) -> tuple[BackendGroup, Reactor]:
    retry_toml = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in retry.items())
    lines = [f'[[listener]]\nname = "l"\nlisten = "127.0.0.1:0"\n'
             f'[listener.health]\nkind = "{kind}"\ninterval = "2s"\nfall = 3\n'
             f"[listener.retry]\n{retry_toml}"]
    lines += [f'[[listener.backend]]\nname = "b{i}"\naddress = "127.0.0.1:{1000 + i}"\ntier = {i}\n'
              for i in range(backends)]
    config = parse_config("\n".join(lines))
    (lc,) = config.listeners
    reactor = reactors(100.0)  # a real Reactor on a hand-moved clock: its loop never runs
    members = [Backend(bc, SockAddr(socket.AF_INET, ("127.0.0.1", 1000 + i)), lc)
               for i, bc in enumerate(lc.backends)]
    return group_type(reactor, lc, members, random.Random(7)), reactor


def test_resets_before_the_first_byte_never_move_the_tier_only_ask_for_checks(reactors):
    group, reactor = group_of(reactors)
    primary = group.backends[0]
    checker = FakeChecker()
    primary.checker = checker  # type: ignore[assignment]
    for i in range(1000):  # a hostile client's resets, as fast as it likes
        reactor.now += 0.001
        group.backend_ended(primary, reset=True, spoke=False, fin=False)
        if i % 10 == 0:
            checker.in_flight = False  # the early check is done (and passed: nothing changes)
    assert primary.health.available and group.tiers.serving == 0
    assert checker.early == 1  # one second of asking: one early check (interval 2 s)
    reactor.now += 2.0
    group.backend_ended(primary, reset=False, spoke=False, fin=True)
    assert checker.early == 2


def test_ends_the_client_provoked_ask_for_nothing(reactors):
    group, _ = group_of(reactors)
    primary = group.backends[0]
    checker = FakeChecker()
    primary.checker = checker  # type: ignore[assignment]
    group.backend_ended(primary, reset=True, spoke=True, fin=False)  # QUIT, +OK, late bytes
    group.backend_ended(primary, reset=True, spoke=False, fin=True)  # idle past timeout, then wrote
    assert checker.early == 0


def test_with_health_none_nothing_is_asked(reactors):
    group, _ = group_of(reactors, kind="none")
    primary = group.backends[0]
    checker = FakeChecker()
    primary.checker = checker  # type: ignore[assignment]
    group.backend_ended(primary, reset=True, spoke=False, fin=False)
    assert checker.early == 0


def test_a_worker_asks_the_supervisor_for_the_check_rate_limited_too(reactors):
    group, reactor = group_of(reactors, group_type=FollowerGroup)
    assert isinstance(group, FollowerGroup)
    asked: list[str] = []
    group.report_check = lambda g, b: asked.append(b.name)
    for _ in range(100):
        reactor.now += 0.01
        group.backend_ended(group.backends[0], reset=True, spoke=False, fin=False)
    assert asked == ["b0"]


def test_a_connect_failure_still_counts_at_once(reactors):
    group, _ = group_of(reactors)
    group.connect_failed(group.backends[0], "refused: Connection refused")
    assert not group.backends[0].health.available
    assert group.tiers.serving == 1


# -- retry order and the last-resort gate --------------------------------------------------


def test_an_untried_candidate_is_tried_at_once_a_tried_one_waits(reactors):
    group, _ = group_of(reactors)
    primary, backup = group.backends
    group.connect_failed(primary, "refused: Connection refused")  # suspect: backup serves
    assert group.choose([primary], untried_only=True) is backup  # no backoff before it
    assert group.choose([primary, backup], untried_only=True) is None  # now a backoff step


def test_with_every_backend_down_n_clients_cost_one_connect_per_backend_per_backoff_step(reactors):
    group, reactor = group_of(reactors, backoff_initial="50ms", backoff_max="1s", multiplier=2.0,
                              jitter=0.2)
    for b in group.backends:
        group.connect_failed(b, "refused: Connection refused")
    assert not any(b.health.available for b in group.backends)
    window, clients = 2.0, 2000
    start = reactor.now
    connects = 0
    for i in range(clients):  # a new client every millisecond, each trying what it may
        reactor.now = start + window * i / clients
        tried: list[Backend] = []
        while (backend := group.choose(tried, untried_only=bool(tried))) is not None:
            tried.append(backend)
            connects += 1
            group.connect_failed(backend, "refused: Connection refused")
    # steps of at least 40, 80, 160, 320, 640, 800 ms (jitter -20%) fit 2 s six times at most,
    # plus the first: 7 per backend
    assert connects <= 2 * 7, connects
    assert connects >= 2  # the gate does open: health may be wrong


def test_a_success_through_the_gate_opens_it_again(reactors):
    group, _ = group_of(reactors, backends=1)
    (only,) = group.backends
    group.connect_failed(only, "refused: Connection refused")
    assert group.choose([]) is only  # the gate's one try
    assert group.choose([]) is None  # closed for a step: this client is refused at once
    only.gate.succeeded()
    assert group.choose([]) is only
