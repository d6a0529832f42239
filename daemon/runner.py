"""One run, the same pipeline for ``plan``, ``apply`` and the daemon: observe → decide → execute.

Observe (daemon/observe.py) reads the world once: the store, the disk, processes, the trash, the
deployments. Decide is ``policies.evaluate`` (through daemon/guards.py, which adds BentoCloud's
answers): every safety limit (blast radius, ``max_shrink``, a provider that could not list) and
the trash purge under disk pressure are plan content, so ``plan`` shows what ``apply`` does and
exits as it would. Execute (daemon/executor.py) carries the plan out under the store lock.

The run's instant is read once, when the store lock is taken (``apply``) or by the caller
(``plan --at``), and passed down to everything that needs time; nothing below reads the clock
(audit records carry the time they were written, as logs do).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from daemon.audit import AuditLog
from daemon.config import Settings
from daemon.deployments import DeploymentActor, DeploymentContext, close_context, gather_deployments
from daemon.errors import AuditError, ConfigError, RunInterrupted, UsageError
from daemon.executor import Actors, RunProgress, RunResult, execute
from daemon.guards import RunGuards
from daemon.instants import utc_now
from daemon.observe import observe, offhours_only
from daemon.run_figures import policy_figures
from daemon.state import StateFile, require_writable_state_dir
from daemon.store import Store, check_store_root
from daemon.trash import Trash
from policies import DiskSample, Inventory, Plan

log = structlog.get_logger("retentiond")


@dataclass(frozen=True)
class PlannedRun:
    plan: Plan
    inventory: Inventory


def check_policy_names(settings: Settings, requested: Collection[str] | None) -> None:
    """Raise UsageError if ``--policy`` names a policy the config does not have."""
    unknown = sorted(set(requested or ()) - set(settings.policy_names()))
    if unknown:
        known = ", ".join(settings.policy_names()) or "none configured"
        raise UsageError(f"--policy: unknown policy {', '.join(unknown)} (configured: {known})")


def make_plan(
    settings: Settings, now: datetime, acting: Collection[str] | None = None, *, accept_shrink: bool = False
) -> PlannedRun:
    """Given the config and the instant, observe and decide as ``apply`` would, without the lock and without
    acting (ownership records are brought up to date in memory only). Return the plan and what it saw.

    Off-hours policies are simulated at ``now`` against the deployments as they are.
    """
    check_policy_names(settings, acting)
    home = check_store_root(settings.store.home)
    trash = Trash(Store(home), retry=StateFile(settings.daemon.state_dir).stuck_trash())
    context = gather_deployments(settings, acting)
    try:
        if context is not None:
            context.state.observe(context.view.deployments, context.view.listed, now, settings.offhours)
        inventory = observe(settings, home, now, acting, context, trash)
    finally:
        close_context(context)
    with RunGuards.open(settings, home, now, store_run=not offhours_only(settings, acting)) as guards:
        plan = guards.decide(inventory, now, acting, settings.store.limits(accept_shrink))
    return PlannedRun(plan=plan, inventory=inventory)


@dataclass
class LockedRun:
    """A run in progress: the store is locked (at ``now``, the run's instant) and the audit log is open."""

    home: Path
    store: Store
    trash: Trash
    audit: AuditLog
    run_id: str
    now: datetime
    archive_dir: Path | None = None

    def actors(self, deployments: DeploymentActor | None = None, guards: RunGuards | None = None) -> Actors:
        return Actors(self.store, self.trash, self.audit, self.run_id, deployments, self.archive_dir, guards)


@contextmanager
def locked_run(
    settings: Settings,
    policies: list[str],
    wait_seconds: float,
    stop: threading.Event | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Iterator[LockedRun]:
    """Lock the store (the run's instant is read from ``clock`` then, once), open the audit log, record
    ``run.started`` and repair what an interrupted run left in the store.

    Raise StoreBusyError, ConfigError or AuditError before anything is touched, RunInterrupted if
    ``stop`` is set while waiting for the lock. Once ``stop`` is set the trash purge ends early.
    """
    home = check_store_root(settings.store.home)
    store = Store(home, clock)
    run_id = uuid.uuid4().hex[:12]
    rotate = settings.daemon.audit_rotate_size
    # Opened under the lock: the chain's last hash and a rotation must not race another run.
    with store.locked(wait_seconds, stop) as now, AuditLog(settings.daemon.audit_log, run_id, rotate.bytes if rotate else None) as audit:
        audit.record("run.started", store=str(home), policies=policies, at=now.isoformat())
        audit.sync()
        state = StateFile(settings.daemon.state_dir)
        trash = Trash(
            store, settings.store.trash_retention_span, frozenset(p.name for p in settings.disk),
            retry=state.stuck_trash(), report=lambda entry: audit.record("trash.purge_failed", **entry.audit_fields()),
            stop=stop,
        )
        for detail in trash.recover():
            audit.record("store.recovered", detail=detail)
        trash.purge(())  # entries an earlier run could not purge are retried by every run (restore included)
        try:
            yield LockedRun(home, store, trash, audit, run_id, now, settings.store.archive_dir)
        finally:
            with suppress(OSError, AuditError):
                trash.close(run_id)
            _report_stuck(trash, state, run_id, now)


def _report_stuck(trash: Trash, state: StateFile, run_id: str, now: datetime) -> None:
    """Log the trash entries this run could not purge (one line, however many) and remember them for the next run."""
    stuck = trash.stuck
    if stuck:
        log.warning(
            "trash.purge_failed", run_id=run_id, entries=len(stuck), size_bytes=sum(entry.size_bytes for entry in stuck),
            disk_bytes=sum(entry.disk_bytes for entry in stuck),
            first_error=stuck[0].error, retry="next run",
        )
    state.record_trash(stuck, now)


def ready_deployments(context: DeploymentContext | None, run: LockedRun, settings: Settings) -> DeploymentActor | None:
    """Given a run's deployment context, update ownership from the fresh listing as of the run's instant
    (under the lock) and return the actor for deployment actions."""
    if context is None:
        return None
    for dropped in context.state.observe(context.view.deployments, context.view.listed, run.now, settings.offhours):
        run.audit.record("ownership.dropped", detail=dropped)
    try:
        context.ownership_file.save(context.state)
    except OSError as error:
        raise ConfigError(
            f"cannot write ownership records {context.ownership_file.path}: {error.strerror or error}; "
            "daemon.state_dir must be writable"
        ) from None
    return DeploymentActor(
        context.providers, context.ownership_file, context.state, settings.offhours, context.view.deployments, run.now
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

    The run's instant is read from ``clock`` once, when the lock is taken. Once ``stop`` is set the run
    ends at the next safe point (the action in progress finishes), is recorded as ``run.interrupted`` and
    returned with ``interrupted_during`` saying where. A safety limit that refuses actions is in the
    result's plan (``refusals``), as ``plan`` shows it.
    Raise StoreBusyError, ConfigError (also when store.max_shrink is set and daemon.state_dir cannot be
    written), AuditError; RunInterrupted if ``stop`` is set before the store lock is taken; UsageError
    for an unknown policy name. Failed actions are in the result. ``on_locked`` is told once the lock is
    taken and ``run.started`` written (daemon/fleet.py pings a run's start there: a busy store never starts one).
    """
    check_policy_names(settings, acting)
    require_writable_state_dir(settings)
    policies = sorted(acting or settings.policy_names())
    with locked_run(settings, policies, wait_seconds, stop, clock) as run:
        if on_locked is not None:
            on_locked(run)
        try:
            result = _act(settings, acting, run, progress, disk_samples, stop, accept_shrink)
        except RunInterrupted as error:
            result = RunResult(run.run_id, Plan(run.now), Inventory(()), interrupted_during=error.phase)
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
) -> RunResult:
    """The locked part of a run: observe, decide, execute. Raise RunInterrupted at a safe point once ``stop`` is set."""
    _stop_point(stop, "start")
    context = gather_deployments(settings, acting)
    try:
        _stop_point(stop, "deployments")
        actor = ready_deployments(context, run, settings)
        inventory = observe(settings, run.home, run.now, acting, context, run.trash, stop=stop, disk_samples=disk_samples)
        _stop_point(stop, "scan")
        with RunGuards.open(settings, run.home, run.now, store_run=not offhours_only(settings, acting), stop=stop) as guards:
            plan = guards.decide(inventory, run.now, acting, settings.store.limits(accept_shrink))
            if stop is not None and stop.is_set():
                return RunResult(run.run_id, plan, inventory, interrupted_during="plan")  # every action "not started"
            result = execute(plan, inventory, run.actors(actor, guards), progress, stop)
        guards.record(settings.daemon.state_dir, run.run_id)
        return result
    finally:
        close_context(context)


def _stop_point(stop: threading.Event | None, phase: str) -> None:
    if stop is not None and stop.is_set():
        raise RunInterrupted(f"stopped during {phase}; nothing was deleted", phase)
