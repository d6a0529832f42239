"""Prometheus metrics from every run: a textfile-collector file and an optional 127.0.0.1 endpoint.

Two writers share one textfile: the daemon (``run``) and every ``apply`` (the timer unit). So the
figures are not kept in a process's memory: each run adds its own to ``<state_dir>/metrics.json``
(counters since the state directory was made, last-run gauges per policy, the store as the last
scan saw it) in a read-modify-write under ``<state_dir>/metrics.lock``, and the textfile is
rendered from the whole file under the same lock, written atomically (temp file + rename, mode
0644). An ``apply`` therefore never resets the daemon's counters, every textfile carries every
run's figures, and a later write never carries older ones. The HTTP endpoint renders the same
file at each scrape. What is read live at render time: the disk under the store, the savings and
overdue deployments (daemon/offhours_figures.py), and what the config says (intervals, watermarks).
``retentiond_metrics_written_timestamp_seconds`` and ``retentiond_metrics_stale_after_seconds``
let an alert tell a textfile nobody rewrites any more. Metrics are history, never safety: a state
directory that cannot be written is logged and the run goes on.
"""

from __future__ import annotations

import errno
import json
from collections import Counter as Tally
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from filelock import FileLock, Timeout

from daemon.config import Settings
from daemon.errors import ConfigError
from daemon.files import write_file_atomically
from daemon.instants import utc_now
from daemon.metric_snapshot import KINDS, Snapshot
from daemon.offhours_figures import Overdue, PolicySavings, SavingsFile, hourly_costs, overdue
from daemon.ownership import OwnershipFile, OwnershipState
from daemon.run_figures import RunSummary
from policies import Inventory

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = structlog.get_logger("retentiond")
# Failures to bind that are about the port (taken, or privileged) rather than the address.
_PORT_ERRNOS = {errno.EADDRINUSE, errno.EACCES}


LOCK_WAIT_SECONDS = 10.0
CRON_GAPS_LOOKED_AT = 10


class MetricsFile:
    """``<state_dir>/metrics.json`` and its lock."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "metrics.json"
        self.lock_path = state_dir / "metrics.lock"

    def load(self) -> dict[str, Any]:
        """Return the stored figures; nothing stored or unreadable is an empty set."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """Hold the metrics lock; yield the stored figures to change; write them back. Raise OSError or Timeout."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        with FileLock(self.lock_path, timeout=LOCK_WAIT_SECONDS, thread_local=False):
            state = self.load()
            yield state
            write_file_atomically(self.path, json.dumps(state, indent=1).encode())


def add_run(state: dict[str, Any], summary: RunSummary) -> None:
    """Add one run's figures to the stored ones, per policy."""
    policies = state.setdefault("policies", {})
    finished = summary.finished_at.timestamp()
    for policy, figures in summary.figures.items():
        entry = policies.setdefault(policy, {})
        entry["bytes_freed"] = entry.get("bytes_freed", 0) + figures.bytes_freed
        runs = entry.setdefault("runs", {})
        outcome = summary.outcomes.get(policy, "error")
        runs[outcome] = runs.get(outcome, 0) + 1
        entry["last_run_at"] = finished
        entry["last_success"] = 1 if outcome == "ok" else 0
        if outcome == "ok":
            entry["last_success_at"] = finished
        entry["last_duration_s"] = summary.duration_s
        entry["last_failed_actions"] = figures.actions_failed
    result = summary.result
    if result is None:
        return
    for action_result in result.results:
        actions = policies.setdefault(action_result.action.policy, {}).setdefault("actions", {})
        key = f"{action_result.action.action}/{action_result.outcome}"
        actions[key] = actions.get(key, 0) + 1
    blocked = state.setdefault("blocked", {})
    for report in result.plan.disk_reports:
        blocked[report.policy] = 0 if report.reached else report.blocked_bytes
    if result.inventory.artifacts:
        gone = {(r.action.kind, r.action.name, r.action.version) for r in result.results if r.outcome == "ok"}
        set_store(state, result.inventory, gone)
        # Only a run that decided reads /proc (the daemon's rescans for the store size do not).
        state["in_use"] = len(result.inventory.in_use)


def set_store(state: dict[str, Any], inventory: Inventory, gone: Collection[tuple[str, str, str | None]] = ()) -> None:
    """Remember the store's size and versions by kind, as ``inventory`` shows it less what ``gone`` names."""
    sizes: Tally[str] = Tally()
    counts: Tally[str] = Tally()
    for artifact in inventory.artifacts:
        if (artifact.kind, artifact.name, artifact.version) not in gone:
            sizes[artifact.kind] += artifact.size_bytes
            counts[artifact.kind] += 1
    state["store"] = {"bytes": {kind: sizes[kind] for kind in KINDS}, "versions": {kind: counts[kind] for kind in KINDS}}


class Metrics:
    """The metrics of one config: record runs, render the textfile, serve the endpoint.

    ``refresh_seconds``: how often the writer rewrites the textfile (the daemon); None for ``apply``,
    whose textfile is stale after twice the shortest policy interval. ``clock`` times each rendering.
    """

    def __init__(
        self, settings: Settings, refresh_seconds: float | None = None, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.clock = clock
        self.settings = settings
        self.refresh_seconds = refresh_seconds
        self.file = MetricsFile(settings.daemon.state_dir)
        self._server: WSGIServer | None = None

    def record_run(self, summary: RunSummary, audit_intact: bool | None = None) -> None:
        """Add a run's figures to the stored ones and rewrite the textfile (best effort)."""

        def change(state: dict[str, Any]) -> None:
            add_run(state, summary)
            if audit_intact is not None:
                state["audit_intact"] = int(audit_intact)

        self._update(change)

    def record_store(self, inventory: Inventory) -> None:
        """Remember the store as a scan outside any run saw it (the daemon's baseline) and rewrite the textfile."""
        self._update(lambda state: set_store(state, inventory))

    def write_textfile(self) -> None:
        """Rewrite the textfile from the stored figures (the daemon at start, every refresh, at stop)."""
        self._update(lambda state: None)

    def _update(self, change: Callable[[dict[str, Any]], None]) -> None:
        try:
            with self.file.locked() as state:
                change(state)
                if self.settings.metrics.textfile is not None:
                    self._write(self.snapshot(state=state))
                elif self.settings.offhours:
                    _offhours(self.settings, self.clock(), save=True)  # keep the savings ledger current
        except (OSError, Timeout) as error:
            log.warning("metrics.write_failed", path=str(self.file.path), error=getattr(error, "strerror", None) or str(error))

    def _write(self, snapshot: Snapshot) -> None:
        path = self.settings.metrics.textfile
        if path is None:
            return
        # prometheus_client (and apscheduler, for the intervals) only where metrics are rendered: not in
        # every `apply` (tests/daemon/test_lazy_imports.py).
        from daemon.metric_families import render

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomically(path, render(snapshot))
        except OSError as error:
            log.warning("metrics.write_failed", path=str(path), error=error.strerror or str(error))

    def snapshot(self, state: dict[str, Any] | None = None, read_only: bool = False) -> Snapshot:
        """Return what a rendering shows now: the stored figures plus what is read live.

        Unless ``read_only``, the savings ledger is brought up to date and saved (under the metrics lock).
        """
        settings = self.settings
        now = self.clock()
        snapshot = Snapshot(state=self.file.load() if state is None else state, written_at=now.timestamp())
        snapshot.intervals = policy_intervals(settings, now)
        snapshot.stale_after = (
            3 * self.refresh_seconds if self.refresh_seconds
            else (2 * min(snapshot.intervals.values()) if snapshot.intervals else None)
        )
        snapshot.disk_used_ratio, snapshot.watermarks = _disk(settings)
        if settings.offhours:
            snapshot.savings, snapshot.overdue = _offhours(settings, now, save=not read_only)
        return snapshot

    def serve(self, address: str, port: int) -> None:
        """Serve ``/metrics`` on ``address:port`` in a background thread, rendered at each scrape, instead of any earlier endpoint.

        Raise ConfigError naming ``metrics.listen_port`` or ``metrics.listen_address`` if it cannot
        listen there; an endpoint already served stays up then.
        """
        from daemon.metric_families import serve

        try:
            server = serve(lambda: self.snapshot(read_only=True), address, port)
        except (OSError, OverflowError, ValueError) as error:
            key = "metrics.listen_port" if isinstance(error, OSError) and error.errno in _PORT_ERRNOS else "metrics.listen_address"
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise ConfigError(f"{key}: cannot listen on {address} port {port}: {reason}") from None
        self.close()
        self._server = server

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def policy_intervals(settings: Settings, now: datetime) -> dict[str, float]:
    """Given the config, return how often each scheduled policy is expected to run, in seconds.

    A cron schedule counts its longest gap among the next few runs (``0 3 * * 1-5`` is three days
    over a weekend); off-hours runs every ``reconcile_interval``. Disk policies run on demand: none.
    """
    from daemon.schedule import retention_trigger

    intervals: dict[str, float] = {}
    for policy in settings.retention:
        if policy.schedule is None:
            continue
        trigger = retention_trigger(policy.schedule, settings)
        fires: list[datetime] = []
        for _ in range(CRON_GAPS_LOOKED_AT + 1):
            fire = trigger.get_next_fire_time(fires[-1] if fires else None, fires[-1] + timedelta(seconds=1) if fires else now)
            if fire is None:
                break
            fires.append(fire)
        gaps = [(later - earlier).total_seconds() for earlier, later in zip(fires, fires[1:])]
        if gaps:
            intervals[policy.name] = max(gaps)
    for offhours in settings.offhours:
        intervals[offhours.name] = offhours.reconcile_interval.approx_seconds()
    return intervals


def _disk(settings: Settings) -> tuple[float | None, dict[str, tuple[float | None, float | None, float | None]]]:
    from daemon.observe import read_disk_usage

    try:
        disk = read_disk_usage(settings.store.home)
    except OSError:
        return None, {}
    watermarks = {}
    for policy in settings.disk:
        high, low, budget = (getattr(policy, key) for key in ("high_watermark", "low_watermark", "max_store_size"))
        watermarks[policy.name] = (
            high.resolve(disk.total_bytes) / disk.total_bytes if high is not None and disk.total_bytes else None,
            low.resolve(disk.total_bytes) / disk.total_bytes if low is not None and disk.total_bytes else None,
            float(budget.resolve(disk.total_bytes)) if budget is not None else None,
        )
    return disk.used_ratio, watermarks


def offhours_savings(settings: Settings, now: datetime) -> dict[str, PolicySavings]:
    """Given the config and the instant, return each off-hours policy's savings (read only, for ``status``)."""
    return _offhours(settings, now, save=False)[0] if settings.offhours else {}


def _offhours(settings: Settings, now: datetime, save: bool) -> tuple[dict[str, PolicySavings], Overdue]:
    """Return savings per off-hours policy and what is overdue, from the ownership records as they are."""
    state_dir = settings.daemon.state_dir
    costs = hourly_costs(settings.offhours)
    savings_file = SavingsFile(state_dir)
    ledger = savings_file.load()
    try:
        ownership: OwnershipState | None = OwnershipFile(state_dir).load()
    except ConfigError:
        ownership = None  # unreadable records: know nothing, close nothing
    if ownership is not None and ledger.reconcile(ownership.records.values(), now, costs) and save:
        try:
            savings_file.save(ledger)
        except OSError as error:
            log.warning("savings.write_failed", path=str(savings_file.path), error=error.strerror or str(error))
    late = overdue(ownership.records.values(), ownership.inactive_since, settings.offhours, now) if ownership else Overdue({}, {})
    return ledger.totals(now, costs), late

