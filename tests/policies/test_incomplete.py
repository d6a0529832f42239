"""Leftovers of killed saves: collected once unchanged for the configured span, calendar days in the zone."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from policies.durations import Duration
from policies.incomplete import COLLECT_POLICY, Leftover, collect_leftovers

BERLIN = ZoneInfo("Europe/Berlin")
# Sunday 2025-03-30 12:00 in Berlin (CEST, UTC+2), the day clocks went forward: one calendar day
# earlier on Berlin's wall clock is 2025-03-29 12:00 CET = 11:00 UTC, 23 hours before, not 24.
NOW = datetime(2025, 3, 30, 12, 0, tzinfo=BERLIN)
DAY_BEFORE_ON_THE_WALL = datetime(2025, 3, 29, 11, 0, tzinfo=timezone.utc)


def leftover(modified_at: datetime, kind: str = "model", missing: str = "model.yaml") -> Leftover:
    version = None if kind == "tmp" else "v1"
    return Leftover(kind, "iris", version, modified_at, 1234, missing)  # type: ignore[arg-type]


def test_a_leftover_unchanged_for_exactly_the_span_is_collected_with_its_size_and_reason() -> None:
    actions, younger = collect_leftovers([leftover(DAY_BEFORE_ON_THE_WALL)], Duration.parse("1d"), NOW, BERLIN)

    assert younger == []
    assert [(a.action, a.kind, a.name, a.version, a.policy, a.size_bytes) for a in actions] == [
        ("delete", "model", "iris", "v1", COLLECT_POLICY, 1234)
    ]
    assert actions[0].reasons == ("incomplete save: no model.yaml, last modified 2025-03-29T11:00:00Z",)


def test_the_span_counts_calendar_days_on_the_zones_wall_clock_across_a_dst_change() -> None:
    # 23.5 hours old: a day on Berlin's wall clock (23 h that Sunday) but not 24 hours.
    half_hour_past = DAY_BEFORE_ON_THE_WALL + timedelta(minutes=30)
    actions, younger = collect_leftovers([leftover(DAY_BEFORE_ON_THE_WALL - timedelta(minutes=30))],
                                         Duration.parse("1d"), NOW, BERLIN)
    assert len(actions) == 1 and younger == []

    actions, younger = collect_leftovers([leftover(half_hour_past)], Duration.parse("1d"), NOW, BERLIN)
    assert actions == []
    assert len(younger) == 1


def test_a_younger_leftover_stays_and_says_when_it_is_collected_in_the_zone() -> None:
    # Modified Saturday 12:00 Berlin (CET); a day later on the wall clock is Sunday 12:00 CEST = 10:00 UTC.
    modified = datetime(2025, 3, 29, 12, 0, tzinfo=BERLIN) + timedelta(minutes=1)
    item = leftover(modified, kind="tmp", missing="")
    actions, younger = collect_leftovers([item], Duration.parse("1d"), NOW, BERLIN)

    assert actions == []
    assert younger == [(item, "leftover in BentoML's tmp directory, last modified 2025-03-29T11:01:00Z; "
                              "collected if still unchanged at 2025-03-30T10:01:00Z (1d)")]
