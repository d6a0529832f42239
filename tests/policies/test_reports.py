"""What plans and reports say in words and counts, and disk triggers at their edges (prediction,
budgets in percent, the trash purged under pressure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from policies import Action, Artifact, DiskPolicy, DiskReport, DiskSample, DiskUsage, Inventory, Plan, evaluate
from policies.disk import disk_target
from policies.model import Refusal, StoreLimits, TrashPurge, TrashRun, format_instant
from policies.store_limits import plan_trash_purge

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
GIB = 1024**3


def version(name: str, label: str, days_old: float, **extra: Any) -> Artifact:
    created = NOW - timedelta(days=days_old)
    fields: dict[str, Any] = {"kind": "model", "name": name, "version": label, "created_at": created,
                              "modified_at": created, "size_bytes": GIB, **extra}
    return Artifact(**fields)


def growing(used_now: int, per_second: int, hours: int = 10) -> tuple[DiskSample, ...]:
    """Hourly samples of a disk growing ``per_second`` bytes a second, the last one now at ``used_now``."""
    return tuple(DiskSample(NOW - timedelta(hours=hours - h), used_now - per_second * 3600 * (hours - h)) for h in range(hours + 1))


def test_a_reached_disk_report_names_every_trigger_and_what_it_evicts() -> None:
    report = DiskReport("pressure", ("filesystem 99% used, above high_watermark 85%", "store 5.0 GiB on disk over max_store_size 4GiB"),
                        GIB, 2 * GIB)
    assert report.describe() == ("disk policy pressure: filesystem 99% used, above high_watermark 85%; "
                                 "store 5.0 GiB on disk over max_store_size 4GiB; evicting 2.0 GiB")


def test_a_missed_disk_report_lists_what_blocked_it_or_that_nothing_was_left() -> None:
    blocked = DiskReport("pressure", ("t",), 3 * GIB, GIB, {"latest": GIB, "in use by a process": 2 * GIB})
    assert blocked.describe() == ("disk policy pressure: t; target not reachable: needs 3.0 GiB, can free 1.0 GiB; "
                                  "blocked: in use by a process 2.0 GiB, latest 1.0 GiB")
    empty = DiskReport("pressure", ("t",), 3 * GIB, 0)
    assert empty.describe() == ("disk policy pressure: t; target not reachable: needs 3.0 GiB, can free 0 B; "
                                "blocked: nothing left to evict")


def test_a_refusal_names_its_policy_or_stands_alone() -> None:
    assert Refusal("ci", "too many").describe() == "policy ci: too many"
    assert Refusal(None, "store.max_shrink: shrank").describe() == "store.max_shrink: shrank"


def test_plan_totals_count_every_action() -> None:
    deletions = tuple(Action("delete", "model", "iris", f"v{n}", "ci", ("x",), 10) for n in range(3))
    restart = Action("restart", "deployment", "a", None, "nights", ("x",))
    plan = Plan(at=NOW, actions=(*deletions, restart, restart), kept=(), warnings=())
    assert plan.totals() == {"delete": 3, "bytes": 30, "terminate": 0, "restart": 2, "delete_deployment": 0, "kept": 0}


@pytest.mark.usefixtures("host_in_berlin")
def test_instants_are_written_in_utc_whatever_the_hosts_timezone() -> None:
    assert format_instant(datetime(2025, 3, 30, 12, 0, 30, 999, tzinfo=timezone.utc)) == "2025-03-30T12:00:30Z"


def test_the_reason_a_bentos_references_are_unknown_is_in_the_warning() -> None:
    bento = version("svc", "b1", 1, kind="bento", references_unknown="no bento.yaml", is_latest=True)
    plan = evaluate(Inventory((bento,)), [], NOW)
    assert ("model deletions blocked: references of bento svc:b1 unknown (no bento.yaml); no model version is deleted"
            in plan.warnings)


def test_a_crossing_exactly_at_the_end_of_the_horizon_triggers() -> None:
    # 10 bytes a second from 1600 bytes now: 5000 bytes in exactly 340 seconds.
    samples = [DiskSample(NOW - timedelta(seconds=60 - s), 1000 + 10 * s) for s in range(0, 61, 5)]
    policy = DiskPolicy(name="pressure", high_watermark="5000B", predict_full_within="340s")
    assert disk_target(policy, DiskUsage(10_000, 1600), 0, samples, NOW).triggers
    sooner = DiskPolicy(name="pressure", high_watermark="5000B", predict_full_within="339s")
    assert disk_target(sooner, DiskUsage(10_000, 1600), 0, samples, NOW).triggers == ()


@pytest.mark.usefixtures("host_in_berlin")
def test_the_prediction_horizon_is_elapsed_time_whatever_the_hosts_timezone() -> None:
    # Berlin's clocks go forward on 2025-03-29/30: a day on its wall clock before this instant is 23 hours.
    now = datetime(2025, 3, 30, 12, 0, tzinfo=timezone.utc)
    samples = [DiskSample(now - timedelta(hours=10 - h), 1_000_000 + 3600 * h) for h in range(11)]
    crossing_in_23_5_hours = 1_000_000 + 36_000 + 84_600
    policy = DiskPolicy(name="pressure", high_watermark=f"{crossing_in_23_5_hours}B", predict_full_within="1d")
    assert disk_target(policy, DiskUsage(10**9, 1_036_000), 0, samples, now).triggers


def test_a_budget_in_percent_of_the_filesystem_triggers() -> None:
    policy = DiskPolicy(name="budget", max_store_size="1%")
    target = disk_target(policy, DiskUsage(100 * GIB, 50 * GIB), 2 * GIB, (), NOW)
    assert target.triggers == ("store 2.0 GiB on disk over max_store_size 1%",)
    assert target.needed_bytes == GIB


@pytest.mark.parametrize(
    ("policy", "used_gib", "samples"),
    [
        (DiskPolicy(name="budget", max_store_size="1GiB"), 10, ()),
        # 80 GiB used, growing 100 kB a second: 85% is 15 hours away.
        (DiskPolicy(name="predicted", high_watermark="85%", predict_full_within="1d"), 80, growing(80 * GIB, 100_000)),
    ],
)
def test_a_budget_or_a_predicted_crossing_purges_the_whole_trash_first(
    policy: DiskPolicy, used_gib: int, samples: tuple[DiskSample, ...]
) -> None:
    recent = TrashRun("run-recent", NOW - timedelta(days=1), 3 * GIB, stuck_bytes=GIB)
    items = (version("iris", "v1", 30), version("iris", "v2", 1, is_latest=True))
    inventory = Inventory(items, disk=DiskUsage(100 * GIB, used_gib * GIB), disk_samples=samples, trash=(recent,))
    purge, disk, warnings = plan_trash_purge(inventory, [policy], StoreLimits(trash_retention=timedelta(days=7)), NOW, None)
    assert purge == TrashPurge(("run-recent",), 2 * GIB, "disk pressure")
    assert disk == DiskUsage(100 * GIB, (used_gib - 2) * GIB)
    assert warnings == ["disk pressure: the trash is purged first (1 run(s), 2.0 GiB); the undo window gives way"]


def test_plan_totals_count_no_bytes_for_a_deletion_of_unknown_or_zero_size() -> None:
    unknown = Action("delete", "model", "iris", "v1", "ci", ("x",), None)
    empty = Action("delete", "model", "iris", "v2", "ci", ("x",), 0)
    assert Plan(at=NOW, actions=(unknown, empty), kept=(), warnings=()).totals()["bytes"] == 0


def test_an_eviction_carries_the_disk_usage_of_its_version() -> None:
    old = version("iris", "v1", 30, disk_bytes=GIB // 2)
    newest = version("iris", "v2", 1, is_latest=True)
    plan = evaluate(Inventory((old, newest), disk=DiskUsage(100 * GIB, 99 * GIB)), [DiskPolicy(name="p", high_watermark="85%")], NOW)
    assert [(action.version, action.size_bytes, action.disk_bytes) for action in plan.actions] == [("v1", GIB, GIB // 2)]
    assert plan.disk_reports[0].planned_bytes == GIB // 2
