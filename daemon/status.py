"""``retentiond status``: the store, the disk against each policy's limits, the trash, last and next runs,
each policy's figures over every run, and what off-hours saved."""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from daemon.config import Settings
from daemon.errors import RetentiondError
from daemon.guards import backup_status
from daemon.inuse import find_holders
from daemon.inventory import scan_store, tree_usage
from daemon.metrics import MetricsFile, offhours_savings
from daemon.observe import read_disk_usage
from daemon.offhours_figures import PolicySavings
from daemon.operations import list_all_deployments
from daemon.reads import refresh_read_times
from daemon.schedule import retention_trigger
from daemon.state import StateFile
from daemon.store import Store, check_store_root
from policies.model import Inventory, format_instant
from policies.spec import ArtifactPolicy, ConfigPolicy, DiskPolicy, RetentionPolicy


def collect_status(settings: Settings, now: datetime) -> dict[str, Any]:
    """Given the config and the instant, return the whole status as plain JSON-ready values."""
    home = check_store_root(settings.store.home)
    inventory = scan_store(home, settings.daemon.state_dir)
    usage = _usage(inventory, home, settings, now)
    disk = read_disk_usage(home)
    # size_bytes: apparent size (BentoML's figure); disk_bytes: disk usage (du's), what deleting frees.
    names: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"versions": 0, "size_bytes": 0, "disk_bytes": 0, "oldest": None, "newest": None})
    for artifact in inventory.artifacts:
        entry = names[(artifact.kind, artifact.name)]
        entry["versions"] += 1
        entry["size_bytes"] += artifact.size_bytes
        entry["disk_bytes"] += artifact.usage_bytes
        if artifact.created_at is not None:
            stamp = format_instant(artifact.created_at)
            entry["oldest"] = min(entry["oldest"] or stamp, stamp)
            entry["newest"] = max(entry["newest"] or stamp, stamp)
    state = StateFile(settings.daemon.state_dir).load()
    totals = MetricsFile(settings.daemon.state_dir).load().get("policies", {})
    savings = offhours_savings(settings, now)
    store_bytes = sum(entry["size_bytes"] for entry in names.values())
    store_disk_bytes = sum(entry["disk_bytes"] for entry in names.values())
    deployments: list[dict[str, Any]] = []
    if settings.offhours:
        try:
            deployments = list_all_deployments(settings, now)
        except RetentiondError as error:
            deployments = [{"provider": None, "name": None, "status": "error", "reasons": [str(error)]}]
    return {
        "deployments": deployments,
        "at": format_instant(now),
        "store": {
            "home": str(home),
            "size_bytes": store_bytes,
            "disk_bytes": store_disk_bytes,
            "versions": len(inventory.artifacts),
            "names": [{"kind": kind, "name": name, **entry} for (kind, name), entry in sorted(names.items())],
            **usage,
        },
        "disk": {
            "total_bytes": disk.total_bytes,
            "used_bytes": disk.used_bytes,
            "used_ratio": round(disk.used_ratio, 4),
            "policies": [_disk_limits(policy, disk.total_bytes, store_disk_bytes, state) for policy in settings.disk],
        },
        "trash": _trash(Store(home).trash_dir, state),
        # From the last run's state, not asked live: status never talks to the registry.
        "backup": backup_status(settings),
        "policies": [
            {
                "name": policy.name,
                "kind": _kind(policy),
                "last_run": state.get("runs", {}).get(policy.name),
                "totals": _totals(totals.get(policy.name)),
                "next_run": _next_run(policy, settings, now),
                "check_interval": str(policy.check_interval) if isinstance(policy, DiskPolicy) else None,
                **({"savings": savings[policy.name].to_dict()} if policy.name in savings else {}),
            }
            for policy in settings.policies
        ],
        "savings": _savings_total(savings),
    }


def _kind(policy: ConfigPolicy) -> str:
    if isinstance(policy, RetentionPolicy):
        return "retention"
    return "disk" if isinstance(policy, DiskPolicy) else "offhours"


def _totals(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return a policy's figures over every run (daemon/metrics.py keeps them), or None before its first run."""
    if not entry:
        return None
    last_success = entry.get("last_success_at")
    return {
        "bytes_freed": entry.get("bytes_freed", 0),
        "actions": entry.get("actions", {}),
        "runs": entry.get("runs", {}),
        "last_success_at": format_instant(datetime.fromtimestamp(last_success, timezone.utc)) if last_success else None,
        "last_duration_s": entry.get("last_duration_s"),
    }


def _savings_total(savings: dict[str, PolicySavings]) -> dict[str, Any]:
    costs = [entry.cost for entry in savings.values() if entry.cost is not None]
    return {
        "deployment_hours_saved": round(sum(entry.deployment_hours for entry in savings.values()), 3),
        "cost_saved": round(sum(costs), 2) if costs else None,
        "deployments_down": sum(entry.down for entry in savings.values()),
    }


def _usage(inventory: Inventory, home: Path, settings: Settings, now: datetime) -> dict[str, Any]:
    """Count the versions running processes hold and those a ``keep_used_within`` policy sees as read recently;
    return them with the store's warnings (the scan's, and those of these checks)."""
    holders, warnings = find_holders(inventory, home)
    fresh = refresh_read_times(inventory, home, settings.policies)
    reading = [policy for policy in settings.policies if isinstance(policy, ArtifactPolicy) and policy.keep_used_within]
    cutoffs = [(policy, policy.keep_used_within.before(now, settings.daemon.zone)) for policy in reading if policy.keep_used_within]
    read_recently = sum(
        1 for artifact in fresh.artifacts
        if any(policy.selects(artifact) and policy.read_recently(artifact, cutoff) for policy, cutoff in cutoffs)
    )
    return {
        "in_use": len(holders),
        "read_recently": read_recently if reading else None,
        "warnings": [*fresh.warnings, *warnings],
    }


def _disk_limits(policy: DiskPolicy, total_bytes: int, store_bytes: int, state: dict[str, Any]) -> dict[str, Any]:
    limits: dict[str, Any] = {"name": policy.name, "check_interval": str(policy.check_interval)}
    for key in ("high_watermark", "low_watermark", "max_store_size"):
        size = getattr(policy, key)
        if size is not None:
            limits[key] = {"setting": str(size), "bytes": size.resolve(total_bytes)}
    if policy.max_store_size is not None:
        limits["store_over_budget"] = store_bytes > policy.max_store_size.resolve(total_bytes)
    limits["last_evaluation"] = state.get("disk", {}).get(policy.name)
    return limits


def _trash(trash_dir: Path, state: dict[str, Any]) -> dict[str, Any]:
    versions = sum(1 for _ in trash_dir.glob("*/*/*/*")) if trash_dir.is_dir() else 0
    recorded = state.get("trash")
    if not isinstance(recorded, dict):
        recorded = {}
    stuck = [
        entry for entry in recorded.get("stuck") or []
        if isinstance(entry, dict) and isinstance(entry.get("path"), str)
        and Path(entry["path"]).is_relative_to(trash_dir) and os.path.lexists(entry["path"])
    ]
    # What is in the trash, not the empty trash directory itself; what cannot be listed is not counted.
    try:
        in_trash = [tree_usage(entry) for entry in trash_dir.iterdir()]
    except OSError:
        in_trash = []
    size_bytes, disk_bytes = sum(size for size, _ in in_trash), sum(disk for _, disk in in_trash)
    stuck_usage = [tree_usage(Path(entry["path"])) for entry in stuck]
    return {
        "path": str(trash_dir),
        "versions": versions,
        "size_bytes": size_bytes,
        "disk_bytes": disk_bytes,
        # What the last run could not purge and is still there: it takes disk space until someone frees it.
        "stuck": {
            "entries": len(stuck),
            "size_bytes": sum(size for size, _ in stuck_usage),
            "disk_bytes": sum(disk for _, disk in stuck_usage),
            "first_error": str(stuck[0].get("error")) if stuck else None,
            "paths": [entry["path"] for entry in stuck],
            "checked_at": recorded.get("at") if stuck else None,
        },
    }


def _next_run(policy: ConfigPolicy, settings: Settings, now: datetime) -> str | None:
    if not isinstance(policy, RetentionPolicy) or policy.schedule is None:
        return None
    fire = retention_trigger(policy.schedule, settings).get_next_fire_time(None, now)
    return format_instant(fire) if fire else None
