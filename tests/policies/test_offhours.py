"""Off-hours scenarios with an injected clock: decisions come from state only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from policies import Deployment, HandStart, Inventory, OffhoursPolicy, Ownership, evaluate

BERLIN = ZoneInfo("Europe/Berlin")
NIGHTS = "Mon-Fri 20:00-07:00 Europe/Berlin, Sat-Sun 00:00-24:00 Europe/Berlin"
# Wednesday 2026-11-25 in Berlin (CET, UTC+1).
WED_NIGHT = datetime(2026, 11, 25, 22, 0, tzinfo=BERLIN)
WED_DAY = datetime(2026, 11, 25, 12, 0, tzinfo=BERLIN)
THU_MORNING = datetime(2026, 11, 26, 7, 0, tzinfo=BERLIN)
LONG_AGO = datetime(2026, 10, 1, tzinfo=timezone.utc)


def policy(**fields: Any) -> OffhoursPolicy:
    return OffhoursPolicy(**{"name": "nights", "provider": "cloud", "match": ("staging-*",), "downtime": NIGHTS, **fields})


def deployment(name: str = "staging-a", status: str = "running", **fields: Any) -> Deployment:
    return Deployment(**{"provider": "cloud", "name": name, "status": status, "created_at": LONG_AGO,
                         "updated_at": LONG_AGO, "identity": f"uid-{name}", **fields})


def ours(name: str = "staging-a", at: datetime = WED_NIGHT, ends: datetime = THU_MORNING, **fields: Any) -> Ownership:
    return Ownership(**{"provider": "cloud", "name": name, "policy": "nights", "terminated_at": at,
                        "window_ends_at": ends, "identity": f"uid-{name}", **fields})


def by_hand(at: datetime, name: str = "staging-a", identity: str | None = None) -> HandStart:
    return HandStart(provider="cloud", name=name, started_at=at, identity=f"uid-{name}" if identity is None else identity)


def decide(
    now: datetime, deployments: list[Deployment], records: tuple[Ownership, ...] = (),
    hand_starts: tuple[HandStart, ...] = (), **fields: Any,
) -> Any:
    inventory = Inventory(artifacts=(), deployments=tuple(deployments), ownership=records, hand_starts=hand_starts)
    return evaluate(inventory, [policy(**fields)], now)


def utc(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def actions(plan: Any) -> list[tuple[str, str]]:
    return [(action.action, action.name) for action in plan.actions]


def reasons(plan: Any, name: str) -> str:
    return " | ".join(reason for kept in plan.kept if kept.name == name for reason in kept.reasons)


def test_window_opens_running_deployments_are_terminated() -> None:
    plan = decide(WED_NIGHT, [deployment("staging-a"), deployment("staging-b"), deployment("prod-a")])
    assert actions(plan) == [("terminate", "staging-a"), ("terminate", "staging-b")]
    action = plan.actions[0].to_dict()
    assert action == {"action": "terminate", "kind": "deployment", "name": "staging-a", "version": None,
                      "provider": "cloud", "policy": "nights", "reasons": [f"downtime {NIGHTS}"]}


def test_window_closes_what_we_terminated_is_restarted() -> None:
    plan = decide(THU_MORNING, [deployment(status="terminated")], (ours(),))
    assert actions(plan) == [("restart", "staging-a")]
    assert plan.actions[0].reasons[0] == f"outside downtime {NIGHTS}"


def test_terminated_by_someone_else_stays_terminated() -> None:
    plan = decide(THU_MORNING, [deployment(status="terminated")])
    assert actions(plan) == []
    assert "not by retentiond" in reasons(plan, "staging-a")


def test_manual_terminate_is_never_restarted() -> None:
    plan = decide(THU_MORNING, [deployment(status="terminated")], (ours(manual=True, ends=None),))
    assert actions(plan) == []
    assert "terminated by hand" in reasons(plan, "staging-a")


def test_started_by_hand_during_downtime_stays_up_until_the_next_window() -> None:
    record = ours(at=WED_NIGHT, ends=THU_MORNING)
    later_that_night = WED_NIGHT + timedelta(hours=2)
    plan = decide(later_that_night, [deployment(status="running")], (record,))
    assert actions(plan) == []
    assert "started by hand" in reasons(plan, "staging-a")
    # The next window: the old record has expired, so it is terminated again.
    next_night = datetime(2026, 11, 26, 21, 0, tzinfo=BERLIN)
    assert actions(decide(next_night, [deployment(status="running")], (record,))) == [("terminate", "staging-a")]


def test_started_by_hand_outside_our_cli_reason_names_the_next_window() -> None:
    plan = decide(WED_NIGHT + timedelta(hours=2), [deployment()], (ours(),))
    next_night = datetime(2026, 11, 26, 20, 0, tzinfo=BERLIN)
    assert reasons(plan, "staging-a") == (
        f"started by hand during this downtime (retentiond terminated it at {utc(WED_NIGHT)}); "
        f"stays up until the next window (begins {utc(next_night)})"
    )


def test_restart_by_cli_in_downtime_of_a_never_touched_deployment_stays_up_until_the_next_window() -> None:
    started = WED_NIGHT + timedelta(minutes=30)
    hand_start = (by_hand(started),)
    plan = decide(WED_NIGHT + timedelta(hours=3), [deployment(), deployment("staging-b")], hand_starts=hand_start)
    assert actions(plan) == [("terminate", "staging-b")]
    next_night = datetime(2026, 11, 26, 20, 0, tzinfo=BERLIN)
    assert reasons(plan, "staging-a") == (
        f"started by hand at {utc(started)} during this downtime; stays up until the next window (begins {utc(next_night)})"
    )
    # Just before the window ends it still holds; the next window terminates it as usual.
    assert actions(decide(THU_MORNING - timedelta(minutes=1), [deployment()], hand_starts=hand_start)) == []
    assert actions(decide(THU_MORNING, [deployment()], hand_starts=hand_start)) == []
    assert actions(decide(next_night, [deployment()], hand_starts=hand_start)) == [("terminate", "staging-a")]


def test_start_by_hand_outside_downtime_holds_nothing_in_the_next_window() -> None:
    plan = decide(WED_NIGHT, [deployment()], hand_starts=(by_hand(WED_DAY),))
    assert actions(plan) == [("terminate", "staging-a")]


def test_start_by_hand_of_a_replaced_deployment_does_not_cover_the_new_one() -> None:
    replacement = deployment(identity="uid-new")
    plan = decide(WED_NIGHT + timedelta(hours=1), [replacement], hand_starts=(by_hand(WED_NIGHT),))
    assert actions(plan) == [("terminate", "staging-a")]
    # An identity the provider could not tell (empty) still counts as the same deployment.
    unknown = decide(WED_NIGHT + timedelta(hours=1), [replacement], hand_starts=(by_hand(WED_NIGHT, identity=""),))
    assert actions(unknown) == []


def test_enforce_overrides_a_start_by_hand_and_says_so() -> None:
    plan = decide(WED_NIGHT + timedelta(hours=1), [deployment()], hand_starts=(by_hand(WED_NIGHT),), enforce=True)
    assert actions(plan) == [("terminate", "staging-a")]
    assert plan.actions[0].reasons == (
        f"downtime {NIGHTS}", f"started by hand at {utc(WED_NIGHT)} during this downtime; enforce = true terminates it anyway"
    )


def test_daemon_down_across_both_edges_terminates_a_hand_start_of_the_previous_night() -> None:
    # Started by hand Wednesday night; nothing ran until Thursday 23:00, inside the next window.
    plan = decide(datetime(2026, 11, 26, 23, 0, tzinfo=BERLIN), [deployment()], (ours(),), (by_hand(WED_NIGHT + timedelta(hours=1)),))
    assert actions(plan) == [("terminate", "staging-a")]


def test_stop_by_hand_then_a_start_elsewhere_in_the_same_window_stays_up_until_the_next_window() -> None:
    stopped = ours(at=WED_NIGHT, manual=True, ends=None, policy="manual")
    plan = decide(WED_NIGHT + timedelta(hours=1), [deployment()], (stopped,))
    assert actions(plan) == []
    assert reasons(plan, "staging-a").startswith("started by hand during this downtime (it was terminated by hand at")
    assert actions(decide(datetime(2026, 11, 26, 21, 0, tzinfo=BERLIN), [deployment()], (stopped,))) == [("terminate", "staging-a")]
    # A stop by hand in the afternoon says nothing about when the deployment was started again.
    afternoon = ours(at=WED_DAY, manual=True, ends=None, policy="manual")
    assert actions(decide(WED_NIGHT + timedelta(hours=1), [deployment()], (afternoon,))) == [("terminate", "staging-a")]


def deployment_2025() -> Deployment:
    return deployment(created_at=datetime(2025, 1, 1, tzinfo=timezone.utc), updated_at=datetime(2025, 1, 1, tzinfo=timezone.utc))


def test_start_by_hand_across_the_dst_change_holds_for_the_whole_25_hour_night() -> None:
    # Europe/Berlin falls back from CEST to CET at 03:00 on 2025-10-26: that night lasts an hour longer.
    every_night = "Mon-Sun 20:00-07:00 Europe/Berlin"
    started = datetime(2025, 10, 25, 23, 0, tzinfo=BERLIN)  # 21:00Z, CEST
    hand_start = (by_hand(started),)
    late = datetime(2025, 10, 26, 5, 30, tzinfo=timezone.utc)  # 06:30 CET, a fixed +10h from the start would have ended it
    plan = decide(late, [deployment_2025()], hand_starts=hand_start, downtime=every_night)
    assert actions(plan) == []
    assert reasons(plan, "staging-a").endswith("stays up until the next window (begins 2025-10-26T19:00:00Z)")
    seven = datetime(2025, 10, 26, 6, 0, tzinfo=timezone.utc)  # 07:00 CET
    assert actions(decide(seven, [deployment_2025()], hand_starts=hand_start, downtime=every_night)) == []
    eight_pm = datetime(2025, 10, 26, 19, 0, tzinfo=timezone.utc)  # 20:00 CET
    assert actions(decide(eight_pm, [deployment_2025()], hand_starts=hand_start, downtime=every_night)) == [("terminate", "staging-a")]


def test_repeated_hour_at_the_dst_change_begins_a_new_window() -> None:
    # "00:00-02:30" on 2025-10-26 matches 02:00-02:30 twice (CEST, then CET): two windows, wall clock rules.
    early = "Sun-Sun 00:00-02:30 Europe/Berlin"
    started = datetime(2025, 10, 26, 0, 15, tzinfo=timezone.utc)  # 02:15 CEST
    hand_start = (by_hand(started),)
    plan = decide(datetime(2025, 10, 26, 0, 20, tzinfo=timezone.utc), [deployment_2025()], hand_starts=hand_start, downtime=early)
    assert reasons(plan, "staging-a").endswith("(begins 2025-10-26T01:00:00Z)")
    again = datetime(2025, 10, 26, 1, 15, tzinfo=timezone.utc)  # 02:15 CET
    assert actions(decide(again, [deployment_2025()], hand_starts=hand_start, downtime=early)) == [("terminate", "staging-a")]


def test_two_policies_the_one_deciding_the_deployment_judges_its_start_by_hand() -> None:
    nights = policy()
    everything_always = OffhoursPolicy(name="always", provider="cloud", match=("*",), downtime="always")
    inventory = Inventory(artifacts=(), deployments=(deployment(), deployment("prod-a")), hand_starts=(by_hand(WED_NIGHT),))
    plan = evaluate(inventory, [nights, everything_always], WED_NIGHT + timedelta(hours=1))
    assert actions(plan) == [("terminate", "prod-a")]
    assert [(kept.name, kept.policy) for kept in plan.kept] == [("staging-a", "nights")]
    next_night = evaluate(inventory, [nights, everything_always], datetime(2026, 11, 26, 21, 0, tzinfo=BERLIN))
    assert actions(next_night) == [("terminate", "staging-a"), ("terminate", "prod-a")]


def test_enforce_re_terminates_a_hand_started_deployment() -> None:
    plan = decide(WED_NIGHT + timedelta(hours=2), [deployment()], (ours(),), enforce=True)
    assert actions(plan) == [("terminate", "staging-a")]


def test_grace_period_protects_a_recent_change() -> None:
    fresh = deployment(updated_at=WED_NIGHT - timedelta(minutes=5))
    plan = decide(WED_NIGHT, [fresh], grace_period="15m")
    assert actions(plan) == [] and "grace period 15m" in reasons(plan, "staging-a")
    assert actions(decide(WED_NIGHT + timedelta(minutes=11), [fresh], grace_period="15m")) == [("terminate", "staging-a")]


def test_exclusions_by_name_and_label_and_expiring_label() -> None:
    until = (WED_NIGHT + timedelta(hours=1)).astimezone(timezone.utc).isoformat()
    deployments = [
        deployment("staging-a", labels={"retentiond/exclude": "true"}),
        deployment("staging-b", labels={"retentiond/exclude-until": until}),
        deployment("staging-keep"),
    ]
    plan = decide(WED_NIGHT, deployments, exclude=("staging-keep",))
    assert actions(plan) == []
    assert "excluded by label" in reasons(plan, "staging-a") and "excluded until" in reasons(plan, "staging-b")
    assert reasons(plan, "staging-keep") == "excluded by name pattern 'staging-keep'"
    expired = decide(WED_NIGHT + timedelta(hours=2), deployments, exclude=("staging-keep",))
    assert actions(expired) == [("terminate", "staging-b")]


def test_daemon_down_across_an_edge_catches_up() -> None:
    # Nothing ran at 20:00; at 23:00 the deployment is still up: terminate now.
    assert actions(decide(WED_NIGHT + timedelta(hours=1), [deployment()])) == [("terminate", "staging-a")]
    # Nothing ran at 07:00; at 09:30 ours is still terminated: restart now.
    late = THU_MORNING + timedelta(hours=2, minutes=30)
    assert actions(decide(late, [deployment(status="terminated")], (ours(),))) == [("restart", "staging-a")]


def test_second_run_after_acting_does_nothing_more() -> None:
    first = decide(WED_NIGHT, [deployment()])
    assert actions(first) == [("terminate", "staging-a")]
    second = decide(WED_NIGHT + timedelta(minutes=1), [deployment(status="terminated")], (ours(),))
    assert actions(second) == []


def test_replaced_deployment_is_not_ours() -> None:
    replacement = deployment(status="terminated", identity="uid-new")
    assert actions(decide(THU_MORNING, [replacement], (ours(),))) == []


def test_weekend_is_one_continuous_window() -> None:
    friday_evening = datetime(2026, 11, 27, 20, 30, tzinfo=BERLIN)
    sunday = datetime(2026, 11, 29, 15, 0, tzinfo=BERLIN)
    monday_early = datetime(2026, 11, 30, 6, 59, tzinfo=BERLIN)
    monday_seven = datetime(2026, 11, 30, 7, 0, tzinfo=BERLIN)
    for instant in (friday_evening, sunday, monday_early):
        assert actions(decide(instant, [deployment()])) == [("terminate", "staging-a")], instant
    assert actions(decide(monday_seven, [deployment()])) == []


def test_holidays_are_downtime_all_day() -> None:
    christmas_noon = datetime(2026, 12, 24, 12, 0, tzinfo=BERLIN)
    plan = decide(christmas_noon, [deployment()], holidays=("2026-12-24..2026-12-26",), timezone="Europe/Berlin")
    assert actions(plan) == [("terminate", "staging-a")]
    assert plan.actions[0].reasons == ("holiday 2026-12-24..2026-12-26 (downtime all day)",)
    assert actions(decide(christmas_noon, [deployment()])) == []


def test_uptime_is_the_complement_of_downtime() -> None:
    plan = decide(WED_NIGHT, [deployment()], downtime=None, uptime="Mon-Fri 07:00-20:00 Europe/Berlin")
    assert actions(plan) == [("terminate", "staging-a")]
    assert actions(decide(WED_DAY, [deployment()], downtime=None, uptime="Mon-Fri 07:00-20:00 Europe/Berlin")) == []


def test_delete_after_is_shown_ahead_then_deletes() -> None:
    stopped = deployment(status="terminated", updated_at=WED_DAY - timedelta(days=25), inactive_since=WED_DAY - timedelta(days=28))
    ahead = decide(WED_DAY, [stopped], delete_after="30d")
    assert actions(ahead) == []
    due = (WED_DAY + timedelta(days=5)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"will be deleted at {due}" in reasons(ahead, "staging-a")
    assert actions(decide(WED_DAY + timedelta(days=5), [stopped], delete_after="30d")) == [("delete_deployment", "staging-a")]
    failed = deployment(status="image-build-failed", updated_at=WED_DAY - timedelta(days=31))
    assert actions(decide(WED_DAY, [failed], delete_after="30d")) == [("delete_deployment", "staging-a")]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"downtime": None}, "exactly one of downtime and uptime"),
        ({"uptime": "always"}, "exactly one of downtime and uptime"),
        ({"downtime": "Mon-Fri 25:00-07:00 Europe/Berlin"}, "hour 25 out of range"),
        ({"holidays": ("2026-02-30",)}, "invalid holiday"),
        ({"timezone": "Mars/Base"}, "unknown IANA timezone"),
    ],
)
def test_bad_offhours_policies_are_refused(fields: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        policy(**fields)
