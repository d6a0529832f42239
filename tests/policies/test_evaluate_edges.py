"""evaluate() at its edges: the zone of every cutoff, the instant of min_age, which policies act,
what a disk policy lists as kept, and the backup gate of evictions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from policies import Artifact, Deployment, DiskPolicy, DiskUsage, Inventory, Kept, OffhoursPolicy, RetentionPolicy, evaluate
from policies.backup import BackupAnswer, BackupRequirement
from policies.model import StoreLimits, TrashRun, UnknownReferences

GIB = 1024**3
BERLIN = ZoneInfo("Europe/Berlin")
# 12:00 in Berlin on the day its clocks went forward: one day earlier on its wall clock is
# 2025-03-29 12:00 CET = 11:00 UTC, 23 hours before; in UTC a day is 24 hours (10:00 UTC).
NOW = datetime(2025, 3, 30, 10, 0, tzinfo=timezone.utc)
DAY_ON_THE_WALL = datetime(2025, 3, 29, 11, 0, tzinfo=timezone.utc)
BETWEEN = DAY_ON_THE_WALL - timedelta(minutes=30)  # a day old on Berlin's wall clock, not 24 hours old
LONG_AGO = NOW - timedelta(days=60)


def version(name: str, label: str, created: datetime, **extra: Any) -> Artifact:
    fields: dict[str, Any] = {"kind": "model", "name": name, "version": label, "created_at": created,
                              "modified_at": created, "size_bytes": GIB, **extra}
    return Artifact(**fields)


def on_disk(*artifacts: Artifact, used_gib: int = 99, **extra: Any) -> Inventory:
    return Inventory(artifacts=artifacts, disk=DiskUsage(100 * GIB, used_gib * GIB), **extra)


def pressure(**fields: Any) -> DiskPolicy:
    return DiskPolicy(**{"name": "pressure", "high_watermark": "85%", "low_watermark": "80%", "min_age": "1d", **fields})


def tags(plan: Any) -> set[str]:
    return {f"{action.name}:{action.version}" for action in plan.actions}


def test_disk_min_age_and_keep_used_within_count_days_on_the_wall_clock_of_the_zone() -> None:
    young_in_utc = version("iris", "v1", BETWEEN)
    read_a_wall_day_ago = version("iris", "v2", LONG_AGO, last_read_at=BETWEEN)
    newest = version("iris", "v3", NOW - timedelta(hours=1), is_latest=True)
    plan = evaluate(on_disk(young_in_utc, read_a_wall_day_ago, newest), [pressure(keep_used_within="1d")], NOW, zone=BERLIN)
    assert tags(plan) == {"iris:v1", "iris:v2"}
    assert plan.kept == ()  # nothing blocks model deletions: no version is listed as held back


def test_retention_keep_used_within_counts_days_on_the_wall_clock_of_the_zone() -> None:
    items = (version("iris", "v1", LONG_AGO), version("iris", "v2", LONG_AGO + timedelta(days=1), last_read_at=BETWEEN),
             version("iris", "v3", NOW - timedelta(days=2), is_latest=True))
    plan = evaluate(Inventory(items), [RetentionPolicy(name="ci", keep_last=1, keep_used_within="1d")], NOW, zone=BERLIN)
    assert tags(plan) == {"iris:v1", "iris:v2"}


def test_a_version_exactly_min_age_old_is_evicted() -> None:
    exactly = version("iris", "v1", NOW - timedelta(days=1))
    newest = version("iris", "v2", NOW - timedelta(hours=1), is_latest=True)
    plan = evaluate(on_disk(exactly, newest), [pressure()], NOW)
    assert tags(plan) == {"iris:v1"}


def test_a_disk_policy_listed_after_a_retention_policy_still_evicts() -> None:
    items = tuple(version("iris", f"v{n}", LONG_AGO + timedelta(days=n), is_latest=n == 5) for n in range(1, 6))
    plan = evaluate(on_disk(*items, used_gib=90), [RetentionPolicy(name="ci", keep_last=4), pressure()], NOW)
    assert [(action.policy, action.version) for action in plan.actions][:1] == [("ci", "v1")]
    assert {action.policy for action in plan.actions} == {"ci", "pressure"}


def test_a_disk_policy_that_does_not_act_does_not_purge_the_trash_under_pressure() -> None:
    recent = TrashRun("run-recent", NOW - timedelta(days=1), 5 * GIB)
    inventory = on_disk(version("iris", "v1", LONG_AGO, is_latest=True), used_gib=95, trash=(recent,))
    limits = StoreLimits(trash_retention=timedelta(days=7))
    plan = evaluate(inventory, [RetentionPolicy(name="ci", keep_last=1), pressure()], NOW, acting=["ci"], limits=limits)
    assert plan.trash_purge is None
    acting = evaluate(inventory, [RetentionPolicy(name="ci", keep_last=1), pressure()], NOW, limits=limits)
    assert acting.trash_purge is not None and acting.trash_purge.runs == ("run-recent",)


def test_an_off_hours_policy_that_does_not_act_terminates_nothing() -> None:
    running = Deployment(provider="cloud", name="staging-a", status="running", created_at=LONG_AGO, updated_at=LONG_AGO)
    nights = OffhoursPolicy(name="nights", provider="cloud", downtime="always")
    inventory = Inventory((), deployments=(running,))
    assert [action.action for action in evaluate(inventory, [nights], NOW).actions] == ["terminate"]
    assert evaluate(inventory, [nights], NOW, acting=["ci"]).actions == ()


@pytest.mark.usefixtures("host_in_berlin")
def test_the_plan_is_dated_in_utc_whatever_the_hosts_timezone() -> None:
    plan = evaluate(Inventory(()), [RetentionPolicy(name="ci", keep_last=1)], NOW.astimezone(BERLIN))
    assert plan.at == NOW and plan.at.utcoffset() == timedelta(0)
    assert plan.to_dict()["at"] == "2025-03-30T10:00:00Z"


def test_an_eviction_the_registry_does_not_hold_is_kept_under_the_disk_policy_with_the_reason() -> None:
    old = version("iris", "v1", LONG_AGO)
    newest = version("iris", "v2", NOW - timedelta(hours=1), is_latest=True)
    backup = BackupRequirement({("model", "iris", "v1"): BackupAnswer("not_held", "not in BentoCloud")})
    plan = evaluate(on_disk(old, newest), [pressure()], NOW, backup=backup)
    assert plan.actions == ()
    assert plan.kept == (Kept("model", "iris", "v1", "pressure", ("not in BentoCloud",)),)


def test_blocked_model_deletions_list_each_model_the_triggered_disk_policy_selects() -> None:
    unknown = UnknownReferences("bentos/svc", "cannot list it: Permission denied")
    items = (version("iris", "v1", LONG_AGO), version("iris", "v2", NOW - timedelta(hours=1), is_latest=True),
             version("mnist", "v1", LONG_AGO), version("svc", "b1", LONG_AGO, kind="bento"),
             version("svc", "b2", NOW - timedelta(hours=1), kind="bento", is_latest=True))
    plan = evaluate(on_disk(*items, unreadable_bentos=(unknown,)), [pressure(match=("iris", "svc"))], NOW)
    assert [(kept.kind, kept.name, kept.version, kept.policy) for kept in plan.kept] == [
        ("model", "iris", "v1", "pressure"), ("model", "iris", "v2", "pressure"),
    ]
    assert tags(plan) == {"svc:b1"}
    calm = evaluate(on_disk(*items, used_gib=50, unreadable_bentos=(unknown,)), [pressure(match=("iris", "svc"))], NOW)
    assert calm.kept == () and calm.actions == ()


def test_without_a_disk_reading_every_disk_policy_warns() -> None:
    inventory = Inventory((version("iris", "v1", LONG_AGO, is_latest=True),))
    plan = evaluate(inventory, [pressure(), pressure(name="budget", high_watermark=None, low_watermark=None, max_store_size="1GB")], NOW)
    assert [warning for warning in plan.warnings if "filesystem usage unknown" in warning] == [
        "disk policy pressure: filesystem usage unknown; nothing evicted",
        "disk policy budget: filesystem usage unknown; nothing evicted",
    ]


def test_evaluate_refuses_a_naive_now_and_says_why() -> None:
    with pytest.raises(ValueError, match="^now must be an aware datetime$"):
        evaluate(Inventory(()), [], NOW.replace(tzinfo=None))


def test_a_reached_eviction_adds_no_warning() -> None:
    items = (version("iris", "v1", LONG_AGO), version("iris", "v2", NOW - timedelta(hours=1), is_latest=True))
    plan = evaluate(on_disk(*items, used_gib=90), [pressure(high_watermark="89.5%", low_watermark=None)], NOW)
    assert tags(plan) == {"iris:v1"} and plan.disk_reports[0].reached
    assert plan.warnings == ()


def test_versions_created_at_the_same_instant_are_all_deleted() -> None:
    twins = (version("iris", "v1", LONG_AGO), version("iris", "v2", LONG_AGO), version("iris", "v3", NOW - timedelta(days=2)))
    plan = evaluate(Inventory(twins), [RetentionPolicy(name="ci", keep_last=1)], NOW)
    assert tags(plan) == {"iris:v1", "iris:v2"}


def test_kept_items_are_listed_by_version_whatever_the_inventory_order() -> None:
    items = tuple(version("iris", f"v{n}", LONG_AGO + timedelta(days=n)) for n in (2, 3, 1))
    plan = evaluate(Inventory(items), [RetentionPolicy(name="ci", keep_last=3)], NOW)
    assert [kept.version for kept in plan.kept] == ["v1", "v2", "v3"]


def test_a_name_whose_every_version_would_go_is_refused_and_the_next_name_is_still_decided() -> None:
    doomed = tuple(version("iris", f"v{n}", LONG_AGO + timedelta(days=n)) for n in (1, 2))
    other = (version("mnist", "v1", LONG_AGO), version("mnist", "v2", NOW - timedelta(minutes=30)))
    plan = evaluate(Inventory((*doomed, *other)), [RetentionPolicy(name="ci", keep_newer_than="1h")], NOW)
    assert tags(plan) == {"mnist:v1"}
    refusal = "refused: would delete every version (set allow_remove_all = true to allow)"
    assert [kept for kept in plan.kept if kept.name == "iris"] == [
        Kept("model", "iris", "v1", "ci", (refusal,)), Kept("model", "iris", "v2", "ci", (refusal,)),
    ]
    assert plan.warnings == (
        "model iris: every version would be deleted; would delete every version (set allow_remove_all = true to allow)",
    )


def test_retention_deletions_the_registry_holds_carry_no_extra_reason_and_the_others_are_kept_by_the_policy() -> None:
    items = (version("iris", "v1", LONG_AGO), version("iris", "v2", LONG_AGO + timedelta(days=1)),
             version("iris", "v3", NOW - timedelta(days=2)))
    backup = BackupRequirement({("model", "iris", "v1"): BackupAnswer("held"),
                                ("model", "iris", "v2"): BackupAnswer("not_held", "not in BentoCloud")})
    plan = evaluate(Inventory(items), [RetentionPolicy(name="ci", keep_last=1)], NOW, backup=backup)
    assert [(action.version, action.reasons) for action in plan.actions] == [("v1", ("not kept by any rule",))]
    assert Kept("model", "iris", "v2", "ci", ("not in BentoCloud",)) in plan.kept


def test_a_policy_over_its_limit_is_refused_while_a_policy_within_it_and_deployments_act() -> None:
    iris = tuple(version("iris", f"v{n}", LONG_AGO + timedelta(days=n)) for n in range(1, 4))
    mnist = tuple(version("mnist", f"v{n}", LONG_AGO + timedelta(days=n)) for n in range(1, 4))
    running = Deployment(provider="cloud", name="staging-a", status="running", created_at=LONG_AGO, updated_at=LONG_AGO)
    policies = [
        RetentionPolicy(name="small", match=("iris",), keep_last=1, max_delete_per_run=2),
        RetentionPolicy(name="big", match=("mnist",), keep_last=1, max_delete_per_run=1),
        OffhoursPolicy(name="nights", provider="cloud", downtime="always"),
    ]
    plan = evaluate(Inventory((*iris, *mnist), deployments=(running,)), policies, NOW)
    assert [(action.action, action.name, action.version) for action in plan.actions] == [
        ("delete", "iris", "v1"), ("delete", "iris", "v2"), ("terminate", "staging-a", None),
    ]
    refusal = "refused: 2 versions exceed max_delete_per_run 1; nothing of policy big is deleted this run"
    assert [kept for kept in plan.kept if kept.reasons == (refusal,)] == [
        Kept("model", "mnist", "v1", "big", (refusal,)), Kept("model", "mnist", "v2", "big", (refusal,)),
    ]


def test_versions_of_zero_bytes_do_not_count_against_a_byte_limit() -> None:
    items = tuple(version("iris", f"v{n}", LONG_AGO + timedelta(days=n), size_bytes=0) for n in range(1, 4))
    plan = evaluate(Inventory(items), [RetentionPolicy(name="ci", keep_last=1, max_delete_bytes_per_run="1B")], NOW)
    assert tags(plan) == {"iris:v1", "iris:v2"}


def test_a_deletion_limit_counts_only_deletions_even_for_an_off_hours_policy_of_the_same_name() -> None:
    # The pure API does not insist on unique names (the config does): limits still count deletions only.
    items = (version("iris", "v1", LONG_AGO), version("iris", "v2", NOW - timedelta(days=2)))
    running = Deployment(provider="cloud", name="staging-a", status="running", created_at=LONG_AGO, updated_at=LONG_AGO)
    policies = [RetentionPolicy(name="ci", keep_last=1, max_delete_per_run=1),
                OffhoursPolicy(name="ci", provider="cloud", downtime="always")]
    plan = evaluate(Inventory(items, deployments=(running,)), policies, NOW)
    assert [(action.action, action.name) for action in plan.actions] == [("delete", "iris"), ("terminate", "staging-a")]
