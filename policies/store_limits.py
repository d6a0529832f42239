"""The store-wide part of a plan: which trash runs go first, and whether a shrunken store is touched.

The trash is purged before any action: runs whose undo window (``store.trash_retention``) is over,
and, when an acting disk policy is triggered on the disk as it will be after that, every run: under
disk pressure the undo window gives way first. Bytes an earlier purge could not remove stay counted
as used. Evictions are then chosen against the disk as the purge leaves it, so ``plan`` shows the
evictions ``apply`` makes.

``store.max_shrink``: a store with far fewer versions than the last run saw (an unmounted volume, a
wrong ``BENTOML_HOME``) is not touched: every deletion of the run is refused. When the last run's
count cannot be read the limit cannot be checked, and refuses too (fail closed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from datetime import datetime

from policies.disk import disk_target
from policies.durations import format_bytes
from policies.model import DiskUsage, Inventory, StoreHistory, StoreLimits, TrashPurge, TrashRun
from policies.spec import ConfigPolicy, DiskPolicy

MIN_VERSIONS_FOR_SHRINK_CHECK = 10
SHRINK_ADVICE = "If the store really shrank, run `retentiond apply --accept-shrink` once."


def shrink_refusal(history: StoreHistory | None, versions_now: int, limits: StoreLimits) -> str | None:
    """Given what the last run saw, the versions in the store now and the limits, return why this run
    must not delete anything, or None."""
    percent = limits.max_shrink_percent
    if percent is None or limits.accept_shrink or history is None:
        return None
    if history.unreadable is not None:
        return (f"cannot read {history.unreadable}, which holds the store size that store.max_shrink compares with. "
                "Nothing is deleted. Repair or remove the file, or run `retentiond apply --accept-shrink` once.")
    before = history.versions
    if before is None or before < MIN_VERSIONS_FOR_SHRINK_CHECK or versions_now >= before * (1 - percent / 100):
        return None
    return (f"the store has {versions_now} versions, the last run saw {before} (more than max_shrink {percent:g}% "
            f"fewer): an unmounted volume or a wrong BENTOML_HOME? Nothing is deleted. {SHRINK_ADVICE}")


def plan_trash_purge(
    inventory: Inventory,
    config_policies: Sequence[ConfigPolicy],
    limits: StoreLimits,
    now: datetime,
    acting: Collection[str] | None,
) -> tuple[TrashPurge | None, DiskUsage | None, list[str]]:
    """Given the inventory (with its trash), the policies, the limits and the instant, return the trash runs
    to purge first (None: none), the disk as that purge leaves it, and warnings."""
    retention = limits.trash_retention
    expired = [run for run in inventory.trash if retention is None or run.trashed_at <= now - retention]
    rest = [run for run in inventory.trash if run not in expired]
    disk = _after_purge(inventory.disk, expired)
    warnings: list[str] = []
    if rest and disk is not None and _under_pressure(inventory, config_policies, disk, now, acting):
        expired.extend(rest)
        freed = sum(run.size_bytes - run.stuck_bytes for run in rest)
        disk = _after_purge(disk, rest)
        warnings.append(f"disk pressure: the trash is purged first ({len(rest)} run(s), {format_bytes(freed)}); "
                        "the undo window gives way")
        reason = "disk pressure"
    else:
        reason = "undo window over" if retention is not None else "left by an interrupted run"
    if not expired:
        return None, disk, warnings
    freed_total = sum(run.size_bytes - run.stuck_bytes for run in expired)
    return TrashPurge(tuple(run.name for run in expired), freed_total, reason), disk, warnings


def _after_purge(disk: DiskUsage | None, runs: Sequence[TrashRun]) -> DiskUsage | None:
    if disk is None:
        return None
    freed = sum(run.size_bytes - run.stuck_bytes for run in runs)
    return dataclasses.replace(disk, used_bytes=max(disk.used_bytes - freed, 0))


def _under_pressure(
    inventory: Inventory, config_policies: Sequence[ConfigPolicy], disk: DiskUsage, now: datetime,
    acting: Collection[str] | None,
) -> bool:
    store_bytes = sum(artifact.usage_bytes for artifact in inventory.artifacts)  # a budget counts disk usage
    return any(
        disk_target(policy, disk, store_bytes, inventory.disk_samples, now).triggers
        for policy in config_policies
        if isinstance(policy, DiskPolicy) and (acting is None or policy.name in acting)
    )
