"""restic 0.14 ``forget`` semantics, for one group of items (one artifact name).

Items are walked newest first. Every rule has its own counter and an item is kept
when any rule keeps it. A bucket rule (hourly .. yearly) keeps the newest item of
each bucket that holds items, until its count is used up; empty buckets do not
count. ``within`` rules are anchored at the newest item that is not in the future,
not at now. Buckets are read on the wall clock of ``zone``; weeks are ISO weeks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone, tzinfo

from policies._calendar_ends import CYCLE_YEARS, local_wall, shift_clamped
from policies.durations import Duration, go_add_date

_Bucketer = Callable[[datetime], str]


# Years written with four digits, as Go's "2006" layout does (glibc's strftime("%Y") writes year 1 as "1").
def _hour_bucket(local: datetime) -> str:
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:00"


def _day_bucket(local: datetime) -> str:
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d}"


def _week_bucket(local: datetime) -> str:
    iso_year, iso_week, _ = local.isocalendar()
    return f"{iso_year:04d}-W{iso_week:02d}"


def _month_bucket(local: datetime) -> str:
    return f"{local.year:04d}-{local.month:02d}"


def _year_bucket(local: datetime) -> str:
    return f"{local.year:04d}"


BUCKETS: dict[str, _Bucketer] = {
    "hourly": _hour_bucket,
    "daily": _day_bucket,
    "weekly": _week_bucket,
    "monthly": _month_bucket,
    "yearly": _year_bucket,
}


@dataclass(frozen=True)
class KeepRules:
    """The counting and window rules of one retention policy (restic's ``--keep-*``)."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration | None = None
    within_hourly: Duration | None = None
    within_daily: Duration | None = None
    within_weekly: Duration | None = None
    within_monthly: Duration | None = None
    within_yearly: Duration | None = None

    def is_empty(self) -> bool:
        """Return True when no rule would keep anything."""
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int) and value > 0:
                return False
            if isinstance(value, Duration) and not value.is_zero:
                return False
        return True


def apply_rules(
    created_at: Sequence[datetime],
    rules: KeepRules,
    zone: tzinfo,
    now: datetime,
) -> list[tuple[str, ...]]:
    """Given creation times of one group, return the keep reasons of each item, in input order.

    An empty tuple means no rule keeps the item. Ties in time keep their input order,
    as restic's stable sort does.
    """
    if not created_at:
        return []
    order = sorted(range(len(created_at)), key=created_at.__getitem__, reverse=True)
    last_left = rules.last
    last_reason = f"last {rules.last}"
    # [name, bucketer, count left, last bucket seen]: only the rules that can still keep something.
    counting = [[name, bucketer, getattr(rules, name), None] for name, bucketer in BUCKETS.items() if getattr(rules, name) > 0]
    spans = [(name, getattr(rules, f"within_{name}")) for name in BUCKETS]
    within_cutoff: datetime | None = None
    windows: list[list] = []
    if rules.within is not None or any(span is not None for _, span in spans):
        anchor = _newest_not_in_future(created_at, now)
        within_cutoff = _cutoff(anchor, rules.within, zone)
        for name, span in spans:
            cutoff = _cutoff(anchor, span, zone)
            if cutoff is not None:
                # [cutoff, bucketer, reason prefix, last bucket seen]
                windows.append([cutoff, BUCKETS[name], f"{name} within {span} ", None])
    within_reason = f"within {rules.within}"
    # Items come newest first, so once every counter is used up and an item is past every
    # window, no later item can be kept either.
    earliest_cutoff = min((window[0] for window in windows), default=None)
    if within_cutoff is not None and (earliest_cutoff is None or within_cutoff < earliest_cutoff):
        earliest_cutoff = within_cutoff

    result: list[tuple[str, ...]] = [()] * len(created_at)
    for index in order:
        instant = created_at[index]
        if last_left <= 0 and not counting and (earliest_cutoff is None or not instant > earliest_cutoff):
            break
        reasons: list[str] = []
        if within_cutoff is not None and instant > within_cutoff:
            reasons.append(within_reason)
        if last_left > 0:
            last_left -= 1
            reasons.append(last_reason)
        if counting or windows:
            local, cycles = local_wall(instant, zone)  # 400 years inward near year 9999: same calendar
            if counting:
                for rule in counting:
                    bucket = _in_true_year(rule[1](local), cycles)
                    if bucket != rule[3]:
                        rule[3] = bucket
                        rule[2] -= 1
                        reasons.append(f"{rule[0]} {bucket}")
                counting = [rule for rule in counting if rule[2] > 0]
            for window in windows:
                if not instant > window[0]:
                    continue
                bucket = _in_true_year(window[1](local), cycles)
                if bucket != window[3]:
                    window[3] = bucket
                    reasons.append(window[2] + bucket)
        if reasons:
            result[index] = tuple(reasons)
    return result


def _in_true_year(bucket: str, cycles: int) -> str:
    """Given a bucket name read from a wall time ``cycles`` 400-year cycles inward, return it in the true year."""
    if not cycles:
        return bucket
    year, dash, rest = bucket.partition("-")
    return f"{int(year) + cycles * CYCLE_YEARS:04d}{dash}{rest}"


def _newest_not_in_future(created_at: Sequence[datetime], now: datetime) -> datetime:
    # restic starts from Go's zero time, so with every item in the future all are "within".
    anchor = datetime.min.replace(tzinfo=timezone.utc)
    for instant in created_at:
        if anchor < instant < now:
            anchor = instant
    return anchor


def _cutoff(anchor: datetime, span: Duration | None, zone: tzinfo) -> datetime | None:
    if span is None or span.is_zero:
        return None
    if anchor.year < 2:
        return datetime.min.replace(tzinfo=timezone.utc)
    # restic always calls Go's AddDate, even with zero calendar parts: that re-reads an anchor
    # in a repeated DST hour the Go way (Berlin: the later 02:30; New York: the earlier 01:30)
    # and so shifts the window by the DST offset. Only here; age guards must not move.
    shifted = go_add_date(anchor, -span.years, -span.months, -span.days, zone)
    return shift_clamped(shifted, -span.seconds).astimezone(timezone.utc)
