"""Off-hours at its edges: the exact reasons of what is kept, boundary instants, and spans that do not
depend on the host's timezone."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from policies import Kept
from policies.offhours import hand_start_holds, hand_start_policy
from tests.policies.test_offhours import (
    NIGHTS,
    THU_MORNING,
    WED_DAY,
    WED_NIGHT,
    actions,
    by_hand,
    decide,
    deployment,
    ours,
    policy,
    reasons,
    utc,
)

EIGHT_PM = WED_NIGHT.replace(hour=20)  # Wednesday's window begins
# A downtime given by absolute instants: once it has ended no other window follows.
ONE_NIGHT = "2026-11-25T20:00:00+01:00-2026-11-26T07:00:00+01:00"


def test_hand_start_policy_is_the_deciding_policy_only_inside_its_downtime() -> None:
    nights = policy()
    assert hand_start_policy([nights], deployment(), WED_NIGHT) is nights
    assert hand_start_policy([nights], deployment(), WED_DAY) is None
    assert hand_start_policy([nights], deployment("prod-a"), WED_NIGHT) is None


def test_a_start_by_hand_holds_from_its_very_instant_but_not_before() -> None:
    assert hand_start_holds(policy(), WED_NIGHT, WED_NIGHT)
    assert not hand_start_holds(policy(), WED_NIGHT, WED_NIGHT - timedelta(seconds=1))


def test_a_deployment_left_alone_is_kept_with_the_providers_reason_and_the_others_are_still_decided() -> None:
    scaled = deployment("staging-a", left_alone="scaled by the KEDA ScaledObject staging-a")
    plan = decide(WED_NIGHT, [scaled, deployment("staging-b")])
    assert actions(plan) == [("terminate", "staging-b")]
    assert plan.kept == (Kept("deployment", "staging-a", None, "nights", ("scaled by the KEDA ScaledObject staging-a",)),)


def test_a_deletion_by_delete_after_says_since_when_and_the_next_deployment_is_still_decided() -> None:
    since = WED_DAY - timedelta(days=31)
    stopped = deployment("staging-a", status="terminated", updated_at=since - timedelta(days=1), inactive_since=since)
    ours_b = deployment("staging-b", status="terminated", updated_at=WED_DAY - timedelta(days=1))
    plan = decide(WED_DAY, [stopped, ours_b], (ours("staging-b", at=WED_DAY - timedelta(days=1)),), delete_after="30d")
    assert actions(plan) == [("delete_deployment", "staging-a"), ("restart", "staging-b")]
    assert plan.actions[0].reasons == (f"terminated since {utc(since)}, delete_after 30d",)


def test_a_terminated_deployment_without_any_time_is_never_deleted_by_delete_after() -> None:
    unknown = deployment(status="terminated", created_at=None, updated_at=None)
    plan = decide(WED_DAY, [unknown], delete_after="30d")
    assert actions(plan) == []
    assert reasons(plan, "staging-a") == f"terminated, not by retentiond: left as it is; window begins {utc(EIGHT_PM)}"


def test_kept_deployments_say_what_they_are_and_when_the_window_changes() -> None:
    inside = decide(WED_NIGHT + timedelta(hours=1), [deployment("staging-a", status="terminated"),
                                                     deployment("staging-b", status="terminated")], (ours("staging-b"),))
    assert actions(inside) == []
    assert [kept.kind for kept in inside.kept] == ["deployment", "deployment"]
    assert reasons(inside, "staging-a") == f"terminated in downtime {NIGHTS}; window ends {utc(THU_MORNING)}"
    assert reasons(inside, "staging-b") == (
        f"terminated in downtime {NIGHTS}, by retentiond at {utc(WED_NIGHT)}; window ends {utc(THU_MORNING)}"
    )
    outside = decide(WED_DAY, [deployment(status="terminated"), deployment("staging-b")])
    assert reasons(outside, "staging-a") == f"terminated, not by retentiond: left as it is; window begins {utc(EIGHT_PM)}"
    assert reasons(outside, "staging-b") == f"running outside downtime; window begins {utc(EIGHT_PM)}"
    assert [kept.kind for kept in outside.kept] == ["deployment", "deployment"]


def test_a_downtime_that_never_changes_names_no_next_change() -> None:
    plan = decide(WED_NIGHT, [deployment(status="terminated")], downtime="always")
    assert reasons(plan, "staging-a") == "terminated in downtime always"


def test_a_start_by_hand_in_a_downtime_without_end_stays_up_and_says_so() -> None:
    plan = decide(WED_NIGHT + timedelta(hours=1), [deployment()], hand_starts=(by_hand(WED_NIGHT),), downtime="always")
    assert actions(plan) == []
    assert reasons(plan, "staging-a") == (
        f"started by hand at {utc(WED_NIGHT)} during this downtime; stays up until the next window (this downtime has no end)"
    )


def test_a_start_by_hand_in_the_last_window_says_no_next_window_is_scheduled() -> None:
    plan = decide(WED_NIGHT + timedelta(hours=1), [deployment()], hand_starts=(by_hand(WED_NIGHT),), downtime=ONE_NIGHT)
    assert actions(plan) == []
    assert reasons(plan, "staging-a") == (
        f"started by hand at {utc(WED_NIGHT)} during this downtime; stays up until the next window (none is scheduled)"
    )


def test_the_grace_period_ends_at_its_exact_instant() -> None:
    changed = deployment(updated_at=WED_NIGHT - timedelta(minutes=15))
    assert actions(decide(WED_NIGHT, [changed], grace_period="15m")) == [("terminate", "staging-a")]
    assert actions(decide(WED_NIGHT - timedelta(seconds=1), [changed], grace_period="15m", downtime="always")) == []


def test_an_exclude_until_label_in_utc_holds_until_its_instant_and_not_at_it() -> None:
    until = WED_NIGHT + timedelta(hours=1)
    labelled = deployment(labels={"retentiond/exclude-until": utc(until)})
    plan = decide(WED_NIGHT, [labelled])
    assert reasons(plan, "staging-a") == f"excluded until {utc(until)} by label retentiond/exclude-until"
    assert actions(decide(until, [labelled])) == [("terminate", "staging-a")]


@pytest.mark.parametrize("suffix", ["z", "XXZXX"])
def test_an_exclude_until_label_that_is_not_iso_8601_around_its_z_excludes(suffix: str) -> None:
    # A lowercase z, or junk around the Z: either label is not ISO 8601, and a label that cannot be read excludes.
    text = utc(WED_NIGHT - timedelta(days=1)).replace("Z", suffix)
    plan = decide(WED_NIGHT, [deployment(labels={"retentiond/exclude-until": text})])
    assert actions(plan) == []
    assert reasons(plan, "staging-a") == (
        f"excluded: label retentiond/exclude-until={text!r} is not ISO 8601 (treated as excluded)"
    )


@pytest.mark.usefixtures("host_in_berlin")
def test_grace_period_and_delete_after_are_elapsed_time_whatever_the_hosts_timezone() -> None:
    # Berlin's clocks go forward on 2025-03-30: a day on its wall clock is 23 hours there.
    changed = datetime(2025, 3, 29, 12, 0, tzinfo=timezone.utc)
    now = changed + timedelta(hours=23, minutes=30)
    fresh = deployment(created_at=changed, updated_at=changed)
    plan = decide(now, [fresh], grace_period="1d", downtime="always")
    assert actions(plan) == []
    assert reasons(plan, "staging-a") == f"grace period 1d after a change at {utc(changed)}"

    stopped = deployment(status="terminated", created_at=changed, updated_at=changed)
    plan = decide(now, [stopped], delete_after="1d", downtime="always")
    assert actions(plan) == []
    assert reasons(plan, "staging-a").endswith(f"will be deleted at {utc(changed + timedelta(days=1))} (delete_after 1d)")
