"""A run as the fleet sees it: its start pinged, its figures added to the metrics, one message sent.

``observed_run`` wraps ``runner.apply_once`` for both ``apply`` and the daemon's scheduled runs.
A store that is busy starts no run and sends nothing (the run holding it reports; a lock held
for ever shows as missing healthchecks pings and a stale textfile). Any other error before or
during a run is a ``run.failed`` message and a ``/fail`` ping, and is raised on as before; it counts
in the metrics (``retentiond_runs_total{outcome="error"}``) only once the run held the lock, since
before that nothing may be written.
Nothing here changes a run's outcome or exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from daemon.audit import tail_intact
from daemon.config import Settings
from daemon.errors import RetentiondError, RunInterrupted, StoreBusyError
from daemon.executor import RunResult
from daemon.instants import utc_now
from daemon.metrics import Metrics
from daemon.notify_run import RunNotifier
from daemon.run_figures import summarize, summarize_failure
from daemon.runner import LockedRun

log = structlog.get_logger("retentiond")

LockedCallback = Callable[[LockedRun], None]


class _Observer:
    def __init__(self, settings: Settings, daemon: bool, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.clock = clock
        self.started_at = clock()
        self.run_id: str | None = None
        self.audit_intact: bool | None = None
        self.notifier = RunNotifier(settings.notify, daemon)

    def on_locked(self, run: LockedRun) -> None:
        self.run_id = run.run_id
        try:
            self.audit_intact = tail_intact(self.settings.daemon.audit_log)
        except OSError:
            self.audit_intact = None
        if self.audit_intact is False:
            log.warning("audit.tail_broken", run_id=run.run_id, audit_log=str(self.settings.daemon.audit_log),
                        hint="records were edited or removed since the last run: run `retentiond audit verify`")
        self.notifier.started()


def observed_run(
    settings: Settings,
    policies: list[str],
    run: Callable[[LockedCallback], RunResult],
    *,
    daemon: bool,
    metrics: Metrics | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> RunResult:
    """Given how to start a run (``run(on_locked)``), run it; then record its metrics and send its messages.

    Raise whatever the run raises (StoreBusyError and RunInterrupted untouched, anything else after a
    ``run.failed`` message).
    """
    observer = _Observer(settings, daemon, clock)
    metrics = metrics or Metrics(settings)
    try:
        result = run(observer.on_locked)
    except (StoreBusyError, RunInterrupted):
        raise  # never started: nothing to report (a signal while waiting for the lock)
    except Exception as error:
        reason = str(error) if isinstance(error, RetentiondError) else f"internal error: {type(error).__name__}"
        summary = summarize_failure(reason, policies, observer.started_at, clock(), observer.run_id)
        if observer.run_id is not None:
            # Before the lock nothing is written anywhere (a store root that is not one stays untouched).
            metrics.record_run(summary, observer.audit_intact)
        observer.notifier.finished(summary)
        raise
    summary = summarize(result, policies, observer.started_at, clock())
    metrics.record_run(summary, observer.audit_intact)
    observer.notifier.finished(summary)
    return result
