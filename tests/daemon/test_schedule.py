"""Cron schedules of retention policies across DST edges, via APScheduler's get_next_fire_time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from daemon.config import Settings
from daemon.schedule import MISFIRE_GRACE_SECONDS, retention_trigger, scheduler_for

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc


def settings() -> Settings:
    return Settings(daemon={"timezone": "Europe/Berlin"})


def fire_times(trigger: CronTrigger, start: datetime, count: int) -> list[datetime]:
    times: list[datetime] = []
    previous, now = None, start
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        times.append(fire.astimezone(UTC))
        previous, now = fire, fire
    return times


def test_daily_run_in_the_skipped_hour_still_happens_on_spring_forward_day() -> None:
    trigger = retention_trigger("30 2 * * *", settings())
    times = fire_times(trigger, datetime(2025, 3, 29, 12, tzinfo=BERLIN), 3)
    # 02:30 does not exist on 2025-03-30 in Berlin; the run happens once that day, at 01:30 UTC (03:30 CEST).
    assert times == [
        datetime(2025, 3, 30, 1, 30, tzinfo=UTC),
        datetime(2025, 3, 31, 0, 30, tzinfo=UTC),
        datetime(2025, 4, 1, 0, 30, tzinfo=UTC),
    ]


def test_hourly_runs_follow_elapsed_hours_across_fall_back() -> None:
    trigger = retention_trigger("0 * * * *", settings())
    times = fire_times(trigger, datetime(2025, 10, 26, 0, 30, tzinfo=BERLIN), 5)
    assert times == [datetime(2025, 10, 25, 23, tzinfo=UTC) + timedelta(hours=step) for step in range(5)]


def test_daily_run_in_the_repeated_hour_runs_at_both_occurrences() -> None:
    # Harmless: runs are level-triggered, so the second one finds nothing more to do.
    trigger = retention_trigger("30 2 * * *", settings())
    times = fire_times(trigger, datetime(2025, 10, 25, 12, tzinfo=BERLIN), 3)
    assert times == [
        datetime(2025, 10, 26, 0, 30, tzinfo=UTC),
        datetime(2025, 10, 26, 1, 30, tzinfo=UTC),
        datetime(2025, 10, 27, 1, 30, tzinfo=UTC),
    ]


def test_weekday_schedule_uses_the_local_day_not_utc() -> None:
    trigger = retention_trigger("15 0 * * mon", settings())
    # Monday 00:15 in Berlin is Sunday 23:15 UTC in winter.
    assert fire_times(trigger, datetime(2026, 11, 20, tzinfo=UTC), 1) == [datetime(2026, 11, 22, 23, 15, tzinfo=UTC)]


def test_scheduler_coalesces_never_overlaps_and_tolerates_late_runs() -> None:
    scheduler = scheduler_for(settings())
    defaults = scheduler._job_defaults  # noqa: SLF001 - APScheduler 3 has no public getter
    assert defaults["coalesce"] is True and defaults["max_instances"] == 1
    assert defaults["misfire_grace_time"] == MISFIRE_GRACE_SECONDS >= 60
    assert str(scheduler.timezone) == "Europe/Berlin"


def test_offhours_job_fires_at_each_window_edge_and_reconciles_between() -> None:
    from daemon.schedule import WindowTrigger
    from policies.windows import TimeSpec

    trigger = WindowTrigger(TimeSpec.parse("Mon-Fri 20:00-07:00 Europe/Berlin"), timedelta(hours=2))
    start = datetime(2026, 11, 25, 17, 0, tzinfo=BERLIN)  # Wednesday
    assert trigger.get_next_fire_time(None, start) == start  # a fresh daemon catches up at once
    times = []
    previous = start
    for _ in range(4):
        previous = trigger.get_next_fire_time(previous, previous)
        times.append(previous.astimezone(BERLIN).strftime("%a %H:%M"))
    assert times == ["Wed 19:00", "Wed 20:00", "Wed 22:00", "Thu 00:00"]
