from hypothesis import given, settings
from hypothesis import strategies as st

from relay.core.balance import Balancer, First, LeastConn, RoundRobin
from relay.core.candidates import BackendView, candidate_order, next_attempt

PROPERTY = settings(max_examples=200, deadline=None, database=None)


def up(tier, weight=1, active=0):
    return BackendView(tier=tier, weight=weight, active=active, available=True, admitting=True)


def down(tier):
    """Down or suspect, but admin ready: takes new sessions if nothing else can."""
    return BackendView(tier=tier, weight=1, active=0, available=False, admitting=True)


def drained(tier):
    """drain or maint: never takes new sessions."""
    return BackendView(tier=tier, weight=1, active=0, available=False, admitting=False)


class Recording(Balancer):
    """Reverses the candidates so balance order is visible, and records what it was asked."""

    def __init__(self):
        self.calls = []

    def order(self, candidates, weights, active):
        self.calls.append((list(candidates), list(weights), list(active)))
        return list(reversed(candidates))


# -- candidate_order ---------------------------------------------------------------------------


def test_serving_tier_comes_first_then_higher_tiers_then_lower_tiers():
    backends = [up(0), up(0), up(1), up(1), up(2), up(3)]
    assert candidate_order(backends, 1, First()) == [2, 3, 4, 5, 0, 1]


def test_higher_and_lower_tiers_are_each_in_ascending_tier_order():
    backends = [up(3), up(1), up(0), up(4), up(2)]
    assert candidate_order(backends, 2, First()) == [4, 0, 3, 2, 1]  # 2, 3, 4, then 0, 1


def test_each_tier_is_in_balance_order():
    backends = [up(0), up(0), up(0), up(1), up(1)]
    balancer = Recording()
    assert candidate_order(backends, 0, balancer) == [2, 1, 0, 4, 3]
    assert balancer.calls == [([0, 1, 2], [1] * 5, [0] * 5), ([3, 4], [1] * 5, [0] * 5)]


def test_the_balancer_sees_weights_and_active_sessions_by_position():
    backends = [up(0, weight=1, active=5), up(0, weight=1, active=1), up(1, weight=3, active=0)]
    assert candidate_order(backends, 0, LeastConn())[:2] == [1, 0]
    balancer = Recording()
    candidate_order(backends, 0, balancer)
    assert balancer.calls[0] == ([0, 1], [1, 1, 3], [5, 1, 0])


def test_round_robin_rotates_the_first_candidate_of_the_serving_tier():
    backends = [up(0), up(0), up(1)]
    balancer = RoundRobin()
    firsts = [candidate_order(backends, 0, balancer) for _ in range(4)]
    assert [o[0] for o in firsts] == [0, 1, 0, 1]
    assert all(o[2] == 2 for o in firsts)  # the backup stays last


def test_unavailable_backends_are_excluded():
    backends = [down(0), up(0), drained(0), down(1), up(1)]
    balancer = Recording()
    assert candidate_order(backends, 0, balancer) == [1, 4]
    assert [call[0] for call in balancer.calls] == [[1], [4]]


def test_a_serving_tier_with_nothing_available_starts_at_the_next_tier():
    backends = [down(0), up(1), up(2)]
    assert candidate_order(backends, 0, First()) == [1, 2]


def test_without_a_serving_tier_available_backends_go_lowest_tier_first():
    backends = [up(2), up(1), down(0)]
    assert candidate_order(backends, None, First()) == [1, 0]


def test_when_nothing_is_available_every_admitting_backend_is_tried_lowest_tier_first():
    backends = [down(1), drained(0), down(0), down(2), drained(1), down(0)]
    assert candidate_order(backends, 1, First()) == [2, 5, 0, 3]
    assert candidate_order(backends, None, First()) == [2, 5, 0, 3]


def test_the_fallback_does_not_ask_the_balancer():
    balancer = Recording()
    assert candidate_order([down(1), down(0)], 0, balancer) == [1, 0]
    assert balancer.calls == []


def test_drained_and_maintained_backends_are_never_candidates():
    assert candidate_order([drained(0), drained(1)], 0, First()) == []


def test_no_backends_means_no_candidates():
    assert candidate_order([], None, First()) == []
    assert candidate_order([], 0, First()) == []


tiers = st.integers(min_value=0, max_value=3)
views = st.builds(BackendView, tier=tiers, weight=st.integers(1, 5), active=st.integers(0, 10),
                  available=st.booleans(), admitting=st.booleans()).filter(
    lambda b: b.admitting or not b.available)  # available implies admin ready


@PROPERTY
@given(backends=st.lists(views, max_size=12), serving=st.none() | tiers)
def test_candidates_are_unique_and_follow_the_tier_rules(backends, serving):
    order = candidate_order(backends, serving, First())
    assert len(order) == len(set(order))
    available = [i for i, b in enumerate(backends) if b.available]
    if available:
        assert sorted(order) == available

        def rank(tier):
            if serving is None:
                return (0, tier)
            return (0, 0) if tier == serving else (1, tier) if tier > serving else (2, tier)

        ranks = [rank(backends[i].tier) for i in order]
        assert ranks == sorted(ranks)
    else:
        assert order == sorted((i for i, b in enumerate(backends) if b.admitting),
                               key=lambda i: (backends[i].tier, i))


# -- next_attempt ------------------------------------------------------------------------------


def test_next_attempt_takes_untried_candidates_first_in_order():
    order = [2, 0, 1]
    assert next_attempt(order, []) == 2
    assert next_attempt(order, [2]) == 0
    assert next_attempt(order, [2, 0]) == 1
    assert next_attempt(order, [0]) == 2


def test_next_attempt_then_takes_the_one_tried_longest_ago():
    order = [2, 0, 1]
    assert next_attempt(order, [2, 0, 1]) == 2
    assert next_attempt(order, [2, 0, 1, 2]) == 0
    assert next_attempt(order, [0, 2, 1, 0, 2]) == 1  # last tries: 1 at 2, 0 at 3, 2 at 4


def test_next_attempt_ignores_tries_of_backends_no_longer_candidates():
    assert next_attempt([0, 1], [5, 0, 1, 7]) == 0
    assert next_attempt([0, 1], [5]) == 0


def test_a_single_candidate_is_tried_again_and_again():
    tried = []
    for _ in range(5):
        pick = next_attempt([4], tried)
        assert pick == 4
        tried.append(pick)


def test_no_candidate_gives_none():
    assert next_attempt([], []) is None
    assert next_attempt([], [0, 1]) is None


@PROPERTY
@given(order=st.lists(st.integers(0, 20), unique=True, min_size=1, max_size=8),
       rounds=st.integers(1, 4))
def test_retrying_cycles_through_the_candidates_in_order(order, rounds):
    tried = []
    for _ in range(len(order) * rounds):
        tried.append(next_attempt(order, tried))
    assert tried == order * rounds


# -- retry order and the last-resort gate ---------------------------------------------------


def test_untried_only_gives_an_untried_candidate_or_none():
    assert next_attempt([0, 1, 2], [0], untried_only=True) == 1
    assert next_attempt([0, 1], [0, 1], untried_only=True) is None  # both tried: back off first
    assert next_attempt([0, 1], [0, 1]) == 0  # after the backoff: the one tried longest ago


def test_the_last_resort_gate_opens_once_per_backoff_step_on_a_fake_clock():
    import random

    import pytest

    from relay.core.backoff import Backoff
    from relay.core.candidates import LastResortGate

    backoff = Backoff(0.05, 1.0, 2.0, 0.0)
    gate, rng = LastResortGate(), random.Random(1)
    taken = []
    for ms in range(0, 3000):  # one client a millisecond for 3 s; every try fails
        now = ms / 1000
        if gate.take(now, backoff, rng):
            taken.append(round(now, 3))
            gate.failed()
    assert taken == pytest.approx([0.0, 0.05, 0.15, 0.35, 0.75, 1.55, 2.55], abs=0.005)  # (a ms tick)
    gate.succeeded()
    assert gate.take(3.0, backoff, rng) and not gate.take(3.0, backoff, rng)
