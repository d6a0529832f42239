"""keep_within at the ends of the calendar: year 2 is an ordinary year, and the last minutes of year 9999
are judged whatever the host's timezone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import pytest

from policies.durations import Duration
from policies.retention import KeepRules, apply_rules


def kept(times: Sequence[datetime], within: str, now: datetime) -> list[bool]:
    return [bool(why) for why in apply_rules(times, KeepRules(within=Duration.parse(within)), timezone.utc, now)]


def test_keep_within_in_year_2_counts_back_from_the_newest_version() -> None:
    times = [datetime(2, 6, 1, tzinfo=timezone.utc), datetime(2, 5, 31, 12, tzinfo=timezone.utc), datetime(2, 1, 1, tzinfo=timezone.utc)]
    assert kept(times, "1d", datetime(2, 6, 2, tzinfo=timezone.utc)) == [True, True, False]


@pytest.mark.usefixtures("host_in_berlin")
def test_keep_within_in_the_last_minutes_of_year_9999_works_whatever_the_hosts_timezone() -> None:
    # In Berlin these instants are already in year 10000, which a datetime cannot hold.
    times = [datetime(9999, 12, 31, 23, 59, tzinfo=timezone.utc), datetime(9999, 12, 31, 23, 55, tzinfo=timezone.utc),
             datetime(9999, 12, 31, 23, 0, tzinfo=timezone.utc)]
    assert kept(times, "10m", datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)) == [True, True, False]
