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
from datetime import datetime, timedelta, timezone, tzinfo

from policies.durations import Duration, go_add_date

_Bucketer = Callable[[datetime], str]


def _hour_bucket(local: datetime) -> str:
    return local.strftime("%Y-%m-%d %H:00")


def _day_bucket(local: datetime) -> str:
    return local.strftime("%Y-%m-%d")


def _week_bucket(local: datetime) -> str:
    iso_year, iso_week, _ = local.isocalendar()
    return f"{iso_year}-W{iso_week:02d}"


def _month_bucket(local: datetime) -> str:
    return local.strftime("%Y-%m")


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
    order = sorted(range(len(created_at)), key=lambda index: created_at[index], reverse=True)
    local_times = [created_at[index].astimezone(zone) for index in order]
    anchor = _newest_not_in_future(created_at, now)

    counters = {name: getattr(rules, name) for name in ("last", *BUCKETS)}
    last_bucket: dict[str, str | None] = dict.fromkeys(BUCKETS)
    within_cutoff = _cutoff(anchor, rules.within, zone)
    within_buckets = {
        name: (_cutoff(anchor, getattr(rules, f"within_{name}"), zone), bucketer)
        for name, bucketer in BUCKETS.items()
    }
    last_within_bucket: dict[str, str | None] = dict.fromkeys(BUCKETS)

    reasons_in_order: list[tuple[str, ...]] = []
    for index, local in zip(order, local_times):
        instant = created_at[index]
        reasons: list[str] = []
        if within_cutoff is not None and instant > within_cutoff:
            reasons.append(f"within {rules.within}")
        if counters["last"] > 0:
            counters["last"] -= 1
            reasons.append(f"last {rules.last}")
        for name, bucketer in BUCKETS.items():
            if counters[name] <= 0:
                continue
            bucket = bucketer(local)
            if bucket != last_bucket[name]:
                last_bucket[name] = bucket
                counters[name] -= 1
                reasons.append(f"{name} {bucket}")
        for name, (cutoff, bucketer) in within_buckets.items():
            if cutoff is None or not instant > cutoff:
                continue
            bucket = bucketer(local)
            if bucket != last_within_bucket[name]:
                last_within_bucket[name] = bucket
                reasons.append(f"{name} within {getattr(rules, f'within_{name}')} {bucket}")
        reasons_in_order.append(tuple(reasons))

    result: list[tuple[str, ...]] = [()] * len(created_at)
    for index, item_reasons in zip(order, reasons_in_order):
        result[index] = item_reasons
    return result


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
    return (shifted - timedelta(seconds=span.seconds)).astimezone(timezone.utc)
