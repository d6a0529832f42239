"""The items of a time spec (see ``policies.windows``): parsing, matching, edges."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from policies._calendar_ends import instants_at_wall, local_day, local_wall, shift_or_none, utc_or_none, weekday_of

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_END_OF_DAY = 24 * 60
_ONE_MICROSECOND = timedelta(microseconds=1)
_RECURRING = re.compile(r"([A-Za-z]+)-([A-Za-z]+)\s+([^\s-]+)-([^\s-]+)\s+(\S+)")
_STAMP = r"\d{4}-\d{2}-\d{2}T[\d:]+(?:[+-]\d{2}:\d{2}|Z)?"
_ABSOLUTE = re.compile(rf"({_STAMP})-({_STAMP})")
_STRICT_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}([+-]\d{2}:\d{2}|Z)?")
_CLOCK = re.compile(r"(\d{2}):(\d{2})")
_EXPECTED = (
    "expected 'DDD-DDD HH:MM-HH:MM Zone' (e.g. 'Mon-Fri 07:30-20:30 Europe/Berlin') "
    "or 'ISO-ISO' (e.g. '2026-12-24T00:00:00+01:00-2027-01-02T00:00:00+01:00')"
)


class _ItemError(ValueError):
    """A reason an item is invalid; ``parse_item`` adds the item text."""


@dataclass(frozen=True)
class RecurringItem:
    """``DDD-DDD HH:MM-HH:MM Zone``: minutes of the day on some weekdays, in a zone."""

    text: str
    days: frozenset[int]  # Monday is 0, as in datetime.weekday()
    start: int  # minutes after local midnight
    end: int  # exclusive; 1440 is 24:00
    zone: ZoneInfo

    def matches(self, at: datetime) -> bool:
        """Given an aware instant, return whether its local weekday and minute are covered."""
        local, _ = local_wall(at, self.zone)  # 400 years inward near year 1 or 9999: same weekday and minute
        if local.weekday() not in self.days:
            return False
        minute = local.hour * 60 + local.minute
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute < self.end or minute >= self.start

    def edges(self, low: datetime, high: datetime) -> Iterator[datetime]:
        """Given UTC bounds, yield the instants in ``(low, high]`` where this item may flip."""
        if self.start == self.end:
            return
        minutes = {self.start, self.end} | ({0, _END_OF_DAY} if self.start > self.end else set())
        # Day numbers, not dates: near year 1 or 9999 the local day may lie just past datetime's range.
        for day in range(local_day(low, self.zone) - 1, local_day(high, self.zone) + 2):
            if weekday_of(day) not in self.days:
                continue
            for minute in minutes:
                for edge in instants_at_wall(day, timedelta(minutes=minute), self._instants):
                    if low < edge <= high:
                        yield edge

    def _instants(self, wall: datetime) -> list[datetime]:
        return wall_to_instants(wall, self.zone)


@dataclass(frozen=True)
class AbsoluteItem:
    """``ISO-ISO``: every instant from start to end, both included."""

    text: str
    start: datetime
    end: datetime

    def matches(self, at: datetime) -> bool:
        """Given an aware instant, return whether it lies within the range."""
        return self.start <= at <= self.end

    def edges(self) -> tuple[datetime, ...]:
        """Return the instants (UTC) at which this item starts and stops matching; an edge past
        either end of datetime's range (``0001-01-01T00:00:00+01:00``) is left out."""
        end = utc_or_none(self.end)
        after_end = shift_or_none(end, _ONE_MICROSECOND) if end is not None else None
        return tuple(edge for edge in (utc_or_none(self.start), after_end) if edge is not None)


def parse_item(text: str) -> RecurringItem | AbsoluteItem:
    """Given one comma-separated item, return it parsed. Raise ValueError quoting it if invalid."""
    item = text.strip()
    try:
        if not item:
            raise _ItemError("empty item (stray comma?)")
        if re.match(r"\d{4}-", item):
            return _parse_absolute(item)
        match = _RECURRING.fullmatch(item)
        if match is None:
            raise _ItemError(_hint(item))
        return _parse_recurring(item, match)
    except _ItemError as error:
        raise ValueError(f"invalid time spec item {item!r}: {error}") from None


def resolve_zone(name: str) -> ZoneInfo | None:
    """Given an IANA zone name in any letter case, return the zone, or None if unknown."""
    canonical = _zone_names().get(name.strip().lower())
    return None if canonical is None else ZoneInfo(canonical)


def wall_to_instants(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """Given a naive local wall time, return the UTC instants where the zone's clock reaches it.

    A repeated wall time gives both instants plus the moment the clock turns back;
    a skipped one gives the moment the clock jumps over it. Near year 1 or 9999 call it
    through ``_calendar_ends.instants_at_wall``, which keeps the wall inside datetime's range.
    """
    candidates = {wall.replace(tzinfo=zone, fold=fold).astimezone(timezone.utc) for fold in (0, 1)}
    exact = [c for c in candidates if c.astimezone(zone).replace(tzinfo=None) == wall]
    if len(candidates) == 1 and exact:
        return exact
    return [*exact, _transition(min(candidates), max(candidates), zone)]


def _transition(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """Given UTC instants with different offsets in ``zone``, return the first in ``(low, high]``
    with the offset of ``high``, to the second (tzdata transitions fall on whole seconds)."""
    before = low.astimezone(zone).utcoffset()
    lo, hi = 0, int((high - low).total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (low + timedelta(seconds=mid)).astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return low + timedelta(seconds=hi)


def _parse_recurring(item: str, match: re.Match[str]) -> RecurringItem:
    first_day, last_day = _day(match.group(1)), _day(match.group(2))
    start, end = _clock(match.group(3)), _clock(match.group(4))
    if start == _END_OF_DAY:
        raise _ItemError("start time 24:00 is not allowed (24:00 can only end a range)")
    zone = resolve_zone(match.group(5))
    if zone is None:
        raise _ItemError(f"unknown timezone {match.group(5)!r}")
    days = frozenset((first_day + step) % 7 for step in range((last_day - first_day) % 7 + 1))
    return RecurringItem(item, days, start, end, zone)


def _parse_absolute(item: str) -> AbsoluteItem:
    match = _ABSOLUTE.fullmatch(item)
    if match is None:
        raise _ItemError(f"malformed absolute range; {_EXPECTED}")
    start, end = _stamp(match.group(1)), _stamp(match.group(2))
    if end < start:
        raise _ItemError("absolute range ends before it starts")
    return AbsoluteItem(item, start, end)


def _stamp(text: str) -> datetime:
    strict = _STRICT_STAMP.fullmatch(text)
    if strict is None:
        raise _ItemError(f"malformed datetime {text!r}; expected YYYY-MM-DDTHH:MM:SS+HH:MM")
    if strict.group(1) is None:
        raise _ItemError(f"datetime {text!r} has no UTC offset (add e.g. +01:00 or Z)")
    try:
        return datetime.fromisoformat(text)
    except ValueError as error:
        raise _ItemError(f"invalid datetime {text!r}: {error}") from None


def _day(name: str) -> int:
    try:
        return _DAYS.index(name.lower())
    except ValueError:
        raise _ItemError(f"unknown day {name!r}; expected one of Mon, Tue, Wed, Thu, Fri, Sat, Sun") from None


def _clock(text: str) -> int:
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise _ItemError(f"time {text!r} is not HH:MM")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 24:
        raise _ItemError(f"hour {hour:02d} out of range 00-24")
    if minute > 59:
        raise _ItemError(f"minute {minute:02d} out of range 00-59")
    if hour == 24 and minute:
        raise _ItemError(f"time {text!r} is past 24:00")
    return hour * 60 + minute


def _hint(item: str) -> str:
    first = item.split(maxsplit=1)[0] if item.split() else ""
    if first.lower() in _DAYS:
        return f"days must be a range; write '{first}-{first}' for a single day"
    return _EXPECTED


@cache
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}
