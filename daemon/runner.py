"""One run: read the world once, decide, act under the lock. Used by the CLI and the daemon."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil
import structlog

from daemon.audit import AuditLog
from daemon.config import Settings
from daemon.deployments import (
    DeploymentActor,
    DeploymentContext,
    close_context,
    gather_deployments,
    utc_now,
    with_deployments,
)
from daemon.errors import AuditError, ConfigError, RunInterrupted, StoreShrunkError, UsageError
from daemon.executor import Actors, RunProgress, RunResult, execute
from daemon.inventory import scan_store
from daemon.run_figures import policy_figures
from daemon.scancache import scan_cache_in
from daemon.state import StateFile, require_writable_state_dir
from daemon.store import Store, check_store_root
from daemon.trash import Trash
from daemon.usage import observe_usage
from policies import DiskSample, DiskUsage, Inventory, Plan, evaluate
from policies.disk import disk_target

log = structlog.get_logger("retentiond")
MIN_VERSIONS_FOR_SHRINK_CHECK = 10


@dataclass(frozen=True)
class PlannedRun:
    plan: Plan
    inventory: Inventory


def read_disk_usage(home: Path) -> DiskUsage:
    """Return the usage of the filesystem holding ``home`` as ``df`` shows it (used / (used + available))."""
    usage = psutil.disk_usage(str(home))
    return DiskUsage(total_bytes=usage.used + usage.free, used_bytes=usage.used)


def check_policy_names(settings: Settings, requested: Collection[str] | None) -> None:
    """Raise UsageError (exit 2: the command line is wrong, not the config) if ``--policy`` names a policy the
    config does not have."""
    unknown = sorted(set(requested or ()) - set(settings.policy_names()))
    if unknown:
        known = ", ".join(settings.policy_names()) or "none configured"
        raise UsageError(f"--policy: unknown policy {', '.join(unknown)} (configured: {known})")


def take_inventory(
    home: Path, disk_samples: Sequence[DiskSample] = (), state_dir: Path | None = None, stop: threading.Event | None = None
) -> Inventory:
    """Scan the store (through the scan cache in ``state_dir``, if given) and read the disk under it, once.

    Raise ConfigError if the store cannot be listed, RunInterrupted once ``stop`` is set.
    """
    try:
        with scan_cache_in(state_dir):
            inventory = scan_store(home, stop=stop)
    except OSError as error:
        raise ConfigError(f"cannot list {error.filename or home}: {error.strerror or error}; nothing was deleted") from None
    return dataclasses.replace(inventory, disk=read_disk_usage(home), disk_samples=tuple(disk_samples))


def make_plan(settings: Settings, now: datetime, acting: Collection[str] | None = None) -> PlannedRun:
    """Given the config and the instant, scan the store and return the plan (no lock, no changes).

    Off-hours policies are simulated at ``now`` against the deployments as they are.
    """
    check_policy_names(settings, acting)
    home = check_store_root(settings.store.home)
    context = gather_deployments(settings, acting)
    try:
        inventory = with_deployments(take_inventory(home, state_dir=settings.daemon.state_dir), context)
    finally:
        close_context(context)
    inventory = observe_usage(inventory, home, settings.policies)
    plan = evaluate(inventory, settings.policies, now, zone=settings.daemon.zone, acting=acting)
    return PlannedRun(plan=plan, inventory=inventory)


@dataclass
class LockedRun:
    """A run in progress: the store is locked and the audit log is open."""

    home: Path
    store: Store
    trash: Trash
    audit: AuditLog
    run_id: str

    archive_dir: Path | None = None

    def actors(self, deployments: DeploymentActor | None = None) -> Actors:
        return Actors(self.store, self.trash, self.audit, self.run_id, deployments, self.archive_dir)


@contextmanager
def locked_run(
    settings: Settings, policies: list[str], wait_seconds: float, stop: threading.Event | None = None
) -> Iterator[LockedRun]:
    """Lock the store, open the audit log, record ``run.started`` and empty leftover trash.

    Raise StoreBusyError, ConfigError or AuditError before anything is touched, RunInterrupted if
    ``stop`` is set while waiting for the lock. Once ``stop`` is set the trash purge ends early.
    """
    home = check_store_root(settings.store.home)
    store = Store(home)
    run_id = uuid.uuid4().hex[:12]
    rotate = settings.daemon.audit_rotate_size
    # Opened under the lock: the chain's last hash and a rotation must not race another run.
    with store.locked(wait_seconds, stop), AuditLog(settings.daemon.audit_log, run_id, rotate.bytes if rotate else None) as audit:
        audit.record("run.started", store=str(home), policies=policies)
        audit.sync()
        state = StateFile(settings.daemon.state_dir)
        trash = Trash(
            store, settings.store.trash_retention_span, frozenset(p.name for p in settings.disk),
            retry=state.stuck_trash(), report=lambda entry: audit.record("trash.purge_failed", **entry.audit_fields()),
            stop=stop,
        )
        for detail in trash.recover():
            audit.record("store.recovered", detail=detail)
        purged = trash.purge(datetime.now(timezone.utc))
        if purged:
            log.info("trash.purged", run_id=run_id, runs=purged)
        try:
            yield LockedRun(home, store, trash, audit, run_id, settings.store.archive_dir)
        finally:
            with suppress(OSError, AuditError):
                trash.close(run_id)
            _report_stuck(trash, state, run_id)


def _report_stuck(trash: Trash, state: StateFile, run_id: str) -> None:
    """Log the trash entries this run could not purge (one line, however many) and remember them for the next run."""
    stuck = trash.stuck
    if stuck:
        log.warning(
            "trash.purge_failed", run_id=run_id, entries=len(stuck), size_bytes=sum(entry.size_bytes for entry in stuck),
            disk_bytes=sum(entry.disk_bytes for entry in stuck),
            first_error=stuck[0].error, retry="next run",
        )
    state.record_trash(stuck, datetime.now(timezone.utc))


def ready_deployments(
    context: DeploymentContext | None, run: LockedRun, settings: Settings, clock: Callable[[], datetime], now: datetime
) -> DeploymentActor | None:
    """Given a run's deployment context and its instant, update ownership from the fresh listing (under
    the lock) and return the actor for deployment actions, which times each action by ``clock``."""
    if context is None:
        return None
    for dropped in context.state.observe(context.view.deployments, context.view.listed, now, settings.offhours):
        run.audit.record("ownership.dropped", detail=dropped)
    try:
        context.ownership_file.save(context.state)
    except OSError as error:
        raise ConfigError(
            f"cannot write ownership records {context.ownership_file.path}: {error.strerror or error}; "
            "daemon.state_dir must be writable"
        ) from None
    return DeploymentActor(
        context.providers, context.ownership_file, context.state, settings.offhours, context.view.deployments, clock
    )


def finish_run(run: LockedRun, result: RunResult, settings: Settings, policies: list[str]) -> None:
    result.trash_stuck = run.trash.stuck
    event = "run.interrupted" if result.interrupted else "run.finished"
    during = {"interrupted_during": result.interrupted_during} if result.interrupted else {}
    by_policy = {policy: figures.to_dict() for policy, figures in policy_figures(result, policies).items()}
    run.audit.record(event, **during, **result.counters(), by_policy=by_policy)
    for report in result.plan.disk_reports:
        if report.triggers:
            # A target the policy cannot reach needs a person (a bigger disk, fewer pins): a warning.
            emit = log.info if report.reached else log.warning
            emit("disk.evaluated", run_id=run.run_id, report=report.describe(), blocked_bytes=report.blocked_bytes)
    log.info(event, run_id=run.run_id, store=str(run.home), policies=policies, **during, **result.counters())


def check_shrink(settings: Settings, home: Path, inventory: Inventory, accept: bool) -> None:
    """With ``store.max_shrink``, refuse a run whose store has far fewer versions than the last run saw.

    Raise StoreShrunkError naming both counts.
    """
    limit = settings.store.max_shrink
    if limit is None or limit.percent is None or accept:
        return
    state = StateFile(settings.daemon.state_dir)
    try:
        before = state.last_store_versions(str(home))
    except (OSError, ValueError) as error:
        # Fail closed: without the last run's count the limit cannot be checked, and must not pass silently.
        raise StoreShrunkError(
            f"cannot read {state.path} ({getattr(error, 'strerror', None) or error}), which holds the store size "
            "that store.max_shrink compares with. Nothing was deleted. Repair or remove the file, or run "
            "`retentiond apply --accept-shrink` once."
        ) from None
    now_count = len(inventory.artifacts)
    if before is None or before < MIN_VERSIONS_FOR_SHRINK_CHECK or now_count >= before * (1 - limit.percent / 100):
        return
    raise StoreShrunkError(
        f"store {home} has {now_count} versions, the last run saw {before} (more than max_shrink {limit} fewer): "
        "an unmounted volume or a wrong BENTOML_HOME? Nothing was deleted. "
        "If the store really shrank, run `retentiond apply --accept-shrink` once."
    )


def _purge_trash_under_pressure(
    settings: Settings, acting: Collection[str] | None, run: LockedRun, inventory: Inventory, now: datetime
) -> Inventory:
    """Under disk pressure the undo window gives way first: purge the trash, then read the disk again."""
    acting_disk = [p for p in settings.disk if acting is None or p.name in acting]
    if not acting_disk or inventory.disk is None or not run.store.trash_dir.is_dir():
        return inventory
    store_bytes = sum(artifact.usage_bytes for artifact in inventory.artifacts)
    if not any(disk_target(p, inventory.disk, store_bytes, inventory.disk_samples, now).triggers for p in acting_disk):
        return inventory
    purged = run.trash.purge(now, everything=True)
    stuck = run.trash.stuck
    if purged or stuck:
        run.audit.record("trash.purged", reason="disk pressure", runs=purged, stuck=len(stuck))
    # Read again, not computed: what is stuck in the trash still takes space, and evictions must make up for it.
    return dataclasses.replace(inventory, disk=read_disk_usage(run.home))


def apply_once(
    settings: Settings,
    acting: Collection[str] | None = None,
    *,
    wait_seconds: float = 0,
    progress: RunProgress | None = None,
    disk_samples: Sequence[DiskSample] = (),
    stop: threading.Event | None = None,
    accept_shrink: bool = False,
    clock: Callable[[], datetime] = utc_now,
    on_locked: Callable[[LockedRun], None] | None = None,
) -> RunResult:
    """Run the policies once under the store lock and return what happened.

    The run decides as of one reading of ``clock``. Once ``stop`` is set the run ends at the next safe
    point (the action in progress finishes), is recorded as ``run.interrupted`` and returned with
    ``interrupted_during`` saying where.
    Raise StoreBusyError, ConfigError (also when store.max_shrink is set and daemon.state_dir cannot be
    written), AuditError or StoreShrunkError; RunInterrupted if ``stop`` is set before the store lock is
    taken. Failed actions are in the result. ``on_locked`` is told once the lock is taken and
    ``run.started`` written (daemon/fleet.py pings a run's start there: a busy store never starts one).
    """
    check_policy_names(settings, acting)
    require_writable_state_dir(settings)
    policies = sorted(acting or settings.policy_names())
    with locked_run(settings, policies, wait_seconds, stop) as run:
        if on_locked is not None:
            on_locked(run)
        try:
            result = _act(settings, acting, run, progress, disk_samples, stop, accept_shrink, clock)
        except RunInterrupted as error:
            result = RunResult(run.run_id, Plan(clock()), Inventory(()), interrupted_during=error.phase)
        if stop is not None and stop.is_set() and not result.interrupted:
            # Every action was carried out, but the trash purge was cut short: what is left is trash for the next run.
            result.interrupted_during = "trash"
        finish_run(run, result, settings, policies)
    StateFile(settings.daemon.state_dir).record_run(result, policies, str(run.home))
    return result


def _act(
    settings: Settings,
    acting: Collection[str] | None,
    run: LockedRun,
    progress: RunProgress | None,
    disk_samples: Sequence[DiskSample],
    stop: threading.Event | None,
    accept_shrink: bool,
    clock: Callable[[], datetime],
) -> RunResult:
    """The locked part of a run: list, scan, decide, act. Raise RunInterrupted at a safe point once ``stop`` is set."""
    _stop_point(stop, "start")
    context = gather_deployments(settings, acting)
    try:
        _stop_point(stop, "deployments")
        now = clock()
        actor = ready_deployments(context, run, settings, clock, now)
        offhours_only = acting is not None and set(acting) <= {policy.name for policy in settings.offhours}
        # An off-hours run fires every few minutes; it has no business walking the store.
        artifacts = (
            Inventory(()) if offhours_only else take_inventory(run.home, disk_samples, settings.daemon.state_dir, stop)
        )
        if not offhours_only:
            check_shrink(settings, run.home, artifacts, accept_shrink)
            artifacts = _purge_trash_under_pressure(settings, acting, run, artifacts, now)
            artifacts = observe_usage(artifacts, run.home, settings.policies)
        _stop_point(stop, "scan")
        inventory = with_deployments(artifacts, context)
        plan = evaluate(inventory, settings.policies, now, zone=settings.daemon.zone, acting=acting)
        if stop is not None and stop.is_set():
            return RunResult(run.run_id, plan, inventory, interrupted_during="plan")  # every action "not started"
        return execute(plan, inventory, run.actors(actor), progress, stop)
    finally:
        close_context(context)


def _stop_point(stop: threading.Event | None, phase: str) -> None:
    if stop is not None and stop.is_set():
        raise RunInterrupted(f"stopped during {phase}; nothing was deleted", phase)
