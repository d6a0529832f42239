"""Time specs, durations and retention buckets at the ends of datetime's range (years 1 and 9999).

Near either end a local wall time may be a date no datetime holds (10000-01-01 in Berlin is
9999-12-31T23:00Z); these used to raise OverflowError from deep inside the policies.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies._calendar_ends import EARLIEST, LATEST
from policies.durations import Duration
from policies.model import format_instant
from policies.retention import KeepRules, apply_rules
from policies.windows import TimeSpec

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")

SPECS = [
    TimeSpec.parse("Mon-Fri 20:00-07:00 Europe/Berlin"),
    TimeSpec.parse("Sat-Mon 00:00-24:00 Pacific/Kiritimati, Tue-Tue 22:00-02:00 Pacific/Pago_Pago"),
    TimeSpec.parse("Sun-Sun 02:00-03:00 Europe/Berlin, Mon-Sun 23:59-00:01 America/St_Johns"),
    TimeSpec.parse("0001-01-01T00:00:00+01:00-0001-01-02T00:00:00+14:00, 9999-12-31T00:00:00-10:00-9999-12-31T23:59:59-12:00"),
    TimeSpec.parse("Mon-Fri 09:00-17:00 Asia/Kolkata", ["0001-01-01", "9999-12-30..9999-12-31"], "Pacific/Kiritimati", invert=True),
    TimeSpec.parse("never", ["0001-01-01..0001-01-02", "9999-12-31"], "America/New_York"),
    TimeSpec.parse("always"),
]
ZONES = st.one_of(
    st.timezones(),
    st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))),
)
# Anywhere in the range, and often within days of either end, where the trouble was.
ANY_AWARE_INSTANT = st.one_of(
    st.datetimes(timezones=ZONES),
    st.datetimes(max_value=datetime(1, 1, 3), timezones=ZONES),
    st.datetimes(min_value=datetime(9999, 12, 29), timezones=ZONES),
)


def has_utc_equivalent(at: datetime) -> bool:
    try:
        at.astimezone(UTC)
    except OverflowError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(spec=st.sampled_from(SPECS), at=ANY_AWARE_INSTANT)
def test_matches_and_next_change_answer_for_any_aware_instant(spec: TimeSpec, at: datetime) -> None:
    if not has_utc_equivalent(at):
        # The one documented refusal: an instant with no UTC equivalent (0001-01-01T00:00:00+01:00).
        for call in (spec.matches, spec.next_change):
            with pytest.raises(ValueError, match="outside datetime's range in UTC"):
                call(at)
        return
    current = spec.matches(at)
    change = spec.next_change(at)
    if change is None:
        return
    assert change > at and change.utcoffset() == timedelta(0)
    assert spec.matches(change) != current
    start = at.astimezone(UTC)  # the sampling below is in UTC: a local wall may pass year 9999 first
    samples = [start + (change - start) * step / 16 for step in range(1, 16)] + [change - timedelta(microseconds=1)]
    assert all(spec.matches(sample) == current for sample in samples if sample > at)


def test_a_window_edge_at_local_midnight_of_year_10000_is_found() -> None:
    nights = TimeSpec.parse("Mon-Fri 20:00-07:00 Europe/Berlin")  # 9999-12-31 is a Friday
    friday_night = datetime(9999, 12, 31, 22, tzinfo=UTC)  # Fri 23:00 in Berlin
    assert nights.matches(friday_night)
    assert nights.next_change(friday_night) == datetime(9999, 12, 31, 23, tzinfo=UTC)  # Sat 00:00 in Berlin
    saturday = datetime(9999, 12, 31, 23, tzinfo=UTC)
    assert not nights.matches(saturday)
    assert nights.next_change(saturday) is None  # Monday 20:00 is in year 10000
    assert nights.next_change(LATEST) is None


def test_year_one_is_read_in_local_mean_time() -> None:
    nights = TimeSpec.parse("Mon-Fri 20:00-07:00 America/New_York")  # New York LMT is -4:56:02
    new_years_day = datetime(1, 1, 1, tzinfo=UTC)  # still Sunday 0000-12-31 19:03:58 in New York
    assert not nights.matches(new_years_day)
    assert nights.next_change(new_years_day) == datetime(1, 1, 1, 4, 56, 2, tzinfo=UTC)  # Monday 00:00 there
    assert nights.matches(EARLIEST + timedelta(hours=5))


def test_a_holiday_on_the_last_day_ends_at_its_local_midnight() -> None:
    holiday = TimeSpec.parse("never", ["9999-12-31"], "Europe/Berlin")
    assert holiday.next_change(datetime(9999, 12, 30, 12, tzinfo=UTC)) == datetime(9999, 12, 30, 23, tzinfo=UTC)
    assert holiday.matches(datetime(9999, 12, 31, 22, 59, tzinfo=UTC))
    assert holiday.next_change(datetime(9999, 12, 31, 22, 59, tzinfo=UTC)) == datetime(9999, 12, 31, 23, tzinfo=UTC)
    assert not holiday.matches(LATEST)


@pytest.mark.parametrize(("duration", "at", "expected"), [
    ("1h", EARLIEST, EARLIEST),
    ("9000y", datetime(2026, 1, 1, tzinfo=UTC), EARLIEST),
    ("99999999999999999999s", datetime(2026, 1, 1, tzinfo=UTC), EARLIEST),
    ("1d", LATEST, LATEST - timedelta(days=1)),
    ("1mo", datetime(9999, 12, 31, 23, 30, tzinfo=UTC), datetime(9999, 11, 30, 23, 30, tzinfo=UTC)),  # 10000-01-01 in Berlin
])
def test_a_span_before_an_instant_stops_at_year_one(duration: str, at: datetime, expected: datetime) -> None:
    assert Duration.parse(duration).before(at, BERLIN) == expected


@pytest.mark.parametrize(("duration", "at", "expected"), [
    ("1h", LATEST, LATEST),
    ("9000y", datetime(2026, 1, 1, tzinfo=UTC), LATEST),
    ("1d", datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 2, tzinfo=UTC)),  # 0000-12-31 in New York
])
def test_a_span_after_an_instant_stops_at_year_9999(duration: str, at: datetime, expected: datetime) -> None:
    assert Duration.parse(duration).after(at, ZoneInfo("America/New_York")) == expected


def test_buckets_of_a_version_made_at_local_new_year_10000_are_named_in_that_year() -> None:
    created_at = [datetime(9999, 12, 31, 23, 30, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC)]  # Tokyo: 10000-01-01, 9999-12-30
    reasons = apply_rules(created_at, KeepRules(daily=2, weekly=1, monthly=1, yearly=2), TOKYO, LATEST)
    assert reasons[0] == ("daily 10000-01-01", "weekly 9999-W52", "monthly 10000-01", "yearly 10000")
    assert reasons[1] == ("daily 9999-12-30", "yearly 9999")


def test_instants_print_with_four_digit_years() -> None:
    assert format_instant(EARLIEST) == "0001-01-01T00:00:00Z"
    assert format_instant(LATEST) == "9999-12-31T23:59:59Z"


def test_a_month_of_year_one_is_one_bucket_on_either_side_of_the_first_two_days() -> None:
    # The first two days are read 400 years inward; the bucket name must not depend on that.
    created_at = [datetime(1, 1, 20, tzinfo=UTC), datetime(1, 1, 1, 12, tzinfo=UTC)]
    assert apply_rules(created_at, KeepRules(monthly=2), UTC, LATEST) == [("monthly 0001-01",), ()]
