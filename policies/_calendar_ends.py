"""Calendar arithmetic at the ends of datetime's range (year 1 and year 9999).

Within a day of either end an instant's local wall time may be a date no datetime can
hold (0000-12-31, 10000-01-01), and a wall time there may still name an instant inside
the range; an instant computed from a long span may fall outside it. The Gregorian
calendar repeats every 400 years (146097 days, a whole number of weeks), and so does a
zone's offset outside the years its tzdata lists transitions for (local mean time before
the first, the POSIX rule after the last; no zone lists any near year 1 or 9999). So a
wall time near an end is computed one 400-year cycle inward and moved back, and an
instant past an end is clamped to it. Imports nothing of ours.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone, tzinfo

EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
LATEST = datetime.max.replace(tzinfo=timezone.utc)
CYCLE_DAYS = 146_097
CYCLE_YEARS = 400
_CYCLE = timedelta(days=CYCLE_DAYS)
_LAST_DAY = date.max.toordinal()
_NEAR_END = timedelta(days=2)  # more than any UTC offset, so a local date can be off by one day at most
_SPAN_SECONDS = int((LATEST - EARLIEST).total_seconds()) + 1


def local_wall(at: datetime, zone: tzinfo) -> tuple[datetime, int]:
    """Given an aware instant within datetime's range, return its naive wall time in ``zone``
    and the number of 400-year cycles to add to that wall's year to get the true one (0 except
    within two days of either end of the range, where the wall is read one cycle inward).
    """
    cycles = -1 if at - EARLIEST < _NEAR_END else 1 if LATEST - at < _NEAR_END else 0
    return (at - cycles * _CYCLE).astimezone(zone).replace(tzinfo=None), cycles


def local_day(at: datetime, zone: tzinfo) -> int:
    """Given an aware instant within datetime's range, return its local day number in ``zone``
    (``date.toordinal``; 0 or 3652060 for a local date just past either end)."""
    wall, cycles = local_wall(at, zone)
    return wall.toordinal() + cycles * CYCLE_DAYS


def utc_or_none(at: datetime) -> datetime | None:
    """Given an aware datetime, return it in UTC, or None when that lies outside datetime's range."""
    try:
        return at.astimezone(timezone.utc)
    except OverflowError:
        return None


def day_number(year: int, month: int, day: int) -> int:
    """Given any year (also before 1 or after 9999), a month and a day of it, return the
    proleptic Gregorian day number (``date.toordinal``: 0001-01-01 is 1)."""
    cycles, year_in_cycle = divmod(year - 1, CYCLE_YEARS)
    return date(year_in_cycle + 1, month, day).toordinal() + cycles * CYCLE_DAYS


def weekday_of(day: int) -> int:
    """Given a day number (also past either end), return its weekday, Monday 0 as in ``date.weekday``."""
    return (day - 1) % 7


def instants_at_wall(day: int, time_of_day: timedelta, convert: Callable[[datetime], list[datetime]]) -> list[datetime]:
    """Given a local day number (any int), a time of day (0 up to and including 24 h) and ``convert``
    (naive wall time → the UTC instants it names in some zone), return those instants that lie
    within datetime's range.
    """
    cycles = 1 if day <= 366 else -1 if day > _LAST_DAY - 366 else 0
    framed = day + cycles * CYCLE_DAYS
    if not 1 <= framed <= _LAST_DAY - 1:
        return []  # more than a cycle past an end: nothing there is an instant of the range
    instants = []
    for instant in convert(datetime.fromordinal(framed) + time_of_day):
        moved = shift_or_none(instant, -cycles * _CYCLE)
        if moved is not None:
            instants.append(moved)
    return instants


def instant_at_wall(day: int, time_of_day: timedelta, convert: Callable[[datetime], datetime]) -> datetime:
    """Like ``instants_at_wall`` for a ``convert`` that names one instant; a wall time past an end of
    the range gives that end (EARLIEST or LATEST)."""
    found = instants_at_wall(day, time_of_day, lambda wall: [convert(wall)])
    if found:
        return found[0]
    return EARLIEST if day < _LAST_DAY // 2 else LATEST


def shift_or_none(at: datetime, delta: timedelta) -> datetime | None:
    """Given an aware instant and a span, return ``at + delta``, or None when that lies outside datetime's range."""
    try:
        return at + delta
    except OverflowError:
        return None


def shift_clamped(at: datetime, seconds: int) -> datetime:
    """Given an aware instant and a number of seconds (any size, either sign), return the instant that
    many seconds later, or the end of datetime's range it would pass (EARLIEST or LATEST)."""
    moved = shift_or_none(at, timedelta(seconds=max(-_SPAN_SECONDS, min(seconds, _SPAN_SECONDS))))
    if moved is None:
        return EARLIEST if seconds < 0 else LATEST
    return moved
