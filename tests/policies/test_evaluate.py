from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from policies import Artifact, DiskPolicy, DiskUsage, Inventory, OffhoursPolicy, RetentionPolicy, evaluate
from policies.model import Refusal, StoreHistory, StoreLimits, TrashPurge, TrashRun, UnknownReferences
from policies.store_limits import shrink_refusal

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
OLD = NOW - timedelta(days=30)


def artifact(name: str, version: str, age: timedelta, **extra: Any) -> Artifact:
    created = NOW - age
    fields: dict[str, Any] = {
        "kind": "model",
        "name": name,
        "version": version,
        "created_at": created,
        "modified_at": created,
        "size_bytes": 100,
    }
    fields.update(extra)
    return Artifact(**fields)


def policy(**fields: Any) -> RetentionPolicy:
    return RetentionPolicy(**{"name": "ci", **fields})


def series(name: str, count: int, step: timedelta = timedelta(days=1), latest: bool = True) -> list[Artifact]:
    items = [artifact(name, f"v{index:02d}", step * (index + 1)) for index in range(count)]
    if latest:
        items[0] = artifact(name, "v00", step, is_latest=True)
    return items


def deleted(plan: Any) -> set[str]:
    return {f"{action.name}:{action.version}" for action in plan.actions}


def kept_reasons(plan: Any, tag: str) -> list[str]:
    return [reason for kept in plan.kept if f"{kept.name}:{kept.version}" == tag for reason in kept.reasons]


def test_keep_last_deletes_the_rest_oldest_first() -> None:
    plan = evaluate(Inventory(tuple(series("iris", 6))), [policy(keep_last=2)], NOW)
    assert [action.version for action in plan.actions] == ["v05", "v04", "v03", "v02"]
    assert all(action.reasons == ("not kept by any rule",) for action in plan.actions)
    assert kept_reasons(plan, "iris:v01") == ["last 2"]


def test_latest_is_protected_even_when_old() -> None:
    items = series("iris", 4, latest=False)
    items[3] = artifact("iris", "v03", timedelta(days=4), is_latest=True)
    plan = evaluate(Inventory(tuple(items)), [policy(keep_last=1)], NOW)
    assert "iris:v03" not in deleted(plan)
    assert "latest" in kept_reasons(plan, "iris:v03")


def test_model_referenced_by_a_bento_is_protected() -> None:
    items = series("iris", 4)
    bento = artifact("svc", "b1", timedelta(days=1), kind="bento", model_references=("iris:v03",), is_latest=True)
    plan = evaluate(Inventory((*items, bento)), [policy(keep_last=1, kinds=("model",))], NOW)
    assert "iris:v03" not in deleted(plan)
    assert kept_reasons(plan, "iris:v03") == ["referenced by bento svc:b1"]


@pytest.mark.parametrize(
    ("unknown", "subject"),
    [
        ({"bento": artifact("svc", "b1", timedelta(days=1), kind="bento", references_unknown="no bento.yaml")}, "bento svc:b1"),
        ({"place": UnknownReferences("bentos/svc", "cannot list it: Permission denied")}, "bentos/svc"),
    ],
)
def test_unknown_bento_references_protect_every_model_version_from_retention_and_disk(
    unknown: dict[str, Any], subject: str
) -> None:
    items = series("iris", 4)
    bentos = (unknown["bento"],) if "bento" in unknown else ()
    places = (unknown["place"],) if "place" in unknown else ()
    inventory = Inventory((*items, *bentos), unreadable_bentos=places, disk=DiskUsage(100, 99))
    squeeze = DiskPolicy(name="squeeze", high_watermark="50%", low_watermark="10%")
    plan = evaluate(inventory, [policy(keep_last=1, kinds=("model",)), squeeze], NOW)
    assert not [action for action in plan.actions if action.kind == "model"]
    blocked = f"model deletions blocked: references of {subject} unknown ("
    assert any(warning.startswith(blocked) for warning in plan.warnings), plan.warnings
    for item in items:
        holders = {kept.policy for kept in plan.kept if kept.version == item.version and any(r.startswith(blocked) for r in kept.reasons)}
        assert holders == {"ci", "squeeze"}, item.version
    assert any("blocked: bento references unknown" in warning for warning in plan.warnings)


def test_keep_labels_pin_a_version() -> None:
    items = series("iris", 4)
    items[2] = artifact("iris", "v02", timedelta(days=3), labels={"retention": "keep"})
    plan = evaluate(Inventory(tuple(items)), [policy(keep_last=1, keep_labels={"retention": "keep"})], NOW)
    assert deleted(plan) == {"iris:v01", "iris:v03"}
    assert kept_reasons(plan, "iris:v02") == ["label retention=keep"]


def test_keep_labels_star_matches_any_value() -> None:
    items = series("iris", 3)
    items[2] = artifact("iris", "v02", timedelta(days=3), labels={"release": "2026.1"})
    plan = evaluate(Inventory(tuple(items)), [policy(keep_last=1, keep_labels={"release": "*"})], NOW)
    assert kept_reasons(plan, "iris:v02") == ["label release=2026.1"]


def test_min_age_protects_by_creation_time_and_by_directory_mtime() -> None:
    items = [
        artifact("iris", "new", timedelta(minutes=10), is_latest=True),
        artifact("iris", "young", timedelta(minutes=30)),
        # A long training run: creation_time is old, but the save finished a minute ago.
        artifact("iris", "slow", timedelta(days=2), modified_at=NOW - timedelta(minutes=1)),
        artifact("iris", "old", timedelta(days=3)),
    ]
    plan = evaluate(Inventory(tuple(items)), [policy(keep_last=1)], NOW)
    assert deleted(plan) == {"iris:old"}
    assert any("younger than min_age 1h" in reason for reason in kept_reasons(plan, "iris:young"))
    assert any("directory modified within min_age 1h" in reason for reason in kept_reasons(plan, "iris:slow"))


def test_invalid_entries_are_never_deleted_and_reported() -> None:
    items = [*series("iris", 3), artifact("iris", "broken", timedelta(days=9), problem="no model.yaml", created_at=None)]
    plan = evaluate(Inventory(tuple(items)), [policy(keep_last=1)], NOW)
    assert "iris:broken" not in deleted(plan)
    assert kept_reasons(plan, "iris:broken") == ["invalid store entry: no model.yaml"]
    assert any("iris:broken: no model.yaml" in warning for warning in plan.warnings)


def test_keep_newer_than_is_relative_to_now_not_to_the_newest_item() -> None:
    items = series("iris", 5, step=timedelta(days=10))
    plan = evaluate(Inventory(tuple(items)), [policy(keep_newer_than="25d")], NOW)
    assert deleted(plan) == {"iris:v02", "iris:v03", "iris:v04"}
    assert kept_reasons(plan, "iris:v01") == ["newer than 25d"]


def test_policy_without_keep_rule_is_refused() -> None:
    with pytest.raises(ValidationError, match="has no keep rule"):
        policy()


def test_policy_that_would_delete_every_version_is_refused() -> None:
    items = series("iris", 3, latest=False)
    plan = evaluate(Inventory(tuple(items)), [policy(keep_newer_than="1h")], NOW)
    assert plan.actions == ()
    assert any("every version would be deleted" in warning for warning in plan.warnings)
    assert all("refused" in kept_reasons(plan, f"iris:{item.version}")[0] for item in items)


def test_allow_remove_all_lets_every_version_go() -> None:
    items = series("iris", 3, latest=False)
    plan = evaluate(Inventory(tuple(items)), [policy(keep_newer_than="1h", allow_remove_all=True)], NOW)
    assert deleted(plan) == {"iris:v00", "iris:v01", "iris:v02"}


def test_selection_by_kind_glob_and_label_selector() -> None:
    items = [
        *series("iris", 3),
        *series("mnist", 3),
        artifact("iris-team", "t1", timedelta(days=5), labels={"team": "a"}),
        artifact("iris-team", "t2", timedelta(days=6), labels={"team": "a"}),
        artifact("iris-team", "t3", timedelta(days=7), labels={"team": "b"}),
        artifact("irisbento", "b1", timedelta(days=5), kind="bento"),
        artifact("irisbento", "b2", timedelta(days=6), kind="bento"),
    ]
    plan = evaluate(Inventory(tuple(items)), [policy(keep_last=1, match=("iris*",), labels={"team": "a"})], NOW)
    assert deleted(plan) == {"iris-team:t2"}


def test_an_item_kept_by_any_policy_is_not_deleted_by_another() -> None:
    items = series("iris", 5)
    policies = [policy(name="short", keep_last=1), policy(name="long", keep_last=3)]
    plan = evaluate(Inventory(tuple(items)), policies, NOW)
    assert deleted(plan) == {"iris:v03", "iris:v04"}
    assert {action.policy for action in plan.actions} == {"short"}


def test_acting_limits_actions_but_every_policy_still_protects() -> None:
    items = series("iris", 5)
    policies = [policy(name="short", keep_last=1), policy(name="long", keep_last=3)]
    plan = evaluate(Inventory(tuple(items)), policies, NOW, acting={"long"})
    assert deleted(plan) == {"iris:v03", "iris:v04"}
    only_short = evaluate(Inventory(tuple(items)), [policies[0]], NOW, acting={"short"})
    assert deleted(only_short) == {"iris:v01", "iris:v02", "iris:v03", "iris:v04"}
    none_acting = evaluate(Inventory(tuple(items)), policies, NOW, acting=set())
    assert none_acting.actions == ()


def test_plan_json_has_the_documented_shape() -> None:
    plan = evaluate(Inventory(tuple(series("iris", 3))), [policy(keep_last=2)], NOW)
    data = plan.to_dict()
    assert set(data) == {"at", "actions", "kept", "refusals", "totals", "warnings"}
    assert data["at"] == "2026-11-22T10:00:00Z"
    assert data["refusals"] == []
    assert data["totals"] == {"delete": 1, "bytes": 100, "terminate": 0, "restart": 0, "delete_deployment": 0, "kept": 2}
    assert data["actions"] == [
        {
            "action": "delete", "kind": "model", "name": "iris", "version": "v02",
            "policy": "ci", "reasons": ["not kept by any rule"], "size_bytes": 100, "disk_bytes": None,
        }
    ]
    assert data["kept"][0] == {"kind": "model", "name": "iris", "version": "v00", "policy": "ci", "reasons": ["latest", "last 2"]}


def test_evaluate_rejects_a_naive_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        evaluate(Inventory(()), [], NOW.replace(tzinfo=None))


@pytest.mark.parametrize("bad", [{"keep_last": -1}, {"keep_last": "3"}, {"keep_daily": 1.5}, {"keep_within": "2x"}, {"kinds": ["dataset"]}])
def test_bad_policy_values_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        policy(**{"keep_last": 1, **bad})


def test_blast_radius_by_count_refuses_the_whole_policy() -> None:
    items = series("iris", 8)
    plan = evaluate(Inventory(tuple(items)), [policy(keep_last=2, max_delete_per_run=5)], NOW)
    assert plan.actions == ()
    assert plan.refusals == (Refusal("ci", "6 versions exceed max_delete_per_run 5; nothing of policy ci is deleted this run"),)
    assert plan.to_dict()["refusals"] == [
        {"policy": "ci", "reason": "6 versions exceed max_delete_per_run 5; nothing of policy ci is deleted this run"}
    ]
    assert any("refused: 6 versions exceed" in reason for kept in plan.kept for reason in kept.reasons)
    within = evaluate(Inventory(tuple(items)), [policy(keep_last=2, max_delete_per_run=6)], NOW)
    assert len(within.actions) == 6 and within.refusals == ()


def test_blast_radius_by_bytes_refuses_only_that_policy() -> None:
    items = [*series("iris", 4), *series("mnist", 4)]
    policies = [
        policy(name="iris", match=("iris",), keep_last=1, max_delete_bytes_per_run="250B"),
        policy(name="mnist", match=("mnist",), keep_last=1, max_delete_bytes_per_run="300B"),
    ]
    plan = evaluate(Inventory(tuple(items)), policies, NOW)
    assert deleted(plan) == {"mnist:v01", "mnist:v02", "mnist:v03"}
    assert plan.refusals == (
        Refusal("iris", "300 B exceed max_delete_bytes_per_run 250B; nothing of policy iris is deleted this run"),
    )


# --- from the mutation run (tests/mutation/README.md) ---------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
AFTER_DST_START = datetime(2025, 3, 30, 10, 0, tzinfo=timezone.utc)  # 12:00 in Berlin, the day clocks went forward


def at(when: datetime, version: str, **extra: Any) -> Artifact:
    return Artifact(kind="model", name="iris", version=version, created_at=when, modified_at=when, size_bytes=100, **extra)


def test_a_version_young_by_creation_time_is_kept_even_when_its_directory_looks_old() -> None:
    # A copy that kept old mtimes (cp -a, a restore) is still as young as its creation_time says.
    young = dataclasses.replace(artifact("iris", "v01", timedelta(minutes=10)), modified_at=NOW - timedelta(days=30))
    plan = evaluate(Inventory((artifact("iris", "v00", timedelta(minutes=5), is_latest=True), young)), [policy(keep_last=1)], NOW)
    assert deleted(plan) == set()
    assert kept_reasons(plan, "iris:v01") == ["younger than min_age 1h (created 2026-11-22T09:50:00Z)"]


def test_keep_newer_than_does_not_keep_a_version_exactly_that_old() -> None:
    items = (artifact("iris", "v00", timedelta(days=1), is_latest=True), artifact("iris", "v01", timedelta(days=14)))
    plan = evaluate(Inventory(items), [policy(keep_last=1, keep_newer_than="14d")], NOW)
    assert deleted(plan) == {"iris:v01"}


def test_keep_newer_than_counts_days_on_the_wall_clock_of_the_zone() -> None:
    # One day before 12:00 CEST on 2025-03-30 is 12:00 CET on 2025-03-29: 11:00 UTC, 23 hours earlier.
    items = (at(AFTER_DST_START - timedelta(hours=2), "v00", is_latest=True), at(datetime(2025, 3, 29, 10, 30, tzinfo=timezone.utc), "v01"))
    plan = evaluate(Inventory(items), [policy(keep_last=1, keep_newer_than="1d")], AFTER_DST_START, zone=BERLIN)
    assert deleted(plan) == {"iris:v01"}


def test_min_age_counts_days_on_the_wall_clock_of_the_zone() -> None:
    items = (at(AFTER_DST_START - timedelta(hours=2), "v00", is_latest=True), at(datetime(2025, 3, 29, 10, 30, tzinfo=timezone.utc), "v01"))
    plan = evaluate(Inventory(items), [policy(keep_last=1, min_age="1d")], AFTER_DST_START, zone=BERLIN)
    assert deleted(plan) == {"iris:v01"}


def test_keep_daily_buckets_days_in_the_zone() -> None:
    # 22:30 and 23:30 UTC on 2025-03-29 are 23:30 on the 29th and 00:30 on the 30th in Berlin: two days there.
    items = (
        at(datetime(2025, 3, 29, 23, 30, tzinfo=timezone.utc), "late"),
        at(datetime(2025, 3, 29, 22, 30, tzinfo=timezone.utc), "early"),
        at(datetime(2025, 3, 28, 12, 0, tzinfo=timezone.utc), "before"),
    )
    plan = evaluate(Inventory(items), [policy(keep_daily=2)], datetime(2025, 3, 31, 10, 0, tzinfo=timezone.utc), zone=BERLIN)
    assert deleted(plan) == {"iris:before"}


@pytest.mark.parametrize(
    ("field", "value", "rule", "expected"),
    [
        ("keep_last", 3, "last", 3), ("keep_hourly", 3, "hourly", 3), ("keep_daily", 3, "daily", 3),
        ("keep_weekly", 3, "weekly", 3), ("keep_monthly", 3, "monthly", 3), ("keep_yearly", 3, "yearly", 3),
        ("keep_within", "2d", "within", "2d"), ("keep_within_hourly", "2d", "within_hourly", "2d"),
        ("keep_within_daily", "2d", "within_daily", "2d"), ("keep_within_weekly", "2d", "within_weekly", "2d"),
        ("keep_within_monthly", "2d", "within_monthly", "2d"), ("keep_within_yearly", "2d", "within_yearly", "2d"),
    ],
)
def test_each_keep_key_of_a_policy_reaches_its_rule(field: str, value: Any, rule: str, expected: Any) -> None:
    rules = policy(**{field: value}).rules()
    assert str(getattr(rules, rule)) == str(expected)
    assert not rules.is_empty()


def test_keep_within_counts_back_from_the_newest_version_not_from_now() -> None:
    items = (artifact("iris", "v1", timedelta(days=10)), artifact("iris", "v2", timedelta(days=11)),
             artifact("iris", "v3", timedelta(days=13)))
    plan = evaluate(Inventory(items), [policy(keep_within="2d")], NOW)
    assert deleted(plan) == {"iris:v3"}
    assert kept_reasons(plan, "iris:v2") == ["within 2d"]


def test_a_store_that_shrank_past_max_shrink_keeps_every_planned_deletion_and_says_why() -> None:
    items = tuple(series("iris", 6))
    limits = StoreLimits(max_shrink_percent=50)
    reason = shrink_refusal(StoreHistory(20), 6, limits)
    assert reason is not None
    plan = evaluate(Inventory(items, history=StoreHistory(20)), [policy(keep_last=2)], NOW, limits=limits)
    assert plan.actions == ()
    assert plan.refusals == (Refusal(None, f"store.max_shrink: {reason}"),)
    refused = [(k.kind, k.name, k.version, k.policy, k.reasons) for k in plan.kept if k.reasons[0].startswith("refused")]
    assert refused == [("model", "iris", f"v0{n}", "ci", (f"refused: store.max_shrink: {reason}",)) for n in (5, 4, 3, 2)]


def test_evictions_are_chosen_against_the_disk_as_the_trash_purge_leaves_it() -> None:
    gib = 1024**3
    items = tuple(dataclasses.replace(item, size_bytes=gib) for item in series("iris", 6))
    expired = TrashRun("run-old", NOW - timedelta(days=30), 10 * gib)
    inventory = Inventory(items, disk=DiskUsage(100 * gib, 96 * gib), trash=(expired,))
    pressure = DiskPolicy(name="pressure", high_watermark="85%", low_watermark="84%")
    plan = evaluate(inventory, [pressure], NOW, limits=StoreLimits(trash_retention=timedelta(days=7)))
    assert plan.trash_purge == TrashPurge(("run-old",), 10 * gib, "undo window over")
    assert [action.version for action in plan.actions] == ["v05", "v04"]  # 86 GiB after the purge → 84 GiB
    assert plan.disk_reports[0].needed_bytes == 2 * gib


def test_only_the_acting_policies_decide() -> None:
    gib = 1024**3
    items = tuple(dataclasses.replace(item, size_bytes=gib) for item in series("iris", 6))
    inventory = Inventory(items, disk=DiskUsage(100 * gib, 99 * gib))
    pressure = DiskPolicy(name="pressure", high_watermark="85%")
    plan = evaluate(inventory, [policy(keep_last=5), pressure], NOW, acting=["ci"])
    assert [(action.policy, action.version) for action in plan.actions] == [("ci", "v05")]


def test_an_off_hours_policy_whose_provider_could_not_list_is_refused_when_it_acts() -> None:
    nights = OffhoursPolicy(name="nights", provider="cloud", downtime="always")
    inventory = Inventory((), unlisted_providers=(("cloud", "HTTP 503"),))
    refusal = Refusal("nights", "provider cloud could not list its deployments (HTTP 503); nothing of this policy is decided this run")
    assert evaluate(inventory, [nights], NOW).refusals == (refusal,)
    assert evaluate(inventory, [nights], NOW, acting=["nights"]).refusals == (refusal,)
    assert evaluate(inventory, [nights], NOW, acting=["other"]).refusals == ()


def test_the_plan_is_dated_in_utc() -> None:
    plan = evaluate(Inventory(()), [policy(keep_last=1)], NOW.astimezone(BERLIN))
    assert plan.at == NOW and plan.at.tzinfo == timezone.utc
