"""The store-wide part of a plan (policies/store_limits.py): which trash runs go first, and the shrink limit.

Written for the mutants of the mutation run (tests/mutation/README.md): these rules were only reached
through the daemon's tests, never judged on their own.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from policies import DiskPolicy
from policies.model import DiskUsage, Inventory, StoreHistory, StoreLimits, TrashPurge, TrashRun
from policies.store_limits import SHRINK_ADVICE, plan_trash_purge, shrink_refusal

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
GIB = 1024**3
WEEK = timedelta(days=7)


def runs() -> tuple[TrashRun, ...]:
    return (
        TrashRun("old", NOW - WEEK, 3 * GIB, stuck_bytes=GIB),  # exactly at the end of its undo window
        TrashRun("new", NOW - timedelta(days=1), 2 * GIB),
    )


def inventory(used_gib: int) -> Inventory:
    return Inventory(artifacts=(), disk=DiskUsage(100 * GIB, used_gib * GIB), trash=runs())


PRESSURE = DiskPolicy(name="pressure", high_watermark="85%", low_watermark="80%")


def test_without_an_undo_window_every_trash_run_is_what_an_interrupted_run_left() -> None:
    purge, disk, warnings = plan_trash_purge(inventory(50), [], StoreLimits(), NOW, None)
    assert purge == TrashPurge(("old", "new"), 4 * GIB, "left by an interrupted run")
    assert disk == DiskUsage(100 * GIB, 46 * GIB)  # stuck bytes are not freed
    assert warnings == []


def test_runs_whose_undo_window_is_over_go_and_the_rest_stay() -> None:
    purge, disk, warnings = plan_trash_purge(inventory(50), [PRESSURE], StoreLimits(trash_retention=WEEK), NOW, None)
    assert purge == TrashPurge(("old",), 2 * GIB, "undo window over")
    assert disk == DiskUsage(100 * GIB, 48 * GIB)
    assert warnings == []


def test_nothing_to_purge_is_no_purge() -> None:
    empty = Inventory(artifacts=(), disk=DiskUsage(100 * GIB, 50 * GIB))
    assert plan_trash_purge(empty, [], StoreLimits(trash_retention=WEEK), NOW, None) == (None, DiskUsage(100 * GIB, 50 * GIB), [])


def test_under_disk_pressure_the_undo_window_gives_way() -> None:
    purge, disk, warnings = plan_trash_purge(inventory(90), [PRESSURE], StoreLimits(trash_retention=WEEK), NOW, None)
    assert purge == TrashPurge(("old", "new"), 4 * GIB, "disk pressure")
    assert disk == DiskUsage(100 * GIB, 86 * GIB)
    assert warnings == ["disk pressure: the trash is purged first (1 run(s), 2.0 GiB); the undo window gives way"]


def test_pressure_is_judged_on_the_disk_after_the_expired_runs_went() -> None:
    # 87 GiB used; the expired run frees 2 GiB: 85 GiB is not above the high watermark.
    purge, _, warnings = plan_trash_purge(inventory(87), [PRESSURE], StoreLimits(trash_retention=WEEK), NOW, None)
    assert purge == TrashPurge(("old",), 2 * GIB, "undo window over") and warnings == []


def test_a_disk_policy_that_does_not_act_in_this_run_puts_no_pressure() -> None:
    purge, _, _ = plan_trash_purge(inventory(90), [PRESSURE], StoreLimits(trash_retention=WEEK), NOW, ["ci"])
    assert purge == TrashPurge(("old",), 2 * GIB, "undo window over")
    purge, _, _ = plan_trash_purge(inventory(90), [PRESSURE], StoreLimits(trash_retention=WEEK), NOW, ["pressure"])
    assert purge is not None and purge.reason == "disk pressure"


def test_without_a_disk_reading_the_undo_window_alone_decides() -> None:
    no_disk = Inventory(artifacts=(), trash=runs())
    assert plan_trash_purge(no_disk, [PRESSURE], StoreLimits(trash_retention=WEEK), NOW, None) == (
        TrashPurge(("old",), 2 * GIB, "undo window over"), None, [],
    )


@pytest.mark.parametrize(
    ("history", "versions_now", "limits"),
    [
        (StoreHistory(100), 10, StoreLimits()),  # no limit configured
        (StoreHistory(100), 10, StoreLimits(max_shrink_percent=50, accept_shrink=True)),
        (None, 10, StoreLimits(max_shrink_percent=50)),  # no earlier run
        (StoreHistory(None), 10, StoreLimits(max_shrink_percent=50)),
        (StoreHistory(9), 1, StoreLimits(max_shrink_percent=50)),  # too small a store to judge
        (StoreHistory(100), 50, StoreLimits(max_shrink_percent=50)),  # exactly at the limit
    ],
)
def test_the_shrink_limit_lets_these_runs_delete(history: StoreHistory | None, versions_now: int, limits: StoreLimits) -> None:
    assert shrink_refusal(history, versions_now, limits) is None


def test_a_store_that_shrank_past_the_limit_is_refused_with_the_numbers() -> None:
    assert shrink_refusal(StoreHistory(10), 4, StoreLimits(max_shrink_percent=50)) == (
        "the store has 4 versions, the last run saw 10 (more than max_shrink 50% fewer): an unmounted volume or "
        f"a wrong BENTOML_HOME? Nothing is deleted. {SHRINK_ADVICE}"
    )


def test_an_unreadable_history_refuses() -> None:
    assert shrink_refusal(StoreHistory(unreadable="/var/lib/retentiond/store.json"), 10, StoreLimits(max_shrink_percent=50)) == (
        "cannot read /var/lib/retentiond/store.json, which holds the store size that store.max_shrink compares with. "
        "Nothing is deleted. Repair or remove the file, or run `retentiond apply --accept-shrink` once."
    )
