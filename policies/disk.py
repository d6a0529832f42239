"""Disk budget and pressure: evict the oldest unprotected versions until the target is met.

Triggers (any): the filesystem's used bytes above ``high_watermark``; a predicted
crossing of the high watermark within ``predict_full_within``; the store over
``max_store_size``. The target is below ``low_watermark`` (hysteresis: start high,
stop low) and within the budget. Candidates go oldest first by ``creation_time``;
protected versions and the last remaining version of a name are never evicted.
When the target cannot be met, the report says how many bytes were blocked, and by what.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from policies.backup import backup_group
from policies.durations import format_bytes
from policies.model import (
    IN_USE_BY,
    MODEL_DELETIONS_BLOCKED,
    Action,
    Artifact,
    DiskReport,
    DiskSample,
    DiskUsage,
    Inventory,
    format_instant,
)
from policies.predict import predict_crossing
from policies.spec import READ_RECENTLY, DiskPolicy

Protections = Callable[[Artifact], list[str]]
# Asked last about a version about to be evicted: (why it must be kept, or None; a reason to add to its action, or None).
BackupGate = Callable[[Artifact], tuple[str | None, str | None]]


@dataclass(frozen=True)
class DiskTarget:
    """Why a disk policy is triggered (empty: it is not) and how many bytes it must free."""

    triggers: tuple[str, ...]
    needed_bytes: int


def disk_target(
    policy: DiskPolicy,
    disk: DiskUsage,
    store_bytes: int,
    samples: Sequence[DiskSample],
    now: datetime,
) -> DiskTarget:
    """Given current usage (after already planned deletions), return the triggers and bytes to free."""
    triggers: list[str] = []
    needed = 0
    if policy.high_watermark is not None:
        high = policy.high_watermark.resolve(disk.total_bytes)
        low = (policy.low_watermark or policy.high_watermark).resolve(disk.total_bytes)
        if disk.used_bytes > high:
            triggers.append(f"filesystem {disk.used_ratio:.0%} used, above high_watermark {policy.high_watermark}")
        elif policy.predict_full_within is not None:
            # The horizon doubles as the look-back: fit the growth seen over the span we predict.
            horizon = now - policy.predict_full_within.before(now, timezone.utc)
            prediction = predict_crossing(samples, high, now, horizon)
            if prediction is not None and prediction.crosses_at is not None and prediction.crosses_at <= now + horizon:
                triggers.append(
                    f"filesystem predicted to pass high_watermark {policy.high_watermark} at "
                    f"{format_instant(prediction.crosses_at)} (growing {format_bytes(int(prediction.bytes_per_second))}/s)"
                )
        if triggers:
            needed = max(needed, disk.used_bytes - low)
    if policy.max_store_size is not None:
        budget = policy.max_store_size.resolve(disk.total_bytes)
        if store_bytes > budget:
            triggers.append(f"store {format_bytes(store_bytes)} on disk over max_store_size {policy.max_store_size}")
            needed = max(needed, store_bytes - budget)
    return DiskTarget(tuple(triggers), max(needed, 0))


def plan_eviction(
    policy: DiskPolicy,
    inventory: Inventory,
    disk: DiskUsage,
    already_deleted: Collection[tuple[str, str, str]],
    protections: Protections,
    now: datetime,
    backup_gate: BackupGate | None = None,
) -> tuple[list[Action], DiskReport]:
    """Given the inventory, disk usage and the deletions already planned, return evictions and a report.

    ``backup_gate`` is asked only about versions that would otherwise be evicted now.
    """
    remaining = [a for a in inventory.artifacts if (a.kind, a.name, a.version) not in already_deleted]
    # Disk usage, not apparent size: what the filesystem and the budget gain when a version goes.
    freed_already = sum(a.usage_bytes for a in inventory.artifacts if (a.kind, a.name, a.version) in already_deleted)
    store_bytes = sum(artifact.usage_bytes for artifact in remaining)
    usage = DiskUsage(disk.total_bytes, max(disk.used_bytes - freed_already, 0))
    target = disk_target(policy, usage, store_bytes, inventory.disk_samples, now)
    if not target.triggers:
        return [], DiskReport(policy.name, (), 0, 0)

    versions_left: Counter[tuple[str, str]] = Counter(
        (artifact.kind, artifact.name) for artifact in remaining if artifact.problem is None
    )
    blocked: dict[str, int] = defaultdict(int)
    actions: list[Action] = []
    planned = 0
    reason = "; ".join(target.triggers)
    candidates = sorted(
        (a for a in remaining if policy.selects(a)),
        key=lambda artifact: (artifact.created_at or now, artifact.kind, artifact.name, artifact.version),
    )
    for artifact in candidates:
        held = protections(artifact)
        if not held and versions_left[(artifact.kind, artifact.name)] <= 1:
            held = ["last version of its name"]
        if held:
            blocked[_protection_kind(held[0])] += artifact.usage_bytes
            continue
        if planned >= target.needed_bytes:
            break
        extra: tuple[str, ...] = ()
        if backup_gate is not None:
            blocking, push = backup_gate(artifact)
            if blocking is not None:
                blocked[_protection_kind(blocking)] += artifact.usage_bytes
                continue
            extra = (push,) if push else ()
        versions_left[(artifact.kind, artifact.name)] -= 1
        planned += artifact.usage_bytes
        actions.append(Action(
            "delete", artifact.kind, artifact.name, artifact.version, policy.name, (reason, *extra), artifact.size_bytes,
            disk_bytes=artifact.disk_bytes,
        ))
    report = DiskReport(policy.name, target.triggers, target.needed_bytes, planned, dict(blocked))
    return actions, report


def _protection_kind(reason: str) -> str:
    """Group a protection reason for the blocked report ("referenced by bento x:y" → "referenced by a bento")."""
    group = backup_group(reason)
    if group is not None:
        return group
    for prefix, kind in (
        ("latest", "latest"),
        (IN_USE_BY, "in use by a process"),
        (READ_RECENTLY, "read recently"),
        ("referenced by bento", "referenced by a bento"),
        ("label ", "pinned by label"),
        ("younger than min_age", "younger than min_age"),
        ("directory modified within min_age", "younger than min_age"),
        ("invalid store entry", "invalid store entry"),
        (MODEL_DELETIONS_BLOCKED, "bento references unknown"),
        ("last version of its name", "last version of its name"),
    ):
        if reason.startswith(prefix):
            return kind
    return reason
