import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.core.backoff import Backoff

PROPERTY = settings(max_examples=200, deadline=None, database=None)


def test_first_retry_waits_the_initial_delay():
    assert Backoff(0.05, 1.0, jitter=0.0).base(0) == 0.05


def test_base_grows_by_the_multiplier_from_initial():
    b = Backoff(0.1, 100.0, multiplier=2.0, jitter=0.0)
    assert [b.base(n) for n in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    b3 = Backoff(1.0, 100.0, multiplier=3.0, jitter=0.0)
    assert [b3.base(n) for n in range(4)] == [1.0, 3.0, 9.0, 27.0]


def test_base_is_capped_at_maximum():
    b = Backoff(0.05, 1.0, multiplier=2.0, jitter=0.0)
    assert b.base(4) == pytest.approx(0.8)
    assert b.base(5) == 1.0  # 1.6 would exceed the cap
    assert b.base(6) == 1.0
    assert b.base(50) == 1.0


def test_initial_above_maximum_is_capped_too():
    assert Backoff(5.0, 2.0, jitter=0.0).base(0) == 2.0


def test_negative_attempt_is_treated_as_the_first_retry():
    assert Backoff(0.25, 1.0).base(-3) == 0.25


def test_multiplier_one_keeps_a_constant_delay():
    b = Backoff(0.3, 1.0, multiplier=1.0, jitter=0.0)
    assert {b.base(n) for n in range(20)} == {0.3}


def test_huge_attempt_numbers_do_not_overflow():
    b = Backoff(0.05, 30.0, multiplier=2.0, jitter=0.2)
    assert b.base(10**9) == 30.0
    assert b.base(2**64) == 30.0
    assert 24.0 <= b.delay(10**9, random.Random(1)) <= 36.0
    # a float power would raise OverflowError here
    assert Backoff(1.0, float("inf"), multiplier=10.0, jitter=0.0).base(400) == float("inf")


def test_zero_jitter_gives_exactly_the_base_and_leaves_the_rng_alone():
    b = Backoff(0.1, 10.0, multiplier=2.0, jitter=0.0)
    rng = random.Random(7)
    state = rng.getstate()
    assert [b.delay(n, rng) for n in range(8)] == [b.base(n) for n in range(8)]
    assert rng.getstate() == state


def test_jittered_delay_stays_within_the_jitter_band():
    b = Backoff(0.1, 10.0, multiplier=2.0, jitter=0.2)
    rng = random.Random(42)
    for attempt in range(12):
        base = b.base(attempt)
        for _ in range(200):
            assert base * 0.8 <= b.delay(attempt, rng) <= base * 1.2


def test_jitter_actually_spreads_the_delays():
    b = Backoff(1.0, 1.0, jitter=0.5)
    rng = random.Random(3)
    delays = [b.delay(0, rng) for _ in range(500)]
    assert min(delays) < 0.6 and max(delays) > 1.4  # covers most of [0.5, 1.5]
    assert len(set(delays)) > 450


def test_same_seed_gives_the_same_delays():
    b = Backoff(0.05, 1.0, jitter=0.2)
    first = [b.delay(n, random.Random(9)) for n in range(10)]
    second = [b.delay(n, random.Random(9)) for n in range(10)]
    assert first == second


def test_delay_is_never_negative_even_with_jitter_above_one():
    b = Backoff(1.0, 1.0, jitter=3.0)
    rng = random.Random(5)
    assert all(b.delay(0, rng) >= 0.0 for _ in range(500))


backoffs = st.builds(
    Backoff,
    initial=st.floats(min_value=0.0, max_value=100.0),
    maximum=st.floats(min_value=0.0, max_value=1000.0),
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)


@PROPERTY
@given(b=backoffs, attempt=st.integers(min_value=0, max_value=200))
def test_base_never_decreases_and_never_exceeds_the_cap(b, attempt):
    this, following = b.base(attempt), b.base(attempt + 1)
    assert this <= following
    assert following <= b.maximum
    assert this >= min(b.initial, b.maximum)


@PROPERTY
@given(b=backoffs, attempt=st.integers(min_value=0, max_value=200), seed=st.integers(0, 2**32))
def test_delay_stays_within_base_times_one_plus_or_minus_jitter(b, attempt, seed):
    base = b.base(attempt)
    delay = b.delay(attempt, random.Random(seed))
    slack = 1e-12  # float rounding of base * (1 + u)
    assert delay >= 0.0
    assert base * (1 - b.jitter) * (1 - slack) <= delay <= base * (1 + b.jitter) * (1 + slack)
    assert delay <= b.maximum * (1 + b.jitter) * (1 + slack)
