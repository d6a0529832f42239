"""When the daemon's jobs fire: cron triggers for retention policies, window edges for off-hours.

The scheduler decides WHEN, never WHAT. APScheduler 3.x: an explicit timezone, coalescing, no
overlapping runs, and a misfire grace in minutes (the default of 1 s silently drops a late run).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from daemon.config import Settings
from policies.windows import TimeSpec

MISFIRE_GRACE_SECONDS = 15 * 60  # a run that is late by minutes still runs (APScheduler's default drops it after 1 s)


class WindowTrigger(BaseTrigger):
    """Fires at every edge of an off-hours window and at least every ``reconcile`` in between."""

    def __init__(self, window: TimeSpec, reconcile: timedelta) -> None:
        self.window = window
        self.reconcile = reconcile

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        if previous_fire_time is None:
            return now
        regular = previous_fire_time + self.reconcile
        edge = self.window.next_change(previous_fire_time)
        return min(regular, edge) if edge is not None else regular


def scheduler_for(settings: Settings) -> BackgroundScheduler:
    """Return a scheduler in ``daemon.timezone`` that coalesces, never overlaps a job, and runs late jobs."""
    return BackgroundScheduler(
        timezone=settings.daemon.zone,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_SECONDS},
    )


def retention_trigger(schedule: str, settings: Settings) -> CronTrigger:
    return CronTrigger.from_crontab(schedule, timezone=settings.daemon.zone)
