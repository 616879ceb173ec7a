import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.core.health import ADMIN_STATES, SPREAD, SPREAD_MAX, HealthState, Transition, check_at

PROPERTY = settings(max_examples=300, deadline=None, database=None)


def make(rise=2, fall=3, interval=1.0, down_backoff_max=8.0, initial="up", jitter=0.0):
    return HealthState(rise, fall, interval, down_backoff_max, initial=initial, jitter=jitter)


def checked_up(**kwargs):
    """A backend that passed its first check: up, at the top of its level."""
    h = make(**kwargs)
    assert h.check_passed(0.0) is None
    assert h.up and h.available
    return h


def checked_down(**kwargs):
    """A backend that has been checked down (initial down, one failed check)."""
    h = make(initial="down", **kwargs)
    assert h.check_failed(0.0, "connection refused") is None
    assert not h.up
    return h


# -- rise / fall edges ------------------------------------------------------------------


@pytest.mark.parametrize("rise", [1, 2, 3, 5])
def test_rise_consecutive_successes_bring_a_down_backend_up_and_one_fewer_does_not(rise):
    h = checked_down(rise=rise)
    for i in range(rise - 1):
        assert h.check_passed(1.0 + i) is None
        assert not h.up and not h.available
    transition = h.check_passed(10.0)
    assert transition == Transition("up", f"{rise}/{rise} checks passed")
    assert h.up and h.available and h.state == "up"
    assert h.since == 10.0


@pytest.mark.parametrize("fall", [1, 2, 3, 5])
def test_fall_consecutive_failures_mark_an_up_backend_down_and_one_fewer_does_not(fall):
    h = checked_up(fall=fall)
    for i in range(fall - 1):
        assert h.check_failed(1.0 + i, "timeout") is None
        assert h.up and h.available  # failed checks alone do not make it suspect
    transition = h.check_failed(10.0, "timeout")
    assert transition == Transition("down", f"{fall}/{fall} checks failed: timeout")
    assert not h.up and not h.available and h.state == "down"
    assert h.since == 10.0


def test_a_success_between_failures_resets_the_failure_count():
    h = checked_up(fall=3)
    assert h.check_failed(1.0, "refused") is None
    assert h.check_failed(2.0, "refused") is None
    assert h.check_passed(3.0) is None
    assert h.check_failed(4.0, "refused") is None
    assert h.check_failed(5.0, "refused") is None
    assert h.up  # never 3 in a row so far
    assert h.check_failed(6.0, "refused") == Transition("down", "3/3 checks failed: refused")


def test_a_failure_between_successes_restarts_the_rise():
    h = checked_down(rise=3)
    assert h.check_passed(1.0) is None
    assert h.check_passed(2.0) is None
    assert h.check_failed(3.0, "refused") is None
    assert h.check_passed(4.0) is None
    assert h.check_passed(5.0) is None
    assert not h.up  # never 3 in a row so far
    assert h.check_passed(6.0) == Transition("up", "3/3 checks passed")


def test_alternating_results_never_change_the_state_when_rise_and_fall_are_above_one():
    up = checked_up(rise=2, fall=2)
    down = checked_down(rise=2, fall=2)
    for i in range(50):
        for h in (up, down):
            assert h.check_failed(float(i), "refused") is None
            assert h.check_passed(i + 0.5) is None
    assert up.up and not down.up


def test_repeated_successes_on_an_up_backend_and_failures_on_a_down_one_are_silent():
    h = checked_up()
    assert all(h.check_passed(float(i)) is None for i in range(10))
    for i in range(3):
        h.check_failed(20.0 + i, "refused")
    assert not h.up
    assert all(h.check_failed(30.0 + i, "refused") is None for i in range(10))
    assert h.since == 22.0  # when it went down, not the last failure


def test_rise_and_fall_below_one_are_refused():
    with pytest.raises(ValueError):
        make(rise=0)
    with pytest.raises(ValueError):
        make(fall=0)


# -- initial state -----------------------------------------------------------------------


def test_initial_up_counts_as_up_before_any_check():
    h = make(initial="up")
    assert h.up and h.available and h.state == "up"
    assert not h.checked and h.since is None and h.last_check is None


def test_initial_up_goes_down_at_a_single_failure_before_the_first_success():
    h = make(initial="up", fall=3)
    transition = h.check_failed(1.0, "connection refused")
    assert transition is not None and transition.to == "down"
    assert "connection refused" in transition.cause
    assert not h.up and not h.available
    assert h.checked and h.last_check == 1.0 and h.last_error == "connection refused"


def test_initial_up_goes_down_at_a_single_traffic_failure_before_the_first_success():
    h = make(initial="up", fall=3)
    transition = h.traffic_failed(1.0, "reset")
    assert transition is not None and transition.to == "down"
    assert not h.up and not h.suspect


def test_initial_up_after_its_first_success_needs_fall_failures():
    h = make(initial="up", fall=3)
    assert h.check_passed(1.0) is None  # already up: no transition
    assert h.check_failed(2.0, "refused") is None
    assert h.check_failed(3.0, "refused") is None
    assert h.check_failed(4.0, "refused") is not None


def test_initial_up_reaches_up_after_a_failure_with_rise_successes():
    h = make(initial="up", rise=2)
    h.check_failed(1.0, "refused")
    assert h.check_passed(2.0) is None
    assert h.check_passed(3.0) == Transition("up", "2/2 checks passed")


@pytest.mark.parametrize("rise", [1, 2, 4])
def test_initial_down_needs_rise_successes(rise):
    h = make(initial="down", rise=rise)
    assert not h.up and not h.available and h.state == "down"
    for i in range(rise - 1):
        assert h.check_passed(float(i)) is None
        assert not h.up
    assert h.check_passed(9.0) == Transition("up", f"{rise}/{rise} checks passed")
    assert h.up


def test_initial_down_does_not_go_up_on_traffic_success():
    h = make(initial="down")
    h.traffic_succeeded(1.0)
    assert not h.up and not h.available


# -- passive observation -------------------------------------------------------------------


def test_a_traffic_failure_makes_an_up_backend_suspect_and_unavailable_but_still_up():
    h = checked_up(fall=3)
    assert h.traffic_failed(1.0, "refused") is None
    assert h.up and h.state == "up"
    assert h.suspect and not h.available
    assert h.last_error == "refused"


def test_a_passing_check_clears_suspicion():
    h = checked_up(fall=3)
    h.traffic_failed(1.0, "refused")
    assert h.check_passed(2.0) is None
    assert not h.suspect and h.available


def test_a_successful_connect_clears_suspicion():
    h = checked_up(fall=3)
    h.traffic_failed(1.0, "refused")
    h.traffic_succeeded(2.0)
    assert not h.suspect and h.available


def test_a_failed_check_keeps_a_suspect_backend_suspect():
    h = checked_up(fall=3)
    h.traffic_failed(1.0, "refused")
    assert h.check_failed(2.0, "refused") is None
    assert h.up and h.suspect and not h.available


def test_traffic_failures_count_as_failures_towards_fall():
    h = checked_up(fall=3)
    assert h.traffic_failed(1.0, "reset") is None
    assert h.traffic_failed(2.0, "reset") is None
    transition = h.traffic_failed(3.0, "reset")
    assert transition == Transition("down", "3/3 connections from traffic failed: reset")
    assert not h.up and not h.suspect and not h.available
    assert h.since == 3.0


def test_traffic_and_check_failures_add_up():
    h = checked_up(fall=3)
    h.traffic_failed(1.0, "refused")
    h.traffic_failed(2.0, "refused")
    transition = h.check_failed(3.0, "connection refused")
    assert transition is not None and transition.to == "down"
    assert transition.cause.endswith("connection refused")


def test_a_successful_connect_resets_the_failure_count():
    h = checked_up(fall=3)
    h.traffic_failed(1.0, "refused")
    h.traffic_failed(2.0, "refused")
    h.traffic_succeeded(3.0)
    assert h.traffic_failed(4.0, "refused") is None
    assert h.traffic_failed(5.0, "refused") is None
    assert h.up


def test_a_successful_connect_does_not_undo_failed_checks():
    """A backend that accepts connections but fails its checks still goes down."""
    h = checked_up(fall=2)
    assert h.check_failed(1.0, "reset") is None
    h.traffic_succeeded(1.5)
    transition = h.check_failed(2.0, "reset")
    assert transition is not None and transition.to == "down"


def test_a_traffic_failure_while_rising_restarts_the_rise():
    h = checked_down(rise=2)
    h.check_passed(1.0)
    assert h.traffic_failed(2.0, "refused") is None
    assert not h.suspect  # only an up backend becomes suspect
    assert h.check_passed(3.0) is None
    assert not h.up
    assert h.check_passed(4.0) is not None


def test_a_backend_back_up_after_a_passive_fall_is_not_suspect():
    h = checked_up(rise=1, fall=1)
    h.traffic_failed(1.0, "refused")
    assert h.check_passed(2.0) == Transition("up", "1/1 checks passed")
    assert h.available and not h.suspect


# -- causes ----------------------------------------------------------------------------------


def test_transitions_carry_their_causes():
    h = checked_up(rise=2, fall=3)
    down = [h.check_failed(t, "connection refused") for t in (1.0, 2.0, 3.0)]
    assert down == [None, None, Transition("down", "3/3 checks failed: connection refused")]
    up = [h.check_passed(t) for t in (4.0, 5.0)]
    assert up == [None, Transition("up", "2/2 checks passed")]


def test_the_last_error_and_check_time_are_kept():
    h = checked_up()
    h.check_failed(7.5, "timeout")
    assert h.last_error == "timeout" and h.last_check == 7.5
    h.check_passed(8.5)
    assert h.last_check == 8.5


# -- admin state -------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["drain", "maint"])
def test_drain_and_maint_make_an_up_backend_unavailable_but_leave_it_up(state):
    h = checked_up()
    h.set_admin(state)
    assert h.up and h.state == "up"
    assert not h.available
    h.set_admin("ready")
    assert h.available


def test_admin_state_does_not_change_the_operational_state_of_a_down_backend():
    h = checked_down()
    for state in ADMIN_STATES:
        h.set_admin(state)
        assert not h.up and not h.available


def test_a_backend_in_drain_still_moves_up_and_down_by_checks():
    h = checked_up(rise=1, fall=1)
    h.set_admin("drain")
    assert h.check_failed(1.0, "refused") is not None
    assert h.check_passed(2.0) is not None
    assert h.up and not h.available


def test_only_maint_stops_checks():
    h = checked_up()
    assert h.checks_enabled
    h.set_admin("drain")
    assert h.checks_enabled
    h.set_admin("maint")
    assert not h.checks_enabled
    h.set_admin("ready")
    assert h.checks_enabled


def test_set_admin_returns_a_transition_only_on_change():
    h = checked_up()
    assert h.set_admin("ready") is None
    assert h.set_admin("drain") == Transition("drain", "operator: ready -> drain")
    assert h.set_admin("drain") is None
    assert h.set_admin("maint") == Transition("maint", "operator: drain -> maint")
    assert h.set_admin("ready") == Transition("ready", "operator: maint -> ready")
    assert h.admin == "ready"


def test_set_admin_rejects_unknown_states():
    h = checked_up()
    with pytest.raises(ValueError, match="unknown admin state"):
        h.set_admin("disabled")  # type: ignore[arg-type]
    assert h.admin == "ready" and h.available


# -- re-check scheduling ---------------------------------------------------------------------------


def test_an_up_backend_is_checked_every_interval():
    h = checked_up(interval=2.0, down_backoff_max=30.0, jitter=0.5)
    rng = random.Random(1)
    assert [h.next_check_in(rng) for _ in range(5)] == [2.0] * 5
    h.check_failed(1.0, "refused")  # failing but still up
    assert h.next_check_in(rng) == 2.0


def test_a_down_backend_is_rechecked_with_exponential_backoff_up_to_the_maximum():
    h = checked_up(fall=1, interval=1.0, down_backoff_max=8.0, jitter=0.0)
    rng = random.Random(1)
    h.check_failed(0.0, "refused")
    delays = [h.next_check_in(rng)]
    for t in range(1, 7):
        h.check_failed(float(t), "refused")
        delays.append(h.next_check_in(rng))
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]


def test_down_backoff_jitter_stays_within_bounds():
    h = checked_up(fall=1, interval=1.0, down_backoff_max=8.0, jitter=0.1)
    rng = random.Random(1234)
    h.check_failed(0.0, "refused")
    assert h.next_check_in(rng) == 1.0
    for t, base in enumerate([2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0], start=1):
        h.check_failed(float(t), "refused")
        samples = [h.next_check_in(rng) for _ in range(100)]
        assert all(base * 0.9 <= s <= base * 1.1 for s in samples)
        assert max(samples) <= 8.0 * 1.1
        assert len(set(samples)) > 1  # jitter is applied


def test_the_backoff_never_exceeds_down_backoff_max_however_long_it_stays_down():
    h = checked_down(interval=0.5, down_backoff_max=30.0, jitter=0.0)
    rng = random.Random(0)
    for t in range(10_000):
        h.check_failed(float(t), "refused")
    assert h.next_check_in(rng) == 30.0


def test_a_single_success_brings_the_recheck_back_to_the_interval():
    h = checked_up(rise=3, fall=1, interval=1.0, down_backoff_max=8.0, jitter=0.0)
    rng = random.Random(1)
    for t in range(6):
        h.check_failed(float(t), "refused")
    assert h.next_check_in(rng) == 8.0
    assert h.check_passed(10.0) is None  # still down: 1/3
    assert not h.up
    assert h.next_check_in(rng) == 1.0
    h.check_failed(11.0, "refused")  # the rise is broken: backoff starts over
    assert h.next_check_in(rng) == 1.0
    h.check_failed(12.0, "refused")
    assert h.next_check_in(rng) == 2.0


def test_down_backoff_max_below_the_interval_keeps_the_interval():
    h = checked_up(fall=1, interval=5.0, down_backoff_max=1.0, jitter=0.0)
    rng = random.Random(1)
    for t in range(5):
        h.check_failed(float(t), "refused")
        assert h.next_check_in(rng) == 5.0


def test_a_passive_fall_rechecks_at_the_interval_first():
    h = checked_up(fall=1, interval=1.0, down_backoff_max=8.0, jitter=0.0)
    h.traffic_failed(0.0, "refused")
    assert not h.up
    assert h.next_check_in(random.Random(1)) == 1.0


# -- properties --------------------------------------------------------------------------------


class Model:
    """Counts runs of results the way product.md describes rise and fall."""

    def __init__(self, initial):
        self.passes = 0  # consecutive passing checks
        self.failures = 0  # consecutive failures (checks or traffic)
        self.check_failures = 0  # consecutive failed checks: a successful connect keeps them
        self.any_success = False
        self.initial = initial


def check_transition(model, before_up, transition, rise, fall):
    if transition is None:
        return
    if transition.to == "up":
        assert not before_up
        assert model.passes >= rise, f"up after {model.passes} passes (rise {rise})"
    else:
        assert transition.to == "down"
        assert before_up
        early = model.initial == "up" and not model.any_success  # before the first success
        assert model.failures >= (1 if early else fall), f"down after {model.failures} failures"


params = {
    "rise": st.integers(min_value=1, max_value=5),
    "fall": st.integers(min_value=1, max_value=5),
    "initial": st.sampled_from(["up", "down"]),
}


@PROPERTY
@given(results=st.lists(st.booleans(), max_size=200), **params)
def test_checks_change_the_state_no_faster_than_rise_and_fall_allow(results, rise, fall, initial):
    h = make(rise=rise, fall=fall, initial=initial)
    model = Model(initial)
    transitions = []
    for t, passed in enumerate(results):
        before = h.up
        if passed:
            model.passes += 1
            model.failures = 0
            transition = h.check_passed(float(t))
        else:
            model.failures += 1
            model.passes = 0
            transition = h.check_failed(float(t), "refused")
        check_transition(model, before, transition, rise, fall)
        model.any_success |= passed
        if transition is not None:
            transitions.append(transition.to)
        assert h.state == ("up" if h.up else "down")
    # transitions alternate and each one needed its run of results
    assert all(a != b for a, b in itertools.pairwise(transitions))
    successes, failures = results.count(True), results.count(False)
    assert transitions.count("up") <= successes // rise
    assert transitions.count("down") <= failures // fall + (1 if initial == "up" else 0)


@PROPERTY
@given(
    events=st.lists(st.sampled_from(["pass", "fail", "traffic_fail", "traffic_ok"]), max_size=200),
    **params,
)
def test_checks_and_traffic_change_the_state_no_faster_than_rise_and_fall_allow(
        events, rise, fall, initial):
    h = make(rise=rise, fall=fall, initial=initial)
    model = Model(initial)
    for t, event in enumerate(events):
        now = float(t)
        before = h.up
        if event == "pass":
            model.passes += 1
            model.failures = model.check_failures = 0
            transition = h.check_passed(now)
        elif event == "traffic_ok":
            if before:  # a connect to an up backend forgives traffic failures, not failed
                # checks; a down one does not rise by traffic
                model.failures = model.check_failures
            h.traffic_succeeded(now)
            transition = None
        else:
            model.failures += 1
            model.passes = 0
            if event == "fail":
                model.check_failures += 1
            fail = h.check_failed if event == "fail" else h.traffic_failed
            transition = fail(now, "refused")
        check_transition(model, before, transition, rise, fall)
        if transition is None:
            assert h.up == before, "state changed without a transition"
        if event == "pass" or (event == "traffic_ok" and before):
            model.any_success = True
        # available means up, ready and not suspect; only an up backend can be suspect
        assert h.available == (h.up and not h.suspect)
        assert not h.suspect or h.up
        if event == "traffic_fail" and h.up:
            assert h.suspect and not h.available
        if event in ("pass", "traffic_ok") and h.up:
            assert h.available


@PROPERTY
@given(
    results=st.lists(st.booleans(), max_size=100),
    interval=st.floats(min_value=0.01, max_value=60.0),
    down_backoff_max=st.floats(min_value=0.0, max_value=600.0),
    jitter=st.floats(min_value=0.0, max_value=0.5),
    seed=st.integers(0, 2**32),
)
def test_next_check_stays_between_the_jittered_interval_and_the_jittered_cap(
        results, interval, down_backoff_max, jitter, seed):
    h = make(rise=2, fall=2, interval=interval, down_backoff_max=down_backoff_max, jitter=jitter)
    rng = random.Random(seed)
    cap = max(interval, down_backoff_max)
    for t, passed in enumerate(results):
        if passed:
            h.check_passed(float(t))
        else:
            h.check_failed(float(t), "refused")
        delay = h.next_check_in(rng)
        if h.up:
            assert delay == interval
        assert interval * (1 - jitter) * (1 - 1e-12) <= delay <= cap * (1 + jitter) * (1 + 1e-12)


def test_down_cause_counts_what_really_failed():
    fresh = HealthState(rise=2, fall=3, interval=1.0, down_backoff_max=8.0, initial="up")
    # counted as up before its first check: one failure is enough, and the cause says one
    assert fresh.check_failed(0.0, "refused") == Transition("down", "1/3 checks failed: refused")
    h = checked_up(fall=3)
    h.traffic_failed(1.0, "reset")
    h.traffic_failed(2.0, "reset")
    assert h.check_failed(3.0, "refused") == Transition(
        "down", "1 checks and 2 connections failed: refused")


# -- when checks run (check_at) ------------------------------------------------------------


@PROPERTY
@given(
    now=st.floats(min_value=0.0, max_value=1e7),
    delay=st.floats(min_value=-1.0, max_value=600.0),
    interval=st.floats(min_value=0.001, max_value=600.0),
    seed=st.integers(0, 2**32),
)
def test_a_check_never_runs_early_and_at_most_the_spread_late(now, delay, interval, seed):
    at = check_at(now, delay, interval, random.Random(seed))
    if delay <= 0:
        assert at == now
        return
    late = min(interval * SPREAD, SPREAD_MAX)
    assert now + delay <= at < now + delay + late * (1 + 1e-9) + 1e-6  # (float rounding)


def test_checks_due_close_together_share_their_start():
    rng = random.Random(7)
    interval = 2.0  # slots of 50 ms
    dues = [1000.001 + i * 0.001 for i in range(40)]  # all within one slot
    starts = [check_at(due - interval, interval, interval, rng) for due in dues]
    assert all(start >= due for start, due in zip(starts, dues, strict=True))
    # two starts for 40 checks: their slot, or the next one for a random half of them
    assert len(set(starts)) == 2
    assert 10 <= starts.count(min(starts)) <= 30


class FixedGrid(random.Random):
    """An RNG that never moves a check to the next slot: check_at as a pure grid."""

    def random(self):
        return 0.99


def flapped(rng, interval=2.0, checks=400):
    """A backend flapping with a period equal to the check interval (down for the first half
    of each period, up for the second), checked at check_at's times by a HealthState, each
    check done at once. Which tenths of the flap's period the checks saw, and how often the
    backend went down."""
    h = make(rise=2, fall=2, interval=interval, down_backoff_max=interval)
    t = 1024.0 + 0.75 * interval  # the first check in the up half
    seen, downs = set(), 0
    for _ in range(checks):
        phase = (t % interval) / interval
        seen.add(int(phase * 10))
        transition = h.check_passed(t) if phase >= 0.5 else h.check_failed(t, "refused")
        downs += transition is not None and transition.to == "down"
        t = check_at(t, h.next_check_in(rng), interval, rng)
    return seen, downs


@pytest.mark.parametrize("seed", range(5))
def test_checks_do_not_phase_lock_with_a_backend_flapping_at_the_interval(seed):
    seen, downs = flapped(random.Random(seed))
    assert seen == set(range(10))  # the phase drifted over the whole flap period
    assert downs >= 1  # so the checks saw the backend down, not steady


def test_on_a_fixed_grid_the_same_flap_looks_steady():
    """What the draw in check_at is for: without it the period is fixed to the grid, every
    check lands in the same tenth of the flap, and the backend looks up throughout."""
    seen, downs = flapped(FixedGrid(0))
    assert seen == {7}
    assert downs == 0
