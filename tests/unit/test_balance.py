from collections import Counter

import pytest

from relay.core.balance import First, LeastConn, RoundRobin, make_balancer


def test_first_always_prefers_the_first_available_in_config_order():
    b = First()
    assert b.order([2, 0, 1], [1, 1, 1], [5, 5, 0]) == [0, 1, 2]
    assert b.order([1, 2], [1, 1, 1], [0, 0, 0])[0] == 1


def test_round_robin_rotates_equal_weights():
    b = RoundRobin()
    picks = [b.order([0, 1, 2], [1, 1, 1], [0, 0, 0])[0] for _ in range(6)]
    assert picks == [0, 1, 2, 0, 1, 2]


def test_round_robin_is_smooth_and_honours_weights():
    b = RoundRobin()
    picks = [b.order([0, 1], [3, 1], [0, 0])[0] for _ in range(8)]
    assert Counter(picks) == {0: 6, 1: 2}
    assert picks[:4] == [0, 0, 1, 0]  # spread out, not 0 0 0 1


def test_round_robin_order_lists_every_candidate_once_for_retries():
    b = RoundRobin()
    order = b.order([0, 1, 2], [1, 1, 1], [0, 0, 0])
    assert sorted(order) == [0, 1, 2]


def test_least_conn_picks_fewest_sessions_per_weight():
    b = LeastConn()
    assert b.order([0, 1, 2], [1, 1, 1], [4, 1, 3])[0] == 1
    assert b.order([0, 1], [4, 1], [4, 2])[0] == 0  # 4/4 < 2/1


def test_least_conn_ties_rotate():
    b = LeastConn()
    picks = {b.order([0, 1, 2], [1, 1, 1], [0, 0, 0])[0] for _ in range(6)}
    assert picks == {0, 1, 2}


def test_no_candidates_gives_empty_order():
    for b in (First(), RoundRobin(), LeastConn()):
        assert b.order([], [], []) == []


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError):
        make_balancer("random")
