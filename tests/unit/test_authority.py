"""The authority's pure core: votes of sentinels / role endpoints, generations, staleness."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.core.authority import Authority, Report, RoleReport, Verdict, vote

S3 = ("s1", "s2", "s3")
A, B = "10.0.0.1:6379", "10.0.0.2:6379"


def sentinel(now: float, named: dict[str, str | None], roles: dict[str, str | None],
             max_age: float = 3.0) -> Verdict:
    reports = {s: Report(now, a is not None or s in named, a) for s, a in named.items()}
    role_reports = {a: RoleReport(now, r) for a, r in roles.items()}
    return vote("redis_sentinel", S3, reports, role_reports, now, max_age)


def test_majority_of_sentinels_confirmed_by_role_is_the_primary() -> None:
    v = sentinel(0.0, {"s1": A, "s2": A, "s3": B}, {A: "master"})
    assert v.primary == A
    assert "2/3" in v.reason


def test_majority_without_role_master_is_no_primary() -> None:
    v = sentinel(0.0, {"s1": A, "s2": A, "s3": A}, {A: "slave"})
    assert v.primary is None and v.candidate == A
    assert "ROLE says slave" in v.reason
    assert sentinel(0.0, {"s1": A, "s2": A}, {}).candidate == A  # ROLE still to be asked


def test_one_sentinel_of_three_is_no_majority_even_if_role_confirms() -> None:
    v = vote("redis_sentinel", S3, {"s1": Report(0.0, True, A)}, {A: RoleReport(0.0, "master")},
             0.0, 3.0)
    assert v.primary is None
    assert "no majority" in v.reason and "2 unreachable" in v.reason


def test_split_sentinels_are_no_majority() -> None:
    v = sentinel(0.0, {"s1": A, "s2": B}, {A: "master", B: "master"})
    assert v.primary is None and "no majority" in v.reason


def test_reports_older_than_max_age_do_not_vote() -> None:
    reports = {"s1": Report(0.0, True, A), "s2": Report(0.0, True, A)}
    stale_role = {A: RoleReport(0.0, "master")}
    assert vote("redis_sentinel", S3, reports, stale_role, 5.0, 3.0).primary is None
    roles = {A: RoleReport(1.0, "master")}
    assert vote("redis_sentinel", S3, reports, roles, 1.0, 3.0).primary == A
    assert vote("redis_sentinel", S3, reports, roles, 3.5, 3.0).primary is None


def test_sentinel_replicas_come_from_sentinels_naming_the_primary() -> None:
    reports = {"s1": Report(0.0, True, A, ("r1:1", "r2:1")), "s2": Report(0.0, True, A, ("r2:1",)),
               "s3": Report(0.0, True, B, ("evil:1",))}
    v = vote("redis_sentinel", S3, reports, {A: RoleReport(0.0, "master")}, 0.0, 3.0)
    assert v.replicas == ("r1:1", "r2:1")


def test_http_one_200_is_the_primary_none_or_several_are_not() -> None:
    srcs = ("a", "b", "c")
    one = {"a": Report(0.0, True, "a"), "b": Report(0.0, True, None), "c": Report(0.0, False)}
    v = vote("http", srcs, one, {}, 0.0, 3.0)
    assert v.primary == "a" and v.replicas == ("b", "c")
    two = {"a": Report(0.0, True, "a"), "b": Report(0.0, True, "b")}
    assert vote("http", srcs, two, {}, 0.0, 3.0).primary is None
    assert "several" in vote("http", srcs, two, {}, 0.0, 3.0).reason
    none = {"a": Report(0.0, True, None), "b": Report(0.0, False)}
    assert vote("http", srcs, none, {}, 0.0, 3.0).primary is None


def test_a_new_primary_is_a_new_generation_that_fences_the_old_one() -> None:
    auth = Authority(stale_after=30.0)
    first = auth.update(0.0, Verdict(A, "ok"))
    assert first is not None and first.generation == 1 and first.fence is None
    assert auth.update(1.0, Verdict(A, "ok")) is None  # nothing changed: nothing logged
    change = auth.update(2.0, Verdict(B, "switch"))
    assert change is not None and change.generation == 2 and change.fence == A
    assert auth.serving == B


def test_with_sentinel_epochs_a_relay_started_late_reports_the_generation_of_one_that_saw_all(
        ) -> None:
    """The generation is the master's config epoch + 1 where sentinels report it: the same
    on every relay, whenever it started (a count of the changes one relay saw is not)."""
    early, late = Authority(stale_after=5.0), Authority(stale_after=5.0)
    early.update(0.0, Verdict(A, "x", epoch=0))
    early.update(1.0, Verdict(B, "x", epoch=1))  # a failover: A fenced
    change = late.update(2.0, Verdict(B, "x", epoch=1))
    assert change is not None and change.generation == early.generation == 2
    # a newer epoch of the same primary (a failover there and back this relay missed):
    # the generation follows, nothing is fenced
    again = early.update(3.0, Verdict(B, "x", epoch=3))
    assert again is not None and again.generation == 4 and again.fence is None
    assert early.update(4.0, Verdict(B, "x", epoch=3)) is None  # (once)
    # an epoch lower than what was seen never takes the generation back
    early.update(5.0, Verdict(A, "x", epoch=0))
    assert early.generation == 5


def test_the_verdict_carries_the_newest_epoch_of_the_sentinels_naming_the_primary() -> None:
    reports = {"s1": Report(0.0, True, A, epoch=4), "s2": Report(0.0, True, A, epoch=5),
               "s3": Report(0.0, True, B, epoch=99)}  # (naming another node: not counted)
    v = vote("redis_sentinel", S3, reports, {A: RoleReport(0.0, "master")}, 0.0, 3.0)
    assert v.primary == A and v.epoch == 5
    reports = {s: Report(0.0, True, A) for s in S3}  # no epoch reported: none carried
    assert vote("redis_sentinel", S3, reports, {A: RoleReport(0.0, "master")}, 0.0, 3.0).epoch \
        is None


def test_without_verdict_the_last_primary_serves_for_stale_after_then_none() -> None:
    auth = Authority(stale_after=30.0)
    auth.update(0.0, Verdict(A, "ok"))
    stale = auth.update(5.0, Verdict(None, "no majority"))
    assert stale is not None and stale.state == "stale" and auth.serving == A
    assert auth.next_deadline() == 35.0
    assert auth.update(34.9, Verdict(None, "no majority")) is None  # logged once
    assert auth.serving == A
    gone = auth.update(35.0, Verdict(None, "no majority"))
    assert gone is not None and gone.state == "none" and "no majority" in gone.reason
    assert auth.serving is None and auth.next_deadline() is None
    assert auth.update(40.0, Verdict(None, "no majority")) is None
    back = auth.update(41.0, Verdict(A, "ok"))
    assert back is not None and back.generation == 1 and back.fence is None  # same primary


def test_a_majority_naming_another_node_stops_the_old_primary_before_role_confirms() -> None:
    auth = Authority(stale_after=30.0)
    auth.update(0.0, Verdict(A, "ok"))
    change = auth.update(1.0, Verdict(None, "B named, ROLE not answered yet", candidate=B))
    assert change is not None and change.state == "none" and auth.serving is None
    switched = auth.update(1.01, Verdict(B, "ok", candidate=B))
    assert switched is not None and switched.fence == A and auth.serving == B
    assert auth.update(2.0, Verdict(None, "ROLE lost", candidate=B)) is not None
    assert auth.serving == B  # the same node still named: the ordinary stale grace


def test_a_verdict_during_staleness_ends_it() -> None:
    auth = Authority(stale_after=30.0)
    auth.update(0.0, Verdict(A, "ok"))
    auth.update(1.0, Verdict(None, "split"))
    change = auth.update(2.0, Verdict(A, "ok"))
    assert change is not None and change.state == "confirmed" and auth.next_deadline() is None
    assert auth.update(40.0, Verdict(None, "split")) is not None
    assert auth.serving == A  # a fresh grace: confirmed at 2, stale again at 40


def test_no_primary_at_start_refuses_and_is_logged_once() -> None:
    auth = Authority(stale_after=30.0)
    first = auth.update(0.0, Verdict(None, "no answer"))
    assert first is not None and first.state == "none"
    assert auth.update(100.0, Verdict(None, "no answer")) is None
    assert auth.serving is None


verdicts = st.lists(st.tuples(st.floats(0, 10), st.sampled_from([A, B, None]),
                              st.sampled_from([A, B, None])), max_size=60)


@given(verdicts)
@settings(max_examples=300, deadline=None)
def test_invariants_over_any_sequence(steps: list[tuple[float, str | None, str | None]]) -> None:
    """Serving is only ever a confirmed primary; the generation counts primary changes;
    a stale primary never serves past stale_after."""
    auth = Authority(stale_after=3.0)
    now, changes, last_confirmed, last_verdict_at = 0.0, 0, None, None
    for dt, primary, candidate in steps:
        now += dt
        auth.update(now, Verdict(primary, "x", candidate=primary or candidate))
        if primary is None and candidate not in (None, last_confirmed):
            assert auth.serving is None  # never a node the majority does not name
        if primary is not None:
            if primary != last_confirmed:
                changes += 1
            last_confirmed, last_verdict_at = primary, now
        assert auth.generation == changes
        assert auth.serving in (None, last_confirmed)
        if auth.serving is not None and last_verdict_at is not None and primary is None:
            assert auth.stale_since is not None and now - auth.stale_since < 3.0
