"""One run: read the world once, decide, act under the lock. Used by the CLI and the daemon."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone

import structlog

from daemon.audit import AuditLog
from daemon.config import Settings
from daemon.errors import ConfigError
from daemon.executor import RunProgress, RunResult, execute
from daemon.inventory import scan_store
from daemon.store import Store, check_store_root
from policies import Inventory, Plan, evaluate

log = structlog.get_logger("retentiond")


@dataclass(frozen=True)
class PlannedRun:
    plan: Plan
    inventory: Inventory


def check_policy_names(settings: Settings, requested: Collection[str] | None) -> None:
    """Raise ConfigError if ``--policy`` names a policy the config does not have."""
    unknown = sorted(set(requested or ()) - set(settings.policy_names()))
    if unknown:
        known = ", ".join(settings.policy_names()) or "none configured"
        raise ConfigError(f"unknown policy {', '.join(unknown)} (configured: {known})")


def make_plan(settings: Settings, now: datetime, acting: Collection[str] | None = None) -> PlannedRun:
    """Given the config and the instant, scan the store and return the plan (no lock, no changes)."""
    check_policy_names(settings, acting)
    home = check_store_root(settings.store.home)
    inventory = scan_store(home)
    plan = evaluate(inventory, settings.retention, now, zone=settings.daemon.zone, acting=acting)
    return PlannedRun(plan=plan, inventory=inventory)


def apply_once(
    settings: Settings,
    acting: Collection[str] | None = None,
    *,
    wait_seconds: float = 0,
    progress: RunProgress | None = None,
) -> RunResult:
    """Run the policies once under the store lock and return what happened.

    Raise StoreBusyError, ConfigError or AuditError; failed actions are in the result.
    """
    check_policy_names(settings, acting)
    home = check_store_root(settings.store.home)
    store = Store(home)
    run_id = uuid.uuid4().hex[:12]
    bound = log.bind(run_id=run_id, store=str(home))
    with store.locked(wait_seconds), AuditLog(settings.daemon.audit_log, run_id) as audit:
        audit.record("run.started", store=str(home), policies=sorted(acting or settings.policy_names()))
        audit.sync()
        leftovers = store.empty_trash()
        if leftovers:
            bound.info("trash.emptied", entries=leftovers)
        now = datetime.now(timezone.utc)
        inventory = scan_store(home)
        plan = evaluate(inventory, settings.retention, now, zone=settings.daemon.zone, acting=acting)
        result = execute(plan, inventory, store, audit, run_id, progress)
        audit.record("run.finished", **result.counters())
    bound.info("run.finished", **result.counters())
    return result
