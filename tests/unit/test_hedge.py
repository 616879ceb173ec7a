from relay.core.hedge import (
    CAP_FRACTION,
    FLOOR,
    LOSING_STREAK,
    UNKNOWN,
    ConnectEstimate,
    HedgeBudget,
)


def test_unknown_backend_hedges_after_the_default_capped_by_connect_timeout():
    e = ConnectEstimate()
    assert e.hedge_after(2.0) == UNKNOWN
    assert e.hedge_after(0.1) == 0.1 * CAP_FRACTION


def test_fast_backend_is_floored():
    e = ConnectEstimate()
    for _ in range(10):
        e.observe(0.0001)
    assert e.hedge_after(2.0) == FLOOR


def test_hedge_after_is_a_multiple_of_the_usual_connect_time():
    e = ConnectEstimate()
    for _ in range(32):
        e.observe(0.010)
    assert abs(e.hedge_after(2.0) - 0.040) < 1e-9  # 4 x EWMA beats 2 x p90 here


def test_a_slow_tail_raises_hedge_after_through_the_p90():
    e = ConnectEstimate()
    for i in range(32):
        e.observe(0.050 if i % 5 == 0 else 0.001)
    assert e.p90() == 0.050
    assert e.hedge_after(2.0) >= 0.100


def test_hedge_after_never_exceeds_a_quarter_of_connect_timeout():
    e = ConnectEstimate()
    for _ in range(32):
        e.observe(1.5)
    assert e.hedge_after(2.0) == 2.0 * CAP_FRACTION


def test_ewma_follows_recent_samples():
    e = ConnectEstimate(alpha=0.5)
    e.observe(0.010)
    e.observe(0.020)
    assert abs((e.ewma or 0) - 0.015) < 1e-12


def test_budget_caps_hedges_in_flight():
    b = HedgeBudget(limit=2)
    assert b.may_hedge("backup")
    b.started()
    b.started()
    assert not b.may_hedge("backup")
    b.finished("backup", True)
    assert b.may_hedge("backup")


def test_a_target_that_keeps_losing_is_not_hedged_towards():
    b = HedgeBudget(limit=100)
    for _ in range(LOSING_STREAK):
        b.started()
        b.finished("slow", False)
    assert not b.may_hedge("slow")
    assert b.may_hedge("other")
    b.target_succeeded("slow")  # a normal connect worked: it may be a hedge target again
    assert b.may_hedge("slow")


def test_a_win_resets_the_losing_streak_and_both_failed_does_not_count():
    b = HedgeBudget(limit=100)
    for _ in range(LOSING_STREAK - 1):
        b.finished("x", False)
    b.finished("x", None)
    assert b.may_hedge("x")
    b.finished("x", True)
    assert b.losing["x"] == 0


def test_p90_is_that_of_the_last_window_of_connects_exactly():
    import random

    rng = random.Random(3)
    e = ConnectEstimate(window=32)
    seen: list[float] = []
    for _ in range(500):
        value = rng.choice([rng.uniform(0, 0.01), rng.uniform(0, 2.0), 0.005])  # with repeats
        e.observe(value)
        seen.append(value)
        last = sorted(seen[-32:])
        assert e.p90() == last[min(len(last) - 1, int(0.9 * len(last)))]
        assert sorted(e.recent) == e.ordered and len(e.ordered) == min(len(seen), 32)
