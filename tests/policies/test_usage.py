"""In use by a process (always protects) and keep_used_within (keeps what was read recently, per policy)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from policies import Artifact, DiskPolicy, DiskUsage, Inventory, RetentionPolicy, evaluate

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
GIB = 1024**3
HOLDER = "pid 4242 (bentoml serve service:Svc --port 3000)"


def artifact(version: str, days_old: float, read_days_ago: float | None = None, **extra: Any) -> Artifact:
    created = NOW - timedelta(days=days_old)
    read_at = None if read_days_ago is None else NOW - timedelta(days=read_days_ago)
    return Artifact(kind="model", name="iris", version=version, created_at=created, modified_at=created,
                    size_bytes=GIB, last_read_at=read_at, **extra)


def five(**reads: float) -> tuple[Artifact, ...]:
    """iris v0 (newest, latest) .. v4 (oldest); ``reads`` gives days since a version's files were read."""
    return tuple(artifact(f"v{day}", day + 1, reads.get(f"v{day}"), is_latest=day == 0) for day in range(5))


def keep_two(**fields: Any) -> RetentionPolicy:
    return RetentionPolicy(**{"name": "ci", "keep_last": 2, **fields})


def budget(**fields: Any) -> DiskPolicy:
    return DiskPolicy(**{"name": "budget", "max_store_size": "1GiB", **fields})


def deleted(plan: Any) -> set[str]:
    return {action.version for action in plan.actions}


def reasons(plan: Any, version: str) -> list[str]:
    return [reason for kept in plan.kept if kept.version == version for reason in kept.reasons]


def test_a_version_in_use_is_kept_by_retention_with_the_holder_named() -> None:
    inventory = Inventory(five(), in_use={("model", "iris", "v3"): HOLDER})
    plan = evaluate(inventory, [keep_two()], NOW)
    assert deleted(plan) == {"v2", "v4"}
    assert reasons(plan, "v3") == [f"in use by {HOLDER}"]


def test_in_use_of_another_kind_or_name_does_not_protect() -> None:
    inventory = Inventory(five(), in_use={("bento", "iris", "v3"): HOLDER, ("model", "mnist", "v3"): HOLDER})
    assert deleted(evaluate(inventory, [keep_two()], NOW)) == {"v2", "v3", "v4"}


def test_disk_policy_never_evicts_a_version_in_use_and_says_what_blocked() -> None:
    disk = DiskUsage(total_bytes=100 * GIB, used_bytes=50 * GIB)
    inventory = Inventory(five(v3=0.5), disk=disk, in_use={("model", "iris", "v4"): HOLDER})
    plan = evaluate(inventory, [budget(keep_used_within="7d")], NOW)
    # 5 GiB over a 1 GiB budget: v4 in use, v3 read half a day ago, v0 latest; v2 and v1 go.
    assert deleted(plan) == {"v2", "v1"}
    report = plan.disk_reports[0]
    assert report.blocked_by == {"in use by a process": GIB, "read recently": GIB, "latest": GIB}
    assert "in use by a process 1.0 GiB" in report.describe() and "read recently 1.0 GiB" in report.describe()


def test_keep_used_within_keeps_what_was_read_within_the_span_only() -> None:
    inventory = Inventory(five(v2=6.9, v3=7.1, v4=0.01))
    plan = evaluate(inventory, [keep_two(keep_used_within="7d")], NOW)
    assert deleted(plan) == {"v3"}
    assert reasons(plan, "v2") == ["read recently (last read 2026-11-15T12:24:00Z, within keep_used_within 7d)"]


def test_a_read_exactly_at_the_cutoff_is_not_recent() -> None:
    assert deleted(evaluate(Inventory(five(v3=7)), [keep_two(keep_used_within="7d")], NOW)) == {"v2", "v3", "v4"}


def test_unknown_read_time_keeps_nothing() -> None:
    assert deleted(evaluate(Inventory(five()), [keep_two(keep_used_within="7d")], NOW)) == {"v2", "v3", "v4"}


def test_keep_used_within_belongs_to_the_policy_that_sets_it() -> None:
    # A retention policy's keep_used_within keeps against retention (any retention policy's keep wins),
    # not against a disk policy, which has its own.
    inventory = Inventory(five(v4=1), disk=DiskUsage(total_bytes=100 * GIB, used_bytes=50 * GIB))
    plan = evaluate(inventory, [keep_two(keep_used_within="7d"), RetentionPolicy(name="other", keep_last=1)], NOW)
    assert deleted(plan) == {"v2", "v3"}
    disk_plan = evaluate(inventory, [keep_two(keep_used_within="7d"), budget(min_age="1h")], NOW)
    assert "v4" in {action.version for action in disk_plan.actions if action.policy == "budget"}
