"""keep_within at the ends of the calendar: year 2 is an ordinary year, and the last minutes of year 9999
are judged whatever the host's timezone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import pytest

from policies.durations import Duration
from policies.retention import KeepRules, apply_rules


def kept(times: Sequence[datetime], within: str, now: datetime) -> list[bool]:
    return [bool(why) for why in apply_rules(times, KeepRules(within=Duration.parse(within)), timezone.utc, now)]


def test_keep_within_in_year_2_counts_back_from_the_newest_version() -> None:
    times = [datetime(2, 6, 1, tzinfo=timezone.utc), datetime(2, 5, 31, 12, tzinfo=timezone.utc), datetime(2, 1, 1, tzinfo=timezone.utc)]
    assert kept(times, "1d", datetime(2, 6, 2, tzinfo=timezone.utc)) == [True, True, False]


@pytest.mark.usefixtures("host_in_berlin")
def test_keep_within_in_the_last_minutes_of_year_9999_works_whatever_the_hosts_timezone() -> None:
    # In Berlin these instants are already in year 10000, which a datetime cannot hold.
    times = [datetime(9999, 12, 31, 23, 59, tzinfo=timezone.utc), datetime(9999, 12, 31, 23, 55, tzinfo=timezone.utc),
             datetime(9999, 12, 31, 23, 0, tzinfo=timezone.utc)]
    assert kept(times, "10m", datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)) == [True, True, False]


def daily_within(times: Sequence[datetime], span: str, now: datetime, weekly: str | None = None) -> list[tuple[str, ...]]:
    rules = KeepRules(within_daily=Duration.parse(span), within_weekly=Duration.parse(weekly) if weekly else None)
    return apply_rules(times, rules, timezone.utc, now)


def test_keep_within_daily_does_not_keep_a_version_exactly_at_its_cutoff() -> None:
    # A wider weekly window keeps the loop going past the daily cutoff; both versions fall in one week.
    times = [datetime(2024, 5, 10, tzinfo=timezone.utc), datetime(2024, 5, 9, tzinfo=timezone.utc)]
    assert daily_within(times, "1d", datetime(2024, 6, 1, tzinfo=timezone.utc), weekly="4w") == [
        ("daily within 1d 2024-05-10", "weekly within 4w 2024-W19"), (),
    ]


def test_keep_within_daily_names_the_true_day_in_the_last_days_of_year_9999() -> None:
    times = [datetime(9999, 12, 31, 12, tzinfo=timezone.utc), datetime(9999, 12, 30, 12, tzinfo=timezone.utc)]
    assert daily_within(times, "2d", datetime(9999, 12, 31, 13, tzinfo=timezone.utc)) == [
        ("daily within 2d 9999-12-31",), ("daily within 2d 9999-12-30",),
    ]
