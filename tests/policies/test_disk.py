from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from policies import Artifact, DiskPolicy, DiskSample, DiskUsage, Inventory, RetentionPolicy, evaluate
from policies.disk import plan_eviction
from policies.model import DiskReport
from policies.predict import predict_crossing

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
GIB = 1024**3


def artifact(name: str, version: str, days_old: float, size: int = GIB, **extra: Any) -> Artifact:
    created = NOW - timedelta(days=days_old)
    return Artifact(
        kind=extra.pop("kind", "model"), name=name, version=version, created_at=created,
        modified_at=created, size_bytes=size, **extra,
    )


def store(*artifacts: Artifact, used_gib: float, total_gib: float = 100, samples: tuple[DiskSample, ...] = ()) -> Inventory:
    disk = DiskUsage(total_bytes=int(total_gib * GIB), used_bytes=int(used_gib * GIB))
    return Inventory(artifacts=artifacts, disk=disk, disk_samples=samples)


def pressure(**fields: Any) -> DiskPolicy:
    return DiskPolicy(**{"name": "pressure", "high_watermark": "85%", "low_watermark": "80%", **fields})


def evicted(plan: Any) -> list[str]:
    return [f"{action.name}:{action.version}" for action in plan.actions]


def many_versions() -> list[Artifact]:
    items = []
    for name in ("iris", "mnist"):
        for index in range(6):
            items.append(artifact(name, f"v{index}", days_old=10 - index - (0.5 if name == "mnist" else 0), is_latest=index == 5))
    return items


def test_below_high_watermark_nothing_happens() -> None:
    plan = evaluate(store(*many_versions(), used_gib=84), [pressure()], NOW)
    assert plan.actions == ()
    assert plan.disk_reports[0].triggers == ()


def test_between_watermarks_nothing_starts_hysteresis() -> None:
    plan = evaluate(store(*many_versions(), used_gib=82), [pressure()], NOW)
    assert plan.actions == ()


def test_above_high_watermark_evicts_oldest_first_until_below_low() -> None:
    plan = evaluate(store(*many_versions(), used_gib=86.5), [pressure()], NOW)
    # 86.5 GiB used, low watermark 80 GiB: 6.5 GiB must go, 7 versions of 1 GiB, oldest first across names.
    assert evicted(plan) == ["iris:v0", "mnist:v0", "iris:v1", "mnist:v1", "iris:v2", "mnist:v2", "iris:v3"]
    assert "above high_watermark 85%" in plan.actions[0].reasons[0]
    report = plan.disk_reports[0]
    assert report.reached and report.needed_bytes == int(6.5 * GIB)


def test_floor_keeps_the_last_version_of_every_name_and_report_says_what_blocked() -> None:
    items = [artifact("solo", "only", days_old=30, size=5 * GIB), *many_versions()]
    plan = evaluate(store(*items, used_gib=99), [pressure()], NOW)
    assert "solo:only" not in evicted(plan)
    assert len(evicted(plan)) == 10  # all but the latest of iris and mnist
    report = plan.disk_reports[0]
    assert not report.reached
    assert report.blocked_by == {"last version of its name": 5 * GIB, "latest": 2 * GIB}
    assert any("target not reachable" in warning and "last version of its name 5.0 GiB" in warning for warning in plan.warnings)


def test_protected_versions_are_never_evicted() -> None:
    items = [
        artifact("iris", "pinned", days_old=40, labels={"retention": "keep"}),
        artifact("iris", "young", days_old=0.01),
        artifact("iris", "used", days_old=30),
        artifact("iris", "old", days_old=20),
        artifact("iris", "newest", days_old=0.5, is_latest=True),
        artifact("svc", "b1", days_old=1, kind="bento", model_references=("iris:used",), is_latest=True),
    ]
    policies = [RetentionPolicy(name="keep", keep_last=100, keep_labels={"retention": "keep"}), pressure()]
    plan = evaluate(store(*items, used_gib=95), policies, NOW, acting={"pressure"})
    assert evicted(plan) == ["iris:old"]
    assert plan.disk_reports[0].blocked_by == {
        "pinned by label": GIB, "referenced by a bento": GIB, "younger than min_age": GIB, "latest": 2 * GIB,
    }


def test_store_budget_evicts_until_within_budget() -> None:
    plan = evaluate(store(*many_versions(), used_gib=20), [DiskPolicy(name="budget", max_store_size="10GiB")], NOW)
    assert len(plan.actions) == 2
    assert "over max_store_size 10GiB" in plan.actions[0].reasons[0]


def test_retention_deletions_count_before_disk_eviction() -> None:
    policies = [RetentionPolicy(name="ci", keep_last=3), pressure()]
    plan = evaluate(store(*many_versions(), used_gib=86), policies, NOW)
    assert {action.policy for action in plan.actions} == {"ci"}  # 6 GiB from retention already reach 80 GiB


def test_predictive_trigger_cleans_before_the_wall() -> None:
    # 1 GiB per minute towards 85 GiB: at 80 GiB now, the watermark is 5 minutes away.
    samples = tuple(DiskSample(NOW - timedelta(minutes=10 - m), int((70 + m) * GIB)) for m in range(11))
    plan = evaluate(store(*many_versions(), used_gib=80, samples=samples), [pressure(low_watermark="70%", predict_full_within="30m")], NOW)
    assert plan.actions
    assert "predicted to pass high_watermark 85%" in plan.actions[0].reasons[0]
    far = evaluate(store(*many_versions(), used_gib=80, samples=samples), [pressure(low_watermark="70%", predict_full_within="2m")], NOW)
    assert far.actions == ()


def test_prediction_steady_growth() -> None:
    samples = [DiskSample(NOW - timedelta(seconds=60 - s), 1000 + 10 * s) for s in range(0, 61, 5)]
    prediction = predict_crossing(samples, threshold_bytes=2600, now=NOW, lookback=timedelta(minutes=5))
    assert prediction is not None and prediction.bytes_per_second == pytest.approx(10)
    assert prediction.crosses_at == NOW + timedelta(seconds=100)


def test_prediction_ignores_a_spike() -> None:
    samples = [DiskSample(NOW - timedelta(seconds=60 - s), 1000 + 10 * s) for s in range(0, 61, 5)]
    samples[6] = DiskSample(samples[6].at, 10**9)
    prediction = predict_crossing(samples, threshold_bytes=2600, now=NOW, lookback=timedelta(minutes=5))
    assert prediction is not None and prediction.bytes_per_second == pytest.approx(10)


def test_prediction_of_a_shrinking_disk_never_crosses() -> None:
    samples = [DiskSample(NOW - timedelta(seconds=60 - s), 5000 - 10 * s) for s in range(0, 61, 5)]
    prediction = predict_crossing(samples, threshold_bytes=6000, now=NOW, lookback=timedelta(minutes=5))
    assert prediction is not None and prediction.crosses_at is None


def test_prediction_of_a_threshold_beyond_the_calendar_never_crosses() -> None:
    # A byte watermark far above the filesystem's size (high_watermark = "4195TB") put the crossing past year 9999.
    samples = [DiskSample(NOW - timedelta(seconds=60 - s), 1000 + s) for s in range(0, 61, 5)]
    prediction = predict_crossing(samples, threshold_bytes=4195 * 10**12, now=NOW, lookback=timedelta(minutes=5))
    assert prediction is not None and prediction.crosses_at is None


def test_prediction_through_noise_finds_the_trend() -> None:
    import random

    generator = random.Random(7)
    samples = [DiskSample(NOW - timedelta(seconds=120 - s), 10_000 + 50 * s + generator.randint(-400, 400)) for s in range(0, 121, 4)]
    prediction = predict_crossing(samples, threshold_bytes=30_000, now=NOW, lookback=timedelta(minutes=5))
    assert prediction is not None and 40 < prediction.bytes_per_second < 60


def test_prediction_needs_enough_samples() -> None:
    samples = [DiskSample(NOW - timedelta(seconds=s), 1000) for s in (1, 2, 3)]
    assert predict_crossing(samples, 2000, NOW, timedelta(minutes=5)) is None


def test_disk_policy_without_a_disk_reading_warns() -> None:
    plan = evaluate(Inventory(tuple(many_versions())), [pressure()], NOW)
    assert plan.actions == () and "usage unknown" in plan.warnings[0]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"high_watermark": None, "low_watermark": None}, "needs high_watermark or max_store_size"),
        ({"low_watermark": "90%"}, "must be below high_watermark"),
        ({"low_watermark": "85%"}, "must be below high_watermark"),
        ({"high_watermark": None, "low_watermark": "10%", "max_store_size": "1GB"}, "low_watermark needs a high_watermark"),
        ({"check_interval": "0s"}, "at least 1s"),
        ({"high_watermark": "120%"}, "outside 0%..100%"),
    ],
)
def test_inconsistent_disk_policies_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        pressure(**fields)


# --- from the mutation run (tests/mutation/README.md) ---------------------------------------------------------


def test_used_bytes_exactly_at_the_high_watermark_do_not_trigger() -> None:
    plan = evaluate(store(*many_versions(), used_gib=85), [pressure()], NOW)
    assert plan.actions == ()
    assert plan.disk_reports == (DiskReport("pressure", (), 0, 0),)


def test_a_store_exactly_at_its_budget_does_not_trigger() -> None:
    items = [artifact("iris", "v1", days_old=3), artifact("iris", "v2", days_old=2, is_latest=True)]
    plan = evaluate(store(*items, used_gib=10), [DiskPolicy(name="budget", max_store_size="2GiB")], NOW)
    assert plan.actions == ()
    assert plan.disk_reports == (DiskReport("budget", (), 0, 0),)


def test_evictions_are_delete_actions_with_size_and_a_report_of_exactly_what_they_free() -> None:
    plan = evaluate(store(*many_versions(), used_gib=90), [pressure()], NOW)
    (report,) = plan.disk_reports
    assert report.policy == "pressure"
    assert report.needed_bytes == 10 * GIB
    assert report.planned_bytes == sum(action.size_bytes or 0 for action in plan.actions) == 10 * GIB
    first = plan.actions[0]
    assert (first.action, first.kind, first.name, first.version, first.policy, first.size_bytes) == (
        "delete", "model", "iris", "v0", "pressure", GIB
    )


def test_every_trigger_is_a_reason_of_each_eviction() -> None:
    policy = pressure(max_store_size="5GiB")
    plan = evaluate(store(*many_versions(), used_gib=90), [policy], NOW)
    assert plan.actions[0].reasons == (
        "filesystem 90% used, above high_watermark 85%; store 12.0 GiB on disk over max_store_size 5GiB",
    )


def test_two_unprotected_versions_of_a_name_lose_only_the_older_one() -> None:
    items = [artifact("iris", "v1", days_old=3), artifact("iris", "v2", days_old=2)]
    plan = evaluate(store(*items, used_gib=99), [pressure()], NOW)
    assert evicted(plan) == ["iris:v1"]
    assert plan.disk_reports[0].blocked_by == {"last version of its name": GIB}


def test_the_blocked_report_groups_protections_by_kind() -> None:
    young_directory = dataclasses.replace(artifact("iris", "v2", days_old=9), modified_at=NOW - timedelta(minutes=5))
    items = [
        artifact("iris", "v1", days_old=10),
        young_directory,
        artifact("iris", "v3", days_old=8, problem="no model.yaml"),
        artifact("iris", "v4", days_old=7, is_latest=True),
        artifact("iris", "v5", days_old=6),
        artifact("solo", "v1", days_old=11),
    ]
    plan = evaluate(store(*items, used_gib=99), [pressure()], NOW)
    assert plan.disk_reports[0].blocked_by == {
        "younger than min_age": GIB, "invalid store entry": GIB, "latest": GIB, "last version of its name": GIB,
    }


def test_a_backup_gate_note_becomes_a_reason_and_no_note_adds_none() -> None:
    items = [artifact("iris", f"v{day}", days_old=day) for day in (3, 2, 1)]
    inventory = store(*items, used_gib=99)
    assert inventory.disk is not None

    def gate(candidate: Artifact) -> tuple[str | None, str | None]:
        return None, ("pushed to cloud first" if candidate.version == "v3" else None)

    actions, _ = plan_eviction(pressure(), inventory, inventory.disk, (), lambda _: [], NOW, gate)
    assert [action.reasons for action in actions] == [
        ("filesystem 99% used, above high_watermark 85%", "pushed to cloud first"),
        ("filesystem 99% used, above high_watermark 85%",),
    ]
