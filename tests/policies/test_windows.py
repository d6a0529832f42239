"""Tests for policies.windows: kube-downscaler time specs, holidays, inversion, next_change."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.windows import Holiday, TimeSpec

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
WEEKEND_WINDOW = "Mon-Fri 20:00-07:00 Europe/Berlin, Sat-Sun 00:00-24:00 Europe/Berlin"
# June 2025: Monday is the 2nd, Sunday the 8th; Berlin is UTC+2.
WEEKDAY_DATES = {"Mon": 2, "Tue": 3, "Wed": 4, "Thu": 5, "Fri": 6, "Sat": 7, "Sun": 8}


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def berlin(*parts: int, fold: int = 0) -> datetime:
    return datetime(*parts, tzinfo=BERLIN, fold=fold)


def june(day: str, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return berlin(2025, 6, WEEKDAY_DATES[day], hour, minute, second)


def matched_days(spec: str) -> set[str]:
    parsed = TimeSpec.parse(spec)
    return {day for day in WEEKDAY_DATES if parsed.matches(june(day, 12))}


# --- grammar --------------------------------------------------------------------------


def test_recurring_item_matches_inside_hours_on_listed_days() -> None:
    spec = TimeSpec.parse("Mon-Fri 07:30-20:30 Europe/Berlin")
    assert spec.matches(june("Wed", 12))
    assert not spec.matches(june("Wed", 6))
    assert not spec.matches(june("Sat", 12))


def test_start_inclusive_end_exclusive_and_seconds_ignored() -> None:
    spec = TimeSpec.parse("Mon-Fri 07:30-20:30 Europe/Berlin")
    assert not spec.matches(june("Tue", 7, 29, 59))
    assert spec.matches(june("Tue", 7, 30))
    assert spec.matches(june("Tue", 20, 29, 59))
    assert not spec.matches(june("Tue", 20, 30))


def test_end_of_day_24_00() -> None:
    spec = TimeSpec.parse("Fri-Fri 18:00-24:00 Europe/Berlin")
    assert spec.matches(june("Fri", 23, 59, 59))
    assert not spec.matches(june("Sat", 0, 0))
    assert TimeSpec.parse("Mon-Mon 00:00-24:00 UTC").matches(utc(2025, 6, 2, 23, 59))


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ("Mon-Fri", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("Sun-Fri", {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("Sat-Mon", {"Sat", "Sun", "Mon"}),
        ("Sun-Sat", set(WEEKDAY_DATES)),
        ("Mon-Sun", set(WEEKDAY_DATES)),
        ("Mon-Mon", {"Mon"}),
        ("Fri-Tue", {"Fri", "Sat", "Sun", "Mon", "Tue"}),
    ],
)
def test_day_ranges_wrap(days: str, expected: set[str]) -> None:
    assert matched_days(f"{days} 00:00-24:00 Europe/Berlin") == expected


def test_weekday_comes_from_the_local_date_not_utc() -> None:
    sunday_night_utc = utc(2025, 6, 8, 23, 30)  # Monday 01:30 in Berlin
    assert TimeSpec.parse("Mon-Mon 00:00-02:00 Europe/Berlin").matches(sunday_night_utc)
    assert not TimeSpec.parse("Sun-Sun 00:00-24:00 Europe/Berlin").matches(sunday_night_utc)
    assert TimeSpec.parse("Sun-Sun 00:00-24:00 UTC").matches(sunday_night_utc)


def test_time_is_read_in_the_item_zone() -> None:
    noon_utc = utc(2025, 6, 4, 12)  # 08:00 in New York, 14:00 in Berlin
    assert TimeSpec.parse("Wed-Wed 08:00-09:00 America/New_York").matches(noon_utc)
    assert not TimeSpec.parse("Wed-Wed 08:00-09:00 Europe/Berlin").matches(noon_utc)


def test_multiple_items_whitespace_around_commas() -> None:
    spec = TimeSpec.parse("Mon-Mon 08:00-09:00 UTC ,  Tue-Tue 10:00-11:00 UTC,Wed-Wed 12:00-13:00 UTC")
    assert spec.matches(utc(2025, 6, 2, 8, 30))
    assert spec.matches(utc(2025, 6, 3, 10, 30))
    assert spec.matches(utc(2025, 6, 4, 12, 30))
    assert not spec.matches(utc(2025, 6, 4, 10, 30))


def test_case_insensitive_days_zones_and_keywords() -> None:
    spec = TimeSpec.parse("mon-FRI 07:30-20:30 europe/berlin")
    assert spec.matches(june("Mon", 8))
    assert spec.next_change(june("Mon", 8)) == june("Mon", 20, 30).astimezone(UTC)
    assert TimeSpec.parse("ALWAYS").matches(utc(2025, 1, 1))
    assert not TimeSpec.parse(" Never ").matches(utc(2025, 1, 1))
    assert TimeSpec.parse("Sun-Sat 00:00-24:00 AMERICA/NEW_YORK").matches(utc(2025, 1, 1))


def test_always_and_never() -> None:
    for instant in (utc(1999, 1, 1), utc(2025, 3, 30, 1), utc(2099, 12, 31, 23, 59)):
        assert TimeSpec.parse("always").matches(instant)
        assert not TimeSpec.parse("never").matches(instant)


def test_absolute_range_is_inclusive_at_both_ends() -> None:
    spec = TimeSpec.parse("2026-12-24T00:00:00+01:00-2027-01-02T00:00:00+01:00")
    assert not spec.matches(utc(2026, 12, 23, 22, 59, 59))
    assert spec.matches(utc(2026, 12, 23, 23, 0))
    assert spec.matches(utc(2027, 1, 1, 23, 0))
    assert not spec.matches(utc(2027, 1, 1, 23, 0) + timedelta(microseconds=1))


def test_absolute_range_with_negative_and_z_offsets() -> None:
    spec = TimeSpec.parse("2026-01-01T00:00:00-05:00-2026-01-01T06:00:00Z")
    assert spec.matches(utc(2026, 1, 1, 5, 0))
    assert spec.matches(utc(2026, 1, 1, 6, 0))
    assert not spec.matches(utc(2026, 1, 1, 4, 59, 59))


def test_absolute_and_recurring_items_combine() -> None:
    spec = TimeSpec.parse("Sat-Sun 00:00-24:00 UTC, 2025-06-04T10:00:00+00:00-2025-06-04T11:00:00+00:00")
    assert spec.matches(utc(2025, 6, 4, 10, 30))
    assert spec.matches(utc(2025, 6, 7, 10, 30))
    assert not spec.matches(utc(2025, 6, 5, 10, 30))


def test_naive_datetimes_are_rejected() -> None:
    spec = TimeSpec.parse("always")
    with pytest.raises(ValueError, match="naive"):
        spec.matches(datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        spec.next_change(datetime(2025, 1, 1))


def test_str_is_the_original_text_and_specs_are_hashable() -> None:
    text = "Mon-Fri 07:30-20:30 Europe/Berlin"
    spec = TimeSpec.parse(text)
    assert str(spec) == text
    assert spec == TimeSpec.parse(text)
    assert len({spec, TimeSpec.parse(text), spec.inverted()}) == 2
    with pytest.raises(AttributeError):
        spec.text = "never"  # type: ignore[misc]


# --- overnight items ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (june("Tue", 6, 59), True),
        (june("Tue", 7, 0), False),
        (june("Tue", 19, 59), False),
        (june("Fri", 20, 0), True),
        (june("Fri", 23, 59), True),
        (june("Mon", 0, 30), True),  # Monday is listed, so its early morning counts
        (june("Sat", 6, 0), False),  # Saturday is not listed
        (june("Sun", 21, 0), False),
    ],
)
def test_overnight_item_covers_early_morning_and_late_evening(instant: datetime, expected: bool) -> None:
    assert TimeSpec.parse("Mon-Fri 20:00-07:00 Europe/Berlin").matches(instant) is expected


def test_overnight_item_ending_at_midnight() -> None:
    spec = TimeSpec.parse("Mon-Fri 20:00-00:00 Europe/Berlin")
    assert spec.matches(june("Fri", 20, 0))
    assert spec.matches(june("Fri", 23, 59))
    assert not spec.matches(june("Sat", 0, 0))
    assert not spec.matches(june("Tue", 0, 30))
    assert not spec.matches(june("Tue", 19, 59))


def test_start_equal_to_end_matches_nothing() -> None:
    spec = TimeSpec.parse("Sun-Sat 10:00-10:00 Europe/Berlin")
    assert not any(spec.matches(june("Wed", 0) + timedelta(minutes=15 * step)) for step in range(96))
    assert spec.next_change(june("Wed", 0)) is None


def test_weekend_window_is_continuous_from_friday_evening_to_monday_morning() -> None:
    spec = TimeSpec.parse(WEEKEND_WINDOW)
    start, end = june("Fri", 20), june("Mon", 7) + timedelta(days=7)
    assert not spec.matches(start - timedelta(minutes=1))
    assert all(spec.matches(start + timedelta(minutes=30 * step)) for step in range(118))
    assert not spec.matches(end)
    assert spec.next_change(june("Fri", 15)) == start.astimezone(UTC)
    assert spec.next_change(june("Sat", 12)) == end.astimezone(UTC)
    assert spec.next_change(start) == end.astimezone(UTC)


# --- DST ------------------------------------------------------------------------------


def test_dst_spring_forward_item_spanning_the_gap() -> None:
    spec = TimeSpec.parse("Sun-Sun 01:00-04:00 Europe/Berlin")
    assert not spec.matches(utc(2025, 3, 29, 23, 59))  # 00:59 CET
    assert spec.matches(utc(2025, 3, 30, 0, 0))  # 01:00 CET
    assert spec.matches(utc(2025, 3, 30, 1, 59))  # 03:59 CEST
    assert not spec.matches(utc(2025, 3, 30, 2, 0))  # 04:00 CEST
    assert spec.next_change(utc(2025, 3, 29, 12)) == utc(2025, 3, 30, 0, 0)
    assert spec.next_change(utc(2025, 3, 30, 0, 30)) == utc(2025, 3, 30, 2, 0)


def test_dst_fall_back_item_spanning_the_repeated_hour() -> None:
    spec = TimeSpec.parse("Sun-Sun 01:00-04:00 Europe/Berlin")
    assert spec.matches(utc(2025, 10, 25, 23, 0))  # 01:00 CEST
    assert spec.matches(berlin(2025, 10, 26, 2, 30, fold=0))
    assert spec.matches(berlin(2025, 10, 26, 2, 30, fold=1))
    assert spec.matches(utc(2025, 10, 26, 2, 59))  # 03:59 CET
    assert not spec.matches(utc(2025, 10, 26, 3, 0))  # 04:00 CET
    assert spec.next_change(utc(2025, 10, 25, 12)) == utc(2025, 10, 25, 23, 0)
    assert spec.next_change(utc(2025, 10, 25, 23, 0)) == utc(2025, 10, 26, 3, 0)


def test_skipped_wall_clock_hour_never_matches() -> None:
    spec = TimeSpec.parse("Sun-Sun 02:00-03:00 Europe/Berlin")
    assert not any(spec.matches(utc(2025, 3, 29, 22) + timedelta(minutes=step)) for step in range(6 * 60))
    assert spec.next_change(utc(2025, 3, 29, 12)) == berlin(2025, 4, 6, 2, 0).astimezone(UTC)


def test_repeated_wall_clock_hour_matches_twice() -> None:
    spec = TimeSpec.parse("Sun-Sun 02:00-03:00 Europe/Berlin")
    assert spec.next_change(utc(2025, 10, 25, 23, 30)) == utc(2025, 10, 26, 0, 0)
    assert spec.next_change(utc(2025, 10, 26, 0, 0)) == utc(2025, 10, 26, 2, 0)


def test_clock_turning_back_re_enters_an_item() -> None:
    spec = TimeSpec.parse("Sun-Sun 01:00-02:30 Europe/Berlin")
    assert not spec.matches(utc(2025, 10, 26, 0, 45))  # 02:45 CEST
    assert spec.next_change(utc(2025, 10, 26, 0, 45)) == utc(2025, 10, 26, 1, 0)  # back to 02:00 CET
    assert spec.next_change(utc(2025, 10, 26, 1, 0)) == utc(2025, 10, 26, 1, 30)


def test_start_inside_the_skipped_hour_begins_when_the_clock_jumps() -> None:
    spec = TimeSpec.parse("Sun-Sun 02:30-05:00 Europe/Berlin")
    assert spec.next_change(utc(2025, 3, 29, 23, 0)) == utc(2025, 3, 30, 1, 0)
    assert spec.matches(utc(2025, 3, 30, 1, 0))  # 03:00 CEST


def test_next_change_across_dst_uses_the_new_offset() -> None:
    spec = TimeSpec.parse("Mon-Fri 07:30-20:30 Europe/Berlin")
    assert spec.next_change(utc(2025, 3, 28, 20)) == utc(2025, 3, 31, 5, 30)  # CEST, +02:00
    assert spec.next_change(utc(2025, 10, 24, 20)) == utc(2025, 10, 27, 6, 30)  # CET, +01:00


# --- next_change ----------------------------------------------------------------------


def test_next_change_is_utc_and_strictly_after() -> None:
    spec = TimeSpec.parse("Mon-Fri 07:30-20:30 Europe/Berlin")
    at_edge = june("Mon", 7, 30)
    change = spec.next_change(at_edge)
    assert change == june("Mon", 20, 30)
    assert change is not None and change.tzinfo is UTC


def test_next_change_from_mid_minute() -> None:
    spec = TimeSpec.parse("Mon-Fri 07:30-20:30 Europe/Berlin")
    assert spec.next_change(june("Mon", 7, 29, 30)) == june("Mon", 7, 30)


@pytest.mark.parametrize(
    "text",
    [
        "always",
        "never",
        "2020-01-01T00:00:00+00:00-2020-01-02T00:00:00+00:00",
        "2020-01-01T00:00:00+00:00-2020-01-02T00:00:00+00:00, 2021-01-01T00:00:00Z-2021-01-02T00:00:00Z",
        "Sun-Sat 00:00-24:00 Europe/Berlin",
        "Mon-Sun 20:00-20:00 Europe/Berlin",
    ],
)
def test_next_change_none_when_nothing_ever_flips(text: str) -> None:
    assert TimeSpec.parse(text).next_change(utc(2025, 6, 1)) is None


def test_next_change_for_absolute_range() -> None:
    spec = TimeSpec.parse("2026-12-24T00:00:00+01:00-2027-01-02T00:00:00+01:00")
    assert spec.next_change(utc(2025, 6, 1)) == utc(2026, 12, 23, 23)
    end = utc(2027, 1, 1, 23)
    assert spec.next_change(utc(2026, 12, 25)) == end + timedelta(microseconds=1)
    assert spec.next_change(end) == end + timedelta(microseconds=1)
    assert spec.next_change(end + timedelta(seconds=1)) is None


def test_next_change_finds_distant_absolute_range_beside_constant_recurring_item() -> None:
    spec = TimeSpec.parse("Mon-Fri 10:00-10:00 UTC, 2030-01-01T00:00:00Z-2030-01-02T00:00:00Z")
    assert spec.next_change(utc(2025, 6, 1)) == utc(2030, 1, 1)


# --- holidays -------------------------------------------------------------------------


def test_single_holiday_matches_all_day_in_the_holiday_zone() -> None:
    spec = TimeSpec.parse("never", holidays=["2026-12-24"], holiday_zone="Europe/Berlin")
    assert not spec.matches(utc(2026, 12, 23, 22, 59))
    assert spec.matches(utc(2026, 12, 23, 23, 0))  # Berlin midnight
    assert spec.matches(utc(2026, 12, 24, 22, 59))
    assert not spec.matches(utc(2026, 12, 24, 23, 0))
    assert spec.next_change(utc(2026, 12, 1)) == utc(2026, 12, 23, 23)
    assert spec.next_change(utc(2026, 12, 24)) == utc(2026, 12, 24, 23)


def test_holiday_range_is_inclusive_and_zone_is_case_insensitive() -> None:
    spec = TimeSpec.parse("Mon-Fri 20:00-07:00 Europe/Berlin", ["2026-12-24..2027-01-01"], "europe/berlin")
    assert spec.matches(berlin(2026, 12, 24, 0, 0))
    assert spec.matches(berlin(2026, 12, 28, 12, 0))
    assert spec.matches(berlin(2027, 1, 1, 23, 59))
    assert not spec.matches(berlin(2027, 1, 4, 12, 0))
    assert spec.next_change(berlin(2026, 12, 30, 12)) == berlin(2027, 1, 2, 0).astimezone(UTC)


def test_holidays_default_to_utc() -> None:
    spec = TimeSpec.parse("never", holidays=["2026-05-01"])
    assert spec.matches(utc(2026, 5, 1, 0, 0))
    assert not spec.matches(utc(2026, 4, 30, 23, 59))


def test_holiday_parse_and_str() -> None:
    assert str(Holiday.parse(" 2026-12-24 .. 2027-01-01 ")) == "2026-12-24..2027-01-01"
    assert str(Holiday.parse("2026-12-24")) == "2026-12-24"


@pytest.mark.parametrize("bad", ["2026-12-32", "24.12.2026", "2027-01-01..2026-12-24", "2026-12-24..", ""])
def test_bad_holidays_are_rejected_quoting_them(bad: str) -> None:
    with pytest.raises(ValueError, match=f"invalid holiday '{bad}'"):
        TimeSpec.parse("never", holidays=[bad])


def test_holidays_must_be_a_list() -> None:
    with pytest.raises(TypeError, match="list"):
        TimeSpec.parse("never", holidays="2026-12-24")


def test_unknown_holiday_zone_is_rejected() -> None:
    with pytest.raises(ValueError, match="'Mars/Olympus'"):
        TimeSpec.parse("never", holidays=["2026-12-24"], holiday_zone="Mars/Olympus")


# --- inverted (uptime) ----------------------------------------------------------------


def test_inverted_spec_is_downtime_outside_uptime() -> None:
    uptime = TimeSpec.parse("Mon-Fri 07:30-20:30 Europe/Berlin").inverted()
    assert not uptime.matches(june("Wed", 12))
    assert uptime.matches(june("Wed", 21))
    assert uptime.matches(june("Sat", 12))
    assert uptime.next_change(june("Wed", 12)) == june("Wed", 20, 30)
    assert uptime.inverted() == TimeSpec.parse("Mon-Fri 07:30-20:30 Europe/Berlin")
    assert TimeSpec.parse("Mon-Fri 07:30-20:30 Europe/Berlin", invert=True) == uptime


def test_holidays_stay_downtime_when_inverted() -> None:
    uptime = TimeSpec.parse("Mon-Fri 07:30-20:30 Europe/Berlin", ["2025-06-04"], "Europe/Berlin").inverted()
    assert uptime.matches(june("Wed", 12))
    assert not uptime.matches(june("Thu", 12))
    assert uptime.next_change(june("Wed", 12)) == june("Thu", 7, 30)


def test_inverted_always_and_never() -> None:
    assert not TimeSpec.parse("always").inverted().matches(utc(2025, 1, 1))
    assert TimeSpec.parse("never").inverted().matches(utc(2025, 1, 1))
    assert TimeSpec.parse("always").inverted().next_change(utc(2025, 1, 1)) is None


# --- validation -----------------------------------------------------------------------

BERLIN_ITEM = "Mon-Fri 07:30-20:30 Europe/Berlin"


@pytest.mark.parametrize(
    ("spec", "bad_item", "reason"),
    [
        ("Mon-Fri 25:00-07:00 Europe/Berlin", "Mon-Fri 25:00-07:00 Europe/Berlin", "hour 25 out of range 00-24"),
        ("Mon-Fri 07:60-20:30 Europe/Berlin", "Mon-Fri 07:60-20:30 Europe/Berlin", "minute 60 out of range 00-59"),
        ("Mon-Fri 24:00-07:00 Europe/Berlin", "Mon-Fri 24:00-07:00 Europe/Berlin", "start time 24:00"),
        ("Mon-Fri 07:00-24:30 Europe/Berlin", "Mon-Fri 07:00-24:30 Europe/Berlin", "past 24:00"),
        ("Mon-Fri 7:30-20:30 Europe/Berlin", "Mon-Fri 7:30-20:30 Europe/Berlin", "not HH:MM"),
        ("Mon-Fry 07:30-20:30 Europe/Berlin", "Mon-Fry 07:30-20:30 Europe/Berlin", "unknown day 'Fry'"),
        ("Monday-Friday 07:30-20:30 UTC", "Monday-Friday 07:30-20:30 UTC", "unknown day 'Monday'"),
        ("Mon-Fri 07:30-20:30 Europe/Berln", "Mon-Fri 07:30-20:30 Europe/Berln", "unknown timezone"),
        ("Mon-Fri 07:30-20:30", "Mon-Fri 07:30-20:30", "expected"),
        ("Sun 02:00-03:00 Europe/Berlin", "Sun 02:00-03:00 Europe/Berlin", "'Sun-Sun'"),
        (f"{BERLIN_ITEM}, sometimes", "sometimes", "expected"),
        (f"{BERLIN_ITEM},", "", "empty item"),
        ("always, Mon-Fri 07:30-20:30 UTC", "always", "expected"),
        (
            "2026-12-24T00:00:00-2027-01-02T00:00:00+01:00",
            "2026-12-24T00:00:00-2027-01-02T00:00:00+01:00",
            "no UTC offset",
        ),
        (
            f"{BERLIN_ITEM}, 2026-12-24T00:00:00+01:00-2027-01-02T00:00:00",
            "2026-12-24T00:00:00+01:00-2027-01-02T00:00:00",
            "no UTC offset",
        ),
        (
            "2026-13-24T00:00:00+01:00-2027-01-02T00:00:00+01:00",
            "2026-13-24T00:00:00+01:00-2027-01-02T00:00:00+01:00",
            "invalid datetime '2026-13-24T00:00:00+01:00'",
        ),
        (
            "2026-12-24T00:00+01:00-2027-01-02T00:00:00+01:00",
            "2026-12-24T00:00+01:00-2027-01-02T00:00:00+01:00",
            "malformed datetime",
        ),
        (
            "2026-12-24 00:00:00+01:00-2027-01-02T00:00:00+01:00",
            "2026-12-24 00:00:00+01:00-2027-01-02T00:00:00+01:00",
            "malformed absolute range",
        ),
        (
            "2027-01-02T00:00:00+01:00-2026-12-24T00:00:00+01:00",
            "2027-01-02T00:00:00+01:00-2026-12-24T00:00:00+01:00",
            "ends before it starts",
        ),
    ],
)
def test_invalid_items_are_rejected_quoting_them(spec: str, bad_item: str, reason: str) -> None:
    with pytest.raises(ValueError) as raised:
        TimeSpec.parse(spec)
    message = str(raised.value)
    assert message.startswith(f"invalid time spec item '{bad_item}': ")
    assert reason in message


@pytest.mark.parametrize("spec", ["", "   "])
def test_empty_spec_is_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        TimeSpec.parse(spec)


def test_error_message_matches_the_documented_example() -> None:
    with pytest.raises(ValueError) as raised:
        TimeSpec.parse("Mon-Fri 25:00-07:00 Europe/Berlin")
    assert str(raised.value) == (
        "invalid time spec item 'Mon-Fri 25:00-07:00 Europe/Berlin': hour 25 out of range 00-24"
    )


# --- next_change against a brute-force minute scan ------------------------------------

SPECS = [
    "Mon-Fri 07:30-20:30 Europe/Berlin",
    WEEKEND_WINDOW,
    "Mon-Fri 20:00-00:00 Europe/Berlin",
    "Sun-Sun 01:00-02:30 Europe/Berlin, Sat-Sat 02:00-03:00 America/New_York",
    "Sun-Sun 02:00-03:00 Europe/Berlin",
    "Sun-Fri 22:00-06:00 Asia/Jerusalem, Sat-Mon 00:00-04:30 Australia/Lord_Howe",
    "Tue-Thu 09:15-09:16 Asia/Kolkata, Sun-Sun 00:00-24:00 America/Santiago",
    "2025-03-30T00:30:00Z-2025-03-30T01:30:00+00:00, Wed-Wed 00:00-24:00 UTC",
]
HOLIDAYS = ["2025-03-31", "2025-10-24..2025-10-27", "2025-12-24..2026-01-01"]


def every_spec() -> list[TimeSpec]:
    plain = [TimeSpec.parse(text) for text in SPECS]
    with_holidays = [TimeSpec.parse(text, HOLIDAYS, "Europe/Berlin") for text in SPECS]
    return plain + with_holidays + [spec.inverted() for spec in plain + with_holidays]


def brute_force_next_change(spec: TimeSpec, after: datetime, limit: timedelta) -> datetime | None:
    """Check every minute, and the microsecond after it (absolute ranges include their end)."""
    current = spec.matches(after)
    minute = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute <= after + limit:
        for probe in (minute, minute + timedelta(microseconds=1)):
            if spec.matches(probe) != current:
                return probe
        minute += timedelta(minutes=1)
    return None


@pytest.mark.parametrize(
    "after",
    [
        utc(2025, 3, 28, 21, 17, 5),
        utc(2025, 10, 23, 23, 59, 59),
        utc(2025, 4, 3, 12, 0),
        utc(2025, 4, 4, 20, 0),  # Santiago and Lord Howe leave DST on 2025-04-06
        utc(2025, 9, 4, 20, 0),  # Santiago enters DST at midnight on 2025-09-07
        utc(2025, 10, 3, 20, 0),  # Lord Howe moves its clock by 30 minutes on 2025-10-05
        utc(2025, 3, 30, 1, 0),  # inside the absolute range, which ends at 01:30:00 inclusive
    ],
)
def test_next_change_agrees_with_a_minute_by_minute_scan(after: datetime) -> None:
    limit = timedelta(days=2)
    for spec in every_spec():
        change = spec.next_change(after)
        expected = brute_force_next_change(spec, after, limit)
        if expected is None:
            assert change is None or change > after + limit, repr(spec)
        else:
            assert change == expected, repr(spec)


@settings(max_examples=100, deadline=None)
@given(
    spec=st.sampled_from(every_spec()),
    after=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 2, 1), timezones=st.just(UTC)),
)
def test_next_change_is_the_first_flip(spec: TimeSpec, after: datetime) -> None:
    current = spec.matches(after)
    change = spec.next_change(after)
    if change is None:
        samples = [after + timedelta(minutes=37 * step) for step in range(1, 400)]
        assert all(spec.matches(sample) == current for sample in samples)
        return
    assert change > after
    assert change.utcoffset() == timedelta(0)
    assert spec.matches(change) != current
    span = change - after
    samples = [after + span * step / 64 for step in range(1, 64)]
    samples += [change - timedelta(microseconds=1), max(after, change - timedelta(minutes=1))]
    assert all(spec.matches(sample) == current for sample in samples)


# Pacific/Auckland: DST ends Sun 2025-04-06 03:00 NZDT -> 02:00 NZST, starts Sun 2025-09-28 02:00 NZST -> 03:00 NZDT.
def _utc_at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)  # type: ignore[misc]


def test_auckland_weekend_across_dst_start_is_47_hours() -> None:
    weekend = TimeSpec.parse("Sat-Sun 00:00-24:00 Pacific/Auckland")
    assert weekend.next_change(_utc_at(2025, 9, 26, 10)) == _utc_at(2025, 9, 26, 12)  # Sat 00:00 NZST
    assert weekend.next_change(_utc_at(2025, 9, 27, 20)) == _utc_at(2025, 9, 28, 11)  # Mon 00:00 NZDT
    assert weekend.matches(_utc_at(2025, 9, 28, 10, 59)) and not weekend.matches(_utc_at(2025, 9, 28, 11))


def test_auckland_repeated_hour_matches_twice_in_a_row() -> None:
    repeated = TimeSpec.parse("Sun-Sun 02:00-03:00 Pacific/Auckland")
    assert repeated.next_change(_utc_at(2025, 4, 5, 12)) == _utc_at(2025, 4, 5, 13)
    assert repeated.matches(_utc_at(2025, 4, 5, 13, 30)) and repeated.matches(_utc_at(2025, 4, 5, 14, 30))
    assert repeated.next_change(_utc_at(2025, 4, 5, 13, 30)) == _utc_at(2025, 4, 5, 15)


def test_auckland_overnight_item_ends_at_local_midnight_before_an_unlisted_day() -> None:
    nights = TimeSpec.parse("Mon-Fri 20:00-07:00 Pacific/Auckland")
    friday_night = _utc_at(2025, 4, 4, 7, 30)  # Fri 20:30 NZDT
    assert nights.matches(friday_night)
    assert nights.next_change(friday_night) == _utc_at(2025, 4, 4, 11)  # Sat 00:00 NZDT: Saturday is not listed
    assert nights.next_change(_utc_at(2025, 4, 5, 12)) == _utc_at(2025, 4, 6, 12)  # Mon 00:00 NZST
