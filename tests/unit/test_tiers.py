import pytest

from relay.core.tiers import (
    DrainSchedule,
    FailbackRefused,
    TierChange,
    TierSelector,
    counts_as_failover,
)


def serving_on_backup(failback="auto", failback_delay=10.0):
    """Started on tier 0, failed over to tier 1 at t=1."""
    s = TierSelector(failback, failback_delay)
    assert s.update(0.0, [0, 1]) == TierChange(None, 0, "start")
    assert s.update(1.0, [1]) == TierChange(0, 1, "failover")
    return s


# -- start ------------------------------------------------------------------------------------


def test_start_picks_the_best_available_tier():
    s = TierSelector()
    assert s.update(0.0, [2, 1, 3]) == TierChange(None, 1, "start")
    assert s.serving == 1


def test_start_on_tier_zero_when_it_is_available():
    s = TierSelector()
    assert s.update(0.0, iter([1, 0])) == TierChange(None, 0, "start")
    assert s.serving == 0
    assert s.next_deadline() is None


def test_start_does_not_wait_for_failback_delay():
    s = TierSelector(failback_delay=10.0)
    s.update(0.0, [0, 1])
    assert s.serving == 0
    assert s.update(0.1, [0, 1]) is None


def test_start_with_nothing_available_serves_nothing_then_recovers():
    s = TierSelector()
    assert s.update(0.0, []) is None
    assert s.serving is None
    assert s.update(1.0, []) is None
    assert s.update(2.0, [1]) == TierChange(None, 1, "recovered")
    assert s.serving == 1


def test_unknown_failback_policy_is_refused():
    with pytest.raises(ValueError, match="failback"):
        TierSelector("sometimes")


# -- failover -----------------------------------------------------------------------------------


def test_failover_to_a_higher_tier_happens_at_once_when_the_serving_tier_has_nothing_available():
    s = TierSelector(failback_delay=10.0)
    s.update(0.0, [0, 1, 2])
    assert s.update(0.5, [1, 2]) == TierChange(0, 1, "failover")
    assert s.serving == 1
    assert s.update(0.6, [2]) == TierChange(1, 2, "failover")
    assert s.serving == 2


def test_failover_skips_tiers_with_nothing_available():
    s = TierSelector()
    s.update(0.0, [0, 2])
    assert s.update(1.0, [2]) == TierChange(0, 2, "failover")


def test_nothing_changes_while_the_serving_tier_stays_available():
    s = TierSelector()
    s.update(0.0, [0, 1])
    assert all(s.update(float(t), [0, 1]) is None for t in range(1, 100))
    assert all(s.update(float(t), [0]) is None for t in range(100, 200))
    assert s.serving == 0


def test_a_higher_tier_going_away_does_not_move_the_serving_tier():
    s = serving_on_backup()
    assert s.update(2.0, [1, 2]) is None
    assert s.update(3.0, [1]) is None
    assert s.serving == 1


# -- auto failback ---------------------------------------------------------------------------------


def test_auto_failback_waits_for_failback_delay_of_continuous_availability():
    s = serving_on_backup(failback_delay=10.0)
    assert s.update(2.0, [0, 1]) is None  # tier 0 available again from t=2
    assert s.serving == 1
    assert s.update(7.0, [0, 1]) is None
    assert s.update(12.0 - 1e-6, [0, 1]) is None
    assert s.serving == 1
    assert s.update(12.0, [0, 1]) == TierChange(1, 0, "failback")
    assert s.serving == 0
    assert s.update(13.0, [0, 1]) is None


def test_auto_failback_also_happens_on_a_late_update():
    s = serving_on_backup(failback_delay=10.0)
    s.update(2.0, [0, 1])
    assert s.update(500.0, [0, 1]) == TierChange(1, 0, "failback")


def test_a_break_in_availability_restarts_the_failback_delay():
    s = serving_on_backup(failback_delay=10.0)
    s.update(2.0, [0, 1])
    s.update(11.0, [1])  # a break just before the delay is over
    s.update(11.5, [0, 1])  # available again: the 10 s count from here
    assert s.update(12.0, [0, 1]) is None
    assert s.update(21.5 - 1e-6, [0, 1]) is None
    assert s.serving == 1
    assert s.update(21.5, [0, 1]) == TierChange(1, 0, "failback")


def test_auto_failback_with_zero_delay_happens_at_the_next_update():
    s = serving_on_backup(failback_delay=0.0)
    assert s.update(2.0, [0, 1]) == TierChange(1, 0, "failback")


def test_auto_failback_goes_back_one_tier_at_a_time_as_each_becomes_stable():
    s = TierSelector(failback_delay=10.0)
    s.update(0.0, [0, 1, 2])
    s.update(1.0, [2])
    assert s.serving == 2
    s.update(2.0, [1, 2])
    assert s.update(12.0, [1, 2]) == TierChange(2, 1, "failback")
    s.update(13.0, [0, 1, 2])
    assert s.update(22.0, [0, 1, 2]) is None
    assert s.update(23.0, [0, 1, 2]) == TierChange(1, 0, "failback")


# -- next_deadline --------------------------------------------------------------------------------


def test_next_deadline_is_when_a_pending_failback_is_due():
    s = serving_on_backup(failback_delay=10.0)
    assert s.next_deadline() is None  # nothing better is available
    s.update(2.0, [0, 1])
    assert s.next_deadline() == 12.0
    s.update(5.0, [0, 1])
    assert s.next_deadline() == 12.0  # unchanged by updates without a break
    s.update(6.0, [1])
    assert s.next_deadline() is None
    s.update(7.0, [0, 1])
    assert s.next_deadline() == 17.0
    deadline = s.next_deadline()
    assert deadline is not None
    assert s.update(deadline, [0, 1]) == TierChange(1, 0, "failback")
    assert s.next_deadline() is None


def test_next_deadline_follows_the_best_tier():
    s = TierSelector(failback_delay=10.0)
    s.update(0.0, [0, 1, 2])
    s.update(1.0, [2])
    s.update(2.0, [1, 2])
    s.update(3.0, [0, 1, 2])
    assert s.next_deadline() == 13.0


def test_next_deadline_is_none_when_nothing_serves():
    s = TierSelector()
    s.update(0.0, [])
    assert s.next_deadline() is None


def test_next_deadline_is_none_with_manual_failback():
    s = serving_on_backup(failback="manual")
    s.update(2.0, [0, 1])
    assert s.next_deadline() is None


# -- manual failback ---------------------------------------------------------------------------------


def test_manual_failback_never_moves_back_by_itself():
    s = serving_on_backup(failback="manual", failback_delay=10.0)
    s.update(2.0, [0, 1])
    for t in range(3, 10_000, 97):
        assert s.update(float(t), [0, 1]) is None
    assert s.serving == 1


def test_manual_failback_moves_to_tier_zero_on_the_operators_action():
    s = serving_on_backup(failback="manual")
    s.update(2.0, [0, 1])
    assert s.manual_failback(2.5) == TierChange(1, 0, "operator")
    assert s.serving == 0
    assert s.update(3.0, [0, 1]) is None
    assert s.serving == 0


def test_manual_failback_does_not_wait_for_failback_delay():
    s = serving_on_backup(failback="manual", failback_delay=3600.0)
    s.update(2.0, [0, 1])
    assert s.manual_failback(2.0).new == 0


def test_manual_failback_is_refused_when_tier_zero_is_not_available():
    s = serving_on_backup(failback="manual")
    with pytest.raises(FailbackRefused):
        s.manual_failback(2.0)
    assert s.serving == 1
    s.update(3.0, [0, 1])
    s.update(4.0, [1])  # gone again
    with pytest.raises(FailbackRefused):
        s.manual_failback(5.0)
    assert s.serving == 1


def test_the_operator_can_fail_back_early_with_auto_too():
    s = serving_on_backup(failback="auto", failback_delay=10.0)
    s.update(2.0, [0, 1])
    assert s.manual_failback(3.0) == TierChange(1, 0, "operator")
    assert s.next_deadline() is None


def test_manual_policy_still_fails_over():
    s = TierSelector("manual")
    s.update(0.0, [0, 1, 2])
    assert s.update(1.0, [1, 2]) == TierChange(0, 1, "failover")
    assert s.update(2.0, [2]) == TierChange(1, 2, "failover")


# -- no backend ----------------------------------------------------------------------------------------


def test_nothing_available_means_no_backend_then_recovery_to_the_best_tier():
    s = serving_on_backup()
    assert s.update(5.0, []) == TierChange(1, None, "no backend")
    assert s.serving is None
    assert s.update(6.0, []) is None  # reported once
    assert s.update(7.0, [0, 1]) == TierChange(None, 0, "recovered")
    assert s.serving == 0


def test_recovery_from_no_backend_takes_whatever_is_available():
    s = TierSelector()
    s.update(0.0, [0])
    assert s.update(1.0, []) == TierChange(0, None, "no backend")
    assert s.update(2.0, [2]) == TierChange(None, 2, "recovered")
    s.update(3.0, [0, 2])
    assert s.serving == 2
    assert s.update(13.0, [0, 2]) == TierChange(2, 0, "failback")


# -- flapping -------------------------------------------------------------------------------------------


def test_a_flapping_primary_fails_over_once_and_fails_back_once_after_it_is_stable():
    s = TierSelector("auto", failback_delay=10.0)
    changes = []

    def step(now, primary_available):
        change = s.update(now, [0, 1] if primary_available else [1])
        if change is not None:
            changes.append((now, change))

    # the primary toggles every 0.3 s for 60 fake seconds: up at even steps, down at odd ones
    for k in range(200):
        step(k * 3 / 10, k % 2 == 0)
    assert [c for _, c in changes] == [TierChange(None, 0, "start"), TierChange(0, 1, "failover")]
    assert changes[1][0] == pytest.approx(0.3)
    assert s.serving == 1

    # then it stays up: failback exactly once, 10 s after it became stable
    stable_since = 200 * 3 / 10
    assert s.next_deadline() is None
    for k in range(200, 300):
        step(k * 3 / 10, True)
        if s.serving == 1:
            assert s.next_deadline() == pytest.approx(stable_since + 10.0)
    failbacks = [(t, c) for t, c in changes if c.cause == "failback"]
    assert len(failbacks) == 1
    when, change = failbacks[0]
    assert change == TierChange(1, 0, "failback")
    assert stable_since + 10.0 <= when < stable_since + 10.0 + 0.3
    assert len(changes) == 3
    assert s.serving == 0


def test_losing_the_serving_tier_prefers_a_higher_tier_over_an_unsettled_lower_one():
    sel = TierSelector("manual", failback_delay=10.0)
    sel.update(0.0, {1, 2})  # start on tier 1
    sel.update(2.0, {0, 1, 2})  # tier 0 back, manual: stays on 1
    change = sel.update(3.0, {0, 2})  # tier 1 gone
    assert change is not None and change.new == 2 and change.cause == "failover"


def test_losing_the_serving_tier_with_only_a_lower_one_left_serves_it():
    sel = TierSelector("manual", failback_delay=10.0)
    sel.update(0.0, {1})
    sel.update(2.0, {0, 1})
    change = sel.update(3.0, {0})
    assert change is not None and change.new == 0


def test_failback_is_due_at_the_very_time_next_deadline_gives():
    # (1000.3 - 1000.0 rounds below 0.3: a timer armed at next_deadline() fired at that time
    # again and again without failing back)
    sel = TierSelector("auto", failback_delay=0.3)
    sel.update(990.0, {0, 1})
    sel.update(995.0, {1})
    sel.update(1000.0, {0, 1})
    deadline = sel.next_deadline()
    assert deadline == 1000.0 + 0.3
    change = sel.update(deadline, {0, 1})
    assert change == TierChange(1, 0, "failback")
    assert sel.next_deadline() is None


def test_every_move_counts_as_a_failover_but_the_choice_at_start():
    assert not counts_as_failover(TierChange(None, 0, "start"))
    assert counts_as_failover(TierChange(0, 1, "failover"))
    assert counts_as_failover(TierChange(1, 0, "failback"))
    assert counts_as_failover(TierChange(0, None, "no backend"))
    assert counts_as_failover(TierChange(None, 0, "recovered"))


def test_a_drain_is_due_its_grace_after_a_failback_and_once():
    d = DrainSchedule(after=0.5)
    d.tier_changed(TierChange(0, 1, "failover"), 10.0)
    assert d.at is None  # failing over drains nothing
    d.tier_changed(TierChange(1, 0, "failback"), 20.0)
    assert d.at == 20.5
    assert d.due(20.499, 0) is None
    assert d.due(20.5, 0) == 0
    assert d.at is None and d.due(30.0, 0) is None  # once


def test_a_later_failback_restarts_the_grace_and_off_drains_nothing():
    d = DrainSchedule(after=1.0)
    d.tier_changed(TierChange(1, 0, "operator"), 5.0)
    d.tier_changed(TierChange(2, 1, "failback"), 5.5)
    assert d.at == 6.5
    off = DrainSchedule(after=None)
    off.tier_changed(TierChange(1, 0, "failback"), 5.0)
    assert off.at is None


def test_a_drain_with_no_serving_tier_closes_nothing():
    d = DrainSchedule(after=1.0)
    d.tier_changed(TierChange(1, 0, "failback"), 0.0)
    assert d.due(1.0, None) is None and d.at is None


def test_a_reload_keeps_the_earlier_drain_and_off_cancels_it():
    d = DrainSchedule(after=10.0)
    d.tier_changed(TierChange(1, 0, "failback"), 0.0)  # due at 10
    pending = d.reload(1.0)
    d.tier_changed(TierChange(1, 0, "failback"), 2.0)  # the new settings fail back: at 3
    d.keep(pending)
    assert d.at == 3.0
    pending = d.reload(30.0)
    d.keep(pending)  # no new failback: the pending one stays, never postponed
    assert d.at == 3.0
    pending = d.reload(None)
    d.keep(pending)
    assert d.at is None
