"""One run: read the world once, decide, act under the lock. Used by the CLI and the daemon."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil
import structlog

from daemon.audit import AuditLog
from daemon.config import Settings
from daemon.errors import ConfigError
from daemon.executor import RunProgress, RunResult, execute
from daemon.inventory import scan_store
from daemon.state import StateFile
from daemon.store import Store, check_store_root
from policies import DiskSample, DiskUsage, Inventory, Plan, evaluate

log = structlog.get_logger("retentiond")


@dataclass(frozen=True)
class PlannedRun:
    plan: Plan
    inventory: Inventory


def read_disk_usage(home: Path) -> DiskUsage:
    """Return the usage of the filesystem holding ``home`` as ``df`` shows it (used / (used + available))."""
    usage = psutil.disk_usage(str(home))
    return DiskUsage(total_bytes=usage.used + usage.free, used_bytes=usage.used)


def check_policy_names(settings: Settings, requested: Collection[str] | None) -> None:
    """Raise ConfigError if ``--policy`` names a policy the config does not have."""
    unknown = sorted(set(requested or ()) - set(settings.policy_names()))
    if unknown:
        known = ", ".join(settings.policy_names()) or "none configured"
        raise ConfigError(f"unknown policy {', '.join(unknown)} (configured: {known})")


def take_inventory(home: Path, disk_samples: Sequence[DiskSample] = ()) -> Inventory:
    """Scan the store and read the disk under it, once."""
    inventory = scan_store(home)
    return dataclasses.replace(inventory, disk=read_disk_usage(home), disk_samples=tuple(disk_samples))


def make_plan(settings: Settings, now: datetime, acting: Collection[str] | None = None) -> PlannedRun:
    """Given the config and the instant, scan the store and return the plan (no lock, no changes)."""
    check_policy_names(settings, acting)
    home = check_store_root(settings.store.home)
    inventory = take_inventory(home)
    plan = evaluate(inventory, settings.policies, now, zone=settings.daemon.zone, acting=acting)
    return PlannedRun(plan=plan, inventory=inventory)


def apply_once(
    settings: Settings,
    acting: Collection[str] | None = None,
    *,
    wait_seconds: float = 0,
    progress: RunProgress | None = None,
    disk_samples: Sequence[DiskSample] = (),
    stop: threading.Event | None = None,
) -> RunResult:
    """Run the policies once under the store lock and return what happened.

    Raise StoreBusyError, ConfigError or AuditError; failed actions are in the result.
    """
    check_policy_names(settings, acting)
    home = check_store_root(settings.store.home)
    store = Store(home)
    run_id = uuid.uuid4().hex[:12]
    policies = sorted(acting or settings.policy_names())
    bound = log.bind(run_id=run_id, store=str(home), policies=policies)
    with store.locked(wait_seconds), AuditLog(settings.daemon.audit_log, run_id) as audit:
        audit.record("run.started", store=str(home), policies=policies)
        audit.sync()
        leftovers = store.empty_trash()
        if leftovers:
            bound.info("trash.emptied", entries=leftovers)
        now = datetime.now(timezone.utc)
        inventory = take_inventory(home, disk_samples)
        plan = evaluate(inventory, settings.policies, now, zone=settings.daemon.zone, acting=acting)
        result = execute(plan, inventory, store, audit, run_id, progress, stop)
        audit.record("run.interrupted" if result.interrupted else "run.finished", **result.counters())
    for report in plan.disk_reports:
        if report.triggers:
            bound.info("disk.evaluated", report=report.describe(), blocked_bytes=report.blocked_bytes)
    bound.info("run.interrupted" if result.interrupted else "run.finished", **result.counters())
    StateFile(settings.daemon.state_dir).record_run(result, policies)
    return result
