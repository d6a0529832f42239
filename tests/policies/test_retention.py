"""Deterministic checks of ``apply_rules``, one restic 0.14 ``forget`` behaviour per test.

Every expectation here was confirmed against the real restic 0.14.0 (see
``test_retention_restic.py``, whose random judge found the ambiguous-anchor case).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from policies.durations import Duration
from policies.retention import KeepRules, apply_rules

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def kept(times: Sequence[datetime], rules: KeepRules, zone: ZoneInfo | timezone = UTC) -> set[datetime]:
    reasons = apply_rules(times, rules, zone, NOW)
    return {instant for instant, why in zip(times, reasons) if why}


def test_keep_last_keeps_the_newest_n_whatever_the_input_order() -> None:
    times = [_utc(2024, 5, 1), _utc(2024, 5, 3), _utc(2024, 5, 2)]
    assert kept(times, KeepRules(last=2)) == {times[1], times[2]}


def test_keep_daily_skips_days_without_items() -> None:
    times = [_utc(2024, 5, 9, 10), _utc(2024, 5, 9, 8), _utc(2024, 5, 5, 10), _utc(2024, 5, 2, 10), _utc(2024, 5, 1, 9)]
    assert kept(times, KeepRules(daily=3)) == {times[0], times[2], times[3]}


def test_keep_hourly_keeps_the_newest_item_of_each_hour() -> None:
    times = [_utc(2024, 5, 1, 10, 50), _utc(2024, 5, 1, 10, 5), _utc(2024, 5, 1, 9, 59), _utc(2024, 5, 1, 7, 0)]
    assert kept(times, KeepRules(hourly=10)) == {times[0], times[2], times[3]}


def test_keep_daily_reads_days_on_the_wall_clock_of_the_zone() -> None:
    # 23:30 UTC on May 1 is already May 2 in Berlin, the same day as the newer item.
    times = [_utc(2024, 5, 2, 8), _utc(2024, 5, 1, 23, 30), _utc(2024, 5, 1, 12)]
    assert kept(times, KeepRules(daily=5), UTC) == {times[0], times[1]}
    assert kept(times, KeepRules(daily=5), BERLIN) == {times[0], times[2]}


def test_keep_weekly_puts_2021_01_03_in_iso_week_53_of_2020() -> None:
    times = [_utc(2021, 1, 4, 12), _utc(2021, 1, 3, 12), _utc(2020, 12, 28, 12), _utc(2020, 12, 27, 12)]
    assert kept(times, KeepRules(weekly=3)) == {times[0], times[1], times[3]}


def test_keep_monthly_and_yearly_keep_the_newest_item_of_each_period() -> None:
    times = [_utc(2024, 2, 29, 12), _utc(2024, 2, 1), _utc(2024, 1, 31, 23), _utc(2023, 12, 31, 23)]
    assert kept(times, KeepRules(monthly=3)) == {times[0], times[2], times[3]}
    assert kept(times, KeepRules(yearly=2)) == {times[0], times[3]}


def test_keep_within_one_month_before_march_31_reaches_only_march_2_like_go() -> None:
    anchor = _utc(2024, 3, 31, 12)
    times = [anchor, _utc(2024, 3, 2, 12, 0, 1), _utc(2024, 3, 2, 12), _utc(2024, 2, 29, 12)]
    assert kept(times, KeepRules(within=Duration.parse("1mo"))) == {anchor, times[1]}


def test_keep_within_one_year_before_feb_29_reaches_only_march_1_like_go() -> None:
    anchor = _utc(2024, 2, 29, 12)
    times = [anchor, _utc(2023, 3, 1, 12, 0, 1), _utc(2023, 3, 1, 12), _utc(2023, 2, 28, 12, 0, 1)]
    assert kept(times, KeepRules(within=Duration.parse("1y"))) == {anchor, times[1]}


def test_keep_within_one_day_across_spring_forward_spans_23_hours() -> None:
    anchor = datetime(2025, 3, 31, 12, tzinfo=BERLIN).astimezone(UTC)  # 10:00 UTC
    times = [anchor, _utc(2025, 3, 30, 10, 0, 1), _utc(2025, 3, 30, 10), _utc(2025, 3, 30, 9, 0, 1)]
    assert kept(times, KeepRules(within=Duration.parse("1d")), BERLIN) == {anchor, times[1]}


def test_keep_within_excludes_an_item_exactly_at_the_cutoff() -> None:
    anchor = _utc(2024, 6, 10, 12)
    times = [anchor, _utc(2024, 6, 10, 10), _utc(2024, 6, 10, 10, 0, 1)]
    assert kept(times, KeepRules(within=Duration.parse("2h"))) == {anchor, times[2]}


def test_keep_within_is_anchored_at_the_newest_item_not_in_the_future_and_keeps_future_items() -> None:
    future = NOW + timedelta(days=30)
    anchor = _utc(2024, 6, 10, 12)
    times = [future, anchor, _utc(2024, 6, 9, 12, 0, 1), _utc(2024, 6, 9, 12)]
    assert kept(times, KeepRules(within=Duration.parse("1d"))) == {future, anchor, times[2]}


def test_keep_within_keeps_everything_when_every_item_is_in_the_future() -> None:
    times = [NOW + timedelta(days=days) for days in (3, 40, 400)]
    assert kept(times, KeepRules(within=Duration.parse("1d"))) == set(times)


def test_keep_last_counts_future_items_too() -> None:
    times = [NOW + timedelta(days=5), _utc(2024, 6, 10, 12), _utc(2024, 6, 9, 12)]
    assert kept(times, KeepRules(last=2)) == {times[0], times[1]}


def test_keep_within_daily_keeps_the_newest_item_of_every_day_inside_the_window_only() -> None:
    anchor = _utc(2024, 6, 10, 12)
    times = [anchor, _utc(2024, 6, 10, 8), _utc(2024, 6, 9, 20), _utc(2024, 6, 9, 1), _utc(2024, 6, 7, 23)]
    assert kept(times, KeepRules(within_daily=Duration.parse("2d"))) == {anchor, times[2]}


def test_a_rule_keeps_items_another_rule_already_kept_and_still_counts_them() -> None:
    times = [_utc(2024, 6, 10, 12), _utc(2024, 6, 10, 8), _utc(2024, 6, 9, 20)]
    assert apply_rules(times, KeepRules(last=1, daily=2), UTC, NOW) == [
        ("last 1", "daily 2024-06-10"),
        (),
        ("daily 2024-06-09",),
    ]


def test_keep_within_hours_reads_an_anchor_in_the_repeated_new_york_hour_as_its_first_occurrence() -> None:
    # The anchor is 01:30 EST (second 01:30 of 2025-11-02); Go's time.Date reads 01:30 as EDT,
    # one hour earlier, so restic's 2h window reaches back to 23:30 EDT and keeps 00:00 EDT.
    anchor = _utc(2025, 11, 2, 6, 30)
    times = [anchor, _utc(2025, 11, 2, 4, 0)]
    assert kept(times, KeepRules(within=Duration.parse("2h")), NEW_YORK) == {anchor, times[1]}


def test_keep_within_1h_keeps_nothing_when_the_anchor_is_in_the_first_repeated_berlin_hour() -> None:
    # The anchor is 02:30 CEST (first 02:30 of 2025-10-26); Go's time.Date reads 02:30 as CET,
    # one hour later, so restic's cut-off is the anchor itself and even the anchor is not kept.
    anchor = _utc(2025, 10, 26, 0, 30)
    times = [anchor, _utc(2025, 10, 25, 23)]
    assert kept(times, KeepRules(within=Duration.parse("1h")), BERLIN) == set()
    assert kept(times, KeepRules(within_hourly=Duration.parse("1h")), BERLIN) == set()
