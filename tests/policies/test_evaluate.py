from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from policies import Artifact, DiskPolicy, DiskUsage, Inventory, RetentionPolicy, evaluate
from policies.model import Refusal, UnknownReferences

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
