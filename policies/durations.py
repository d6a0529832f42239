"""Durations and sizes as humans write them in the config, and calendar arithmetic.

Durations: ``90s``, ``15m``, ``6h``, ``7d``, ``2w``, ``3mo``, ``1y``, combinable
(``1d12h``). ``m`` is minutes and ``mo`` is months (restic's own flags use ``m``
for months; the config does not).

Subtracting a duration follows restic, which follows Go: years, months and days
move the wall clock in the given timezone (``time.AddDate``, with Go's
normalisation: 2024-03-31 minus one month is 2024-03-02), then hours, minutes
and seconds are subtracted as exact elapsed time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo

from policies._calendar_ends import CYCLE_YEARS, day_number, instant_at_wall, local_wall, shift_clamped

_DURATION_PART = re.compile(r"(\d+)(mo|y|w|d|h|m|s)", re.ASCII)
_UNIT_ORDER = ("y", "mo", "w", "d", "h", "m", "s")
# Spans past datetime's range are fine (before/after stop at its ends), but approx_seconds of a
# 400-digit count would overflow a float: 30 digits are already ~10^22 years.
MAX_DURATION_DIGITS = 30


@dataclass(frozen=True, order=True)
class Duration:
    """A calendar-aware span: calendar years, months and days plus exact seconds."""

    years: int = 0
    months: int = 0
    days: int = 0
    seconds: int = 0
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Given ``"1d12h"``-style text, return the Duration. Raise ValueError if malformed or not text."""
        if not isinstance(text, str):
            raise ValueError(
                f"a duration must be text like '90s', '15m', '6h', '7d', '2w', '3mo', '1y', not {describe_type(text)}"
            )
        if "M" in text:
            raise ValueError(
                f"invalid duration {_shorten(text)}: 'M' is ambiguous; write 'mo' for months or 'm' for minutes"
            )
        cleaned = text.strip().lower()
        if not cleaned:
            raise ValueError("empty duration; expected e.g. '90s', '15m', '6h', '7d', '2w', '3mo', '1y'")
        position = 0
        seen: list[str] = []
        totals = dict.fromkeys(_UNIT_ORDER, 0)
        # Match only where the last part ended: finditer would rescan a long run of digits from every offset.
        while (match := _DURATION_PART.match(cleaned, position)) is not None:
            if len(match.group(1)) > MAX_DURATION_DIGITS:
                raise ValueError(f"duration {_shorten(text)}: a number has more than {MAX_DURATION_DIGITS} digits")
            number, unit = int(match.group(1)), match.group(2)
            if unit in seen:
                raise ValueError(f"duration {_shorten(text)} repeats the unit {unit!r}")
            if seen and _UNIT_ORDER.index(unit) < _UNIT_ORDER.index(seen[-1]):
                raise ValueError(f"duration {_shorten(text)}: units must go from largest to smallest")
            seen.append(unit)
            totals[unit] = number
            position = match.end()
        if position != len(cleaned) or not seen:
            raise ValueError(
                f"invalid duration {_shorten(text)}; expected numbers with units y, mo, w, d, h, m, s "
                "(e.g. '90s', '15m', '6h', '7d', '2w', '3mo', '1y', '1d12h')"
            )
        return cls(
            years=totals["y"],
            months=totals["mo"],
            days=totals["w"] * 7 + totals["d"],
            seconds=totals["h"] * 3600 + totals["m"] * 60 + totals["s"],
            text=text.strip(),
        )

    def __str__(self) -> str:
        return self.text or self.canonical()

    def canonical(self) -> str:
        """Return a normalised text form, e.g. ``1y2mo3d4h``."""
        parts = []
        for value, unit in ((self.years, "y"), (self.months, "mo"), (self.days, "d")):
            if value:
                parts.append(f"{value}{unit}")
        hours, rest = divmod(self.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        for value, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")):
            if value:
                parts.append(f"{value}{unit}")
        return "".join(parts) or "0s"

    @property
    def is_zero(self) -> bool:
        return not (self.years or self.months or self.days or self.seconds)

    def approx_seconds(self) -> float:
        """Return the length in seconds using 30-day months and 365-day years (for display and limits)."""
        return (self.years * 365 + self.months * 30 + self.days) * 86400.0 + self.seconds

    def before(self, at: datetime, zone: tzinfo) -> datetime:
        """Given an aware instant, return the aware UTC instant this duration earlier.

        Calendar parts move the wall clock in ``zone`` with Go's normalisation; the
        exact part is subtracted afterwards, as restic does. An instant before year 1
        is the first instant of year 1 (every later instant is still "within" the span).
        """
        shifted = at
        if self.years or self.months or self.days:
            shifted = go_add_date(at, -self.years, -self.months, -self.days, zone)
        return shift_clamped(shifted, -self.seconds).astimezone(timezone.utc)

    def after(self, at: datetime, zone: tzinfo) -> datetime:
        """Given an aware instant, return the aware UTC instant this duration later (calendar parts in ``zone``).

        An instant after year 9999 is the last instant of year 9999.
        """
        shifted = at
        if self.years or self.months or self.days:
            shifted = go_add_date(at, self.years, self.months, self.days, zone)
        return shift_clamped(shifted, self.seconds).astimezone(timezone.utc)


def go_add_date(at: datetime, years: int, months: int, days: int, zone: tzinfo) -> datetime:
    """Given an aware instant, return Go's ``t.In(zone).AddDate(years, months, days)`` as aware UTC.

    Out-of-range days and months roll over (Jan 31 + 1 month = Mar 3 or 2). A wall time
    that does not exist or exists twice (DST) is resolved the way Go's ``time.Date`` does.
    A result past either end of datetime's range (years 1 to 9999) is that end.
    """
    local, cycles = local_wall(at, zone)
    month_index = local.month - 1 + months
    year = local.year + cycles * CYCLE_YEARS + years + month_index // 12
    month = month_index % 12 + 1
    # Go normalises day overflow by counting days from the first of the month.
    day = day_number(year, month, 1) + local.day - 1 + days
    time_of_day = timedelta(hours=local.hour, minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
    return instant_at_wall(day, time_of_day, lambda wall: go_wall_to_utc(wall, zone))


def go_wall_to_utc(wall: datetime, zone: tzinfo) -> datetime:
    """Given a naive wall-clock time, return the aware UTC instant Go's ``time.Date`` picks.

    Go guesses the offset in force at the wall time read as UTC, and keeps it if the
    resulting instant really has that offset; otherwise it takes the offset in force at
    that instant. This differs from Python's ``fold`` rule for ambiguous times.
    """
    as_utc = wall.replace(tzinfo=timezone.utc)
    guess = _offset_at(as_utc, zone)
    candidate = as_utc - guess
    actual = _offset_at(candidate, zone)
    if actual != guess:
        candidate = as_utc - actual
    return candidate


def _offset_at(instant: datetime, zone: tzinfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    return offset if offset is not None else timedelta(0)


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]i?b|b)$", re.IGNORECASE | re.ASCII)
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)\s*%$", re.ASCII)
_SIZE_FACTORS = {
    "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4, "pb": 1000**5,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4, "pib": 1024**5,
}
_SIZE_EXAMPLES = "'500MB' (powers of 1000), '200GiB' (powers of 1024) or '85%'"


@dataclass(frozen=True)
class Size:
    """A byte count (``bytes``) or a share of a filesystem (``percent``); exactly one is set."""

    bytes: int | None = None
    percent: float | None = None
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Size:
        """Given ``"500MB"``, ``"200GiB"`` or ``"85%"``, return the Size. Raise ValueError if malformed.

        A bare number (``0.85``, ``85``, ``"85"``) is refused: it could mean a share, bytes or
        gigabytes, and read as bytes, ``high_watermark = 85`` would evict everything.
        """
        if isinstance(text, int | float) and not isinstance(text, bool):
            raise ValueError(
                f"a bare number ({_shorten(text)}) is ambiguous; write a share such as '85%' "
                "or a size with its unit such as '500MB', '200GiB', '4096B'"
            )
        if not isinstance(text, str):
            raise ValueError(f"a size must be text like {_SIZE_EXAMPLES}, not {describe_type(text)}")
        stripped = text.strip()
        percent_match = _PERCENT.match(stripped)
        if percent_match:
            percent = float(percent_match.group(1))
            if not 0 <= percent <= 100:
                raise ValueError(f"percentage {_shorten(text)} is outside 0%..100%")
            return cls(percent=percent, text=stripped)
        match = _SIZE.match(stripped)
        if not match:
            if _PERCENT.match(stripped + "%") or stripped.endswith("%"):
                hint = "a share ends in '%' (e.g. '85%'), bytes need a unit (e.g. '500MB', '4096B')"
            else:
                hint = f"expected e.g. {_SIZE_EXAMPLES}"
            raise ValueError(f"invalid size {_shorten(text)}; {hint}")
        number, unit = match.group(1), match.group(2).lower()
        if unit == "b" and "." in number:
            raise ValueError(f"size {_shorten(text)}: a byte count is a whole number")
        whole, _, fraction = number.partition(".")
        # Exact arithmetic: float() of a long digit string rounds, or overflows to inf.
        scale = 10 ** len(fraction)
        count = (int(whole) * scale + int(fraction or "0")) * _SIZE_FACTORS[unit] // scale
        return cls(bytes=count, text=stripped)

    @property
    def is_zero(self) -> bool:
        return not (self.bytes or self.percent)

    def resolve(self, total_bytes: int) -> int:
        """Given the size of the filesystem, return this size in bytes."""
        if self.bytes is not None:
            return self.bytes
        assert self.percent is not None
        return int(total_bytes * self.percent / 100)

    def __str__(self) -> str:
        return self.text


def format_bytes(count: int) -> str:
    """Return a short human form of a byte count, in powers of 1024 (``1.5 GiB``)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover



def describe_type(value: object) -> str:
    """Return how a config value of this Python type was written, for messages ("a number", "a table")."""
    names = {
        bool: "true/false", int: "a number", float: "a number", list: "an array", tuple: "an array",
        dict: "a table", datetime: "a date-time", date: "a date", time: "a time",
    }
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


def _shorten(value: object, limit: int = 60) -> str:
    """Return ``repr(value)``, cut to ``limit`` characters so a huge value does not flood the message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"
