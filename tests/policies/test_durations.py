from __future__ import annotations

import time
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from policies.durations import Duration, Size, format_bytes, go_add_date

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("text", "years", "months", "days", "seconds"),
    [
        ("90s", 0, 0, 0, 90),
        ("15m", 0, 0, 0, 900),
        ("6h", 0, 0, 0, 21600),
        ("7d", 0, 0, 7, 0),
        ("2w", 0, 0, 14, 0),
        ("3mo", 0, 3, 0, 0),
        ("1y", 1, 0, 0, 0),
        ("1d12h", 0, 0, 1, 43200),
        ("1y2mo3w4d5h6m7s", 1, 2, 25, 5 * 3600 + 6 * 60 + 7),
        (" 2D ", 0, 0, 2, 0),
    ],
)
def test_duration_parses_every_unit(text: str, years: int, months: int, days: int, seconds: int) -> None:
    duration = Duration.parse(text)
    assert (duration.years, duration.months, duration.days, duration.seconds) == (years, months, days, seconds)


@pytest.mark.parametrize("text", ["", "5", "d", "1x", "1h1d", "1d1d", "-1d", "1.5h", "1d 12h", "h1"])
def test_duration_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        Duration.parse(text)


def test_m_means_minutes_and_mo_means_months() -> None:
    assert Duration.parse("3m").seconds == 180
    assert Duration.parse("3mo").months == 3
    with pytest.raises(ValueError, match="'M' is ambiguous"):
        Duration.parse("3M")


@pytest.mark.parametrize(
    ("start", "months", "years", "expected"),
    [
        (datetime(2024, 3, 31, 12, tzinfo=UTC), -1, 0, datetime(2024, 3, 2, 12, tzinfo=UTC)),
        (datetime(2024, 2, 29, 12, tzinfo=UTC), 0, -1, datetime(2023, 3, 1, 12, tzinfo=UTC)),
        (datetime(2025, 1, 31, 0, tzinfo=UTC), 1, 0, datetime(2025, 3, 3, 0, tzinfo=UTC)),
        (datetime(2025, 12, 15, 0, tzinfo=UTC), 1, 0, datetime(2026, 1, 15, 0, tzinfo=UTC)),
    ],
)
def test_go_add_date_normalises_like_go(start: datetime, months: int, years: int, expected: datetime) -> None:
    assert go_add_date(start, years, months, 0, UTC) == expected


def test_calendar_day_across_spring_forward_is_23_hours() -> None:
    # 2025-03-31 12:00 CEST minus one calendar day is 2025-03-30 12:00 CEST: 24 h of wall clock, 24 h elapsed;
    # across the change itself (03-31 02:30 -> 03-30 02:30, which does not exist) Go moves to 03:30 CEST.
    noon = datetime(2025, 3, 31, 10, tzinfo=UTC)
    assert Duration.parse("1d").before(noon, BERLIN) == datetime(2025, 3, 30, 10, tzinfo=UTC)
    early = datetime(2025, 3, 31, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert Duration.parse("1d").before(early, BERLIN) == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)


def test_ambiguous_wall_time_resolves_like_go() -> None:
    # 2025-10-27 02:30 CET minus one day is 2025-10-26 02:30, which happens twice; Go picks the CET one.
    instant = datetime(2025, 10, 27, 1, 30, tzinfo=UTC)
    assert Duration.parse("1d").before(instant, BERLIN) == datetime(2025, 10, 26, 1, 30, tzinfo=UTC)


def test_hours_are_exact_elapsed_time_across_dst() -> None:
    instant = datetime(2025, 3, 30, 12, tzinfo=UTC)
    assert Duration.parse("24h").before(instant, BERLIN) == datetime(2025, 3, 29, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500MB", 500_000_000), ("200GiB", 200 * 1024**3), ("1KB", 1000), ("1KiB", 1024), ("10B", 10), ("1.5GB", 1_500_000_000)],
)
def test_size_parses_decimal_and_binary_units(text: str, expected: int) -> None:
    assert Size.parse(text).bytes == expected


def test_size_percentage_resolves_against_the_filesystem() -> None:
    size = Size.parse("85%")
    assert size.bytes is None
    assert size.resolve(1000) == 850


@pytest.mark.parametrize("text", ["", "MB", "5XB", "101%", "-1%", "12 parsecs"])
def test_size_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError):
        Size.parse(text)


def test_format_bytes_uses_binary_units() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"


@pytest.mark.parametrize("value", [0.85, 85, 0, True, date(2026, 1, 1), ["85%"], {"percent": 85}, None])
def test_size_refuses_anything_but_text_with_a_unit(value: object) -> None:
    with pytest.raises(ValueError, match="bare number|must be text"):
        Size.parse(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["85", "0.85", "1.5B", "1e3MB", "nan%", "inf%", "1e2%", "\u0661\u0662MB"])
def test_size_refuses_numbers_without_a_unit_fractions_of_bytes_and_exotic_digits(text: str) -> None:
    with pytest.raises(ValueError):
        Size.parse(text)


def test_size_counts_bytes_exactly_however_long_the_number() -> None:
    assert Size.parse("12345678901234567890B").bytes == 12345678901234567890
    assert Size.parse("1.1GB").bytes == 1_100_000_000 and Size.parse("0.5KiB").bytes == 512


@pytest.mark.parametrize("value", [3600, 1.5, True, date(2026, 1, 1), ["1h"], None])
def test_duration_refuses_anything_but_text(value: object) -> None:
    with pytest.raises(ValueError, match="a duration must be text"):
        Duration.parse(value)  # type: ignore[arg-type]


def test_duration_refuses_numbers_too_long_to_count_in_seconds() -> None:
    Duration.parse("9" * 30 + "y").approx_seconds()  # far past datetime's range, still a finite float
    with pytest.raises(ValueError, match="more than 30 digits"):
        Duration.parse("9" * 400 + "y")  # approx_seconds overflowed a float: OverflowError in the config validators


def test_duration_refuses_non_ascii_digits() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        Duration.parse("\u0661d")


def test_a_long_malformed_duration_is_refused_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match="invalid duration"):
        Duration.parse("9" * 100_000 + "q")
    assert time.monotonic() - started < 2  # rescanning the digits from every offset took minutes
