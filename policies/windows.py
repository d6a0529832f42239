"""Off-hours time specs in the kube-downscaler grammar, plus holidays and inversion.

A spec is ``always``, ``never`` or comma-separated items::

    Mon-Fri 07:30-20:30 Europe/Berlin                              (recurring)
    2026-12-24T00:00:00+01:00-2027-01-02T00:00:00+01:00            (absolute)

Recurring items are read in their own IANA zone: the weekday comes from the
local date and the time from the local wall-clock minute (seconds ignored).
Start is inclusive, end exclusive, ``24:00`` is the end of the day. Day ranges
wrap (``Sat-Mon``). Day and zone names are case-insensitive. An item whose
start is after its end (``20:00-07:00``, ``20:00-00:00``) covers, on each
listed day, 00:00 up to the end and the start up to 24:00, as in kube-
downscaler's Go successor. An item whose start equals its end matches nothing.
Wall-clock minutes that a DST change skips never match (``Sun-Sun 02:00-03:00
Europe/Berlin`` matches nothing on 2025-03-30); repeated ones match twice.

Absolute items need UTC offsets (``+01:00`` or ``Z``) and include both ends.
Holidays (``2026-12-24`` or ``2026-12-24..2027-01-01``, inclusive, dates in the
holiday zone) always match all day, even in an inverted (uptime) spec.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from policies._calendar_ends import LATEST, instants_at_wall, local_day, shift_or_none
from policies._timespec_items import AbsoluteItem, RecurringItem, parse_item, resolve_zone, wall_to_instants

__all__ = ["Holiday", "TimeSpec"]

_WINDOW = timedelta(days=8)
# Recurring specs repeat weekly, so a spec that has not flipped within this many
# windows (400 days) is treated as never flipping.
_MAX_WINDOWS = 50
_HOLIDAY = re.compile(r"(\d{4}-\d{2}-\d{2})(?:\s*\.\.\s*(\d{4}-\d{2}-\d{2}))?")


@dataclass(frozen=True)
class Holiday:
    """An inclusive range of local dates that always counts as downtime."""

    first: date
    last: date

    @classmethod
    def parse(cls, text: str) -> Holiday:
        """Given ``2026-12-24`` or ``2026-12-24..2027-01-01``, return the Holiday.

        Raise ValueError, quoting the text, if it is malformed or ends before it starts.
        """
        match = _HOLIDAY.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"invalid holiday {text!r}: expected 'YYYY-MM-DD' or 'YYYY-MM-DD..YYYY-MM-DD'")
        try:
            first = date.fromisoformat(match.group(1))
            last = date.fromisoformat(match.group(2) or match.group(1))
        except ValueError as error:
            raise ValueError(f"invalid holiday {text!r}: {error}") from None
        if last < first:
            raise ValueError(f"invalid holiday {text!r}: ends before it starts")
        return cls(first, last)

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}..{self.last}"


@dataclass(frozen=True)
class TimeSpec:
    """A parsed time spec; ``matches`` tells whether an instant is downtime.

    ``str()`` gives the original spec text (holidays and inversion are in ``repr``).
    """

    text: str
    items: tuple[RecurringItem | AbsoluteItem, ...] = ()
    always: bool = False
    holidays: tuple[Holiday, ...] = ()
    holiday_zone: ZoneInfo = ZoneInfo("UTC")
    invert: bool = False

    @classmethod
    def parse(
        cls,
        text: str,
        holidays: Iterable[str] = (),
        holiday_zone: str = "UTC",
        *,
        invert: bool = False,
    ) -> TimeSpec:
        """Given spec text, holiday texts and their IANA zone, return the TimeSpec.

        With ``invert`` the spec describes uptime: instants outside it are downtime.
        Raise ValueError, quoting the bad item, if any part is invalid, and TypeError if
        ``holidays`` is a single string rather than a list of them.
        """
        if isinstance(holidays, str):
            raise TypeError("holidays must be a list of dates or date ranges, not a single string")
        parsed_holidays = tuple(Holiday.parse(holiday) for holiday in holidays)
        zone = resolve_zone(holiday_zone)
        if zone is None:
            raise ValueError(f"invalid holiday zone {holiday_zone!r}: unknown timezone")
        stripped = text.strip()
        if not stripped:
            raise ValueError(f"invalid time spec {text!r}: empty; expected 'always', 'never' or items")
        keyword = stripped.lower()
        items = () if keyword in ("always", "never") else tuple(parse_item(part) for part in text.split(","))
        return cls(text, items, keyword == "always", parsed_holidays, zone, invert)

    def inverted(self) -> TimeSpec:
        """Given this spec, return it with uptime and downtime swapped (holidays stay downtime)."""
        return replace(self, invert=not self.invert)

    def __str__(self) -> str:
        return self.text

    def matches(self, at: datetime) -> bool:
        """Given an aware instant, return whether it is downtime.

        Raise ValueError if ``at`` is naive or lies outside datetime's range in UTC
        (``0001-01-01T00:00:00+01:00``); every other aware instant has an answer.
        """
        at = _as_utc(at)
        if self._on_holiday(at):
            return True
        inside = self.always or any(item.matches(at) for item in self.items)
        return inside != self.invert

    def next_change(self, after: datetime) -> datetime | None:
        """Given an aware instant, return the first later instant (UTC) at which ``matches`` flips.

        The change is exact: at a recurring edge it is the minute the local clock reaches,
        and for an absolute range (which includes its end) one microsecond after the end.
        Return None if it never flips (within 400 days for recurring items) or not before
        the end of year 9999 (UTC), the last instant a datetime holds. Raise ValueError as
        ``matches`` does.
        """
        after = _as_utc(after)
        current = self.matches(after)
        fixed = sorted(edge for edge in self._fixed_edges() if edge > after)
        recurring = [item for item in self.items if isinstance(item, RecurringItem)]
        low = after
        for _ in range(_MAX_WINDOWS if recurring else 0):
            if low == LATEST:
                break
            high = shift_or_none(low, _WINDOW) or LATEST
            window = [edge for edge in fixed if low < edge <= high]
            window.extend(edge for item in recurring for edge in item.edges(low, high))
            for edge in sorted(window):
                if self.matches(edge) != current:
                    return edge
            low = high
        return next((edge for edge in fixed if edge > low and self.matches(edge) != current), None)

    def holiday_at(self, at: datetime) -> Holiday | None:
        """Given an aware instant, return the holiday it falls on (in the holiday zone), or None."""
        day = local_day(_as_utc(at), self.holiday_zone)  # may lie just past year 9999: then no holiday
        return next((h for h in self.holidays if h.first.toordinal() <= day <= h.last.toordinal()), None)

    def _on_holiday(self, at: datetime) -> bool:
        return self.holiday_at(at) is not None

    def _fixed_edges(self) -> Iterator[datetime]:
        """Yield every instant at which an absolute item or a holiday may flip ``matches``."""
        for item in self.items:
            if isinstance(item, AbsoluteItem):
                yield from item.edges()
        for holiday in self.holidays:
            for day in (holiday.first.toordinal(), holiday.last.toordinal() + 1):
                yield from instants_at_wall(day, timedelta(0), self._holiday_instants)

    def _holiday_instants(self, wall: datetime) -> list[datetime]:
        return wall_to_instants(wall, self.holiday_zone)


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()!r}; time specs need an aware datetime")
    try:
        return at.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"instant {at.isoformat()!r} lies outside datetime's range in UTC (years 1 to 9999)") from None
