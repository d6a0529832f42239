"""What the config parsers accept at their edges, the messages they refuse with, and instants that do
not depend on the host's timezone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from policies import Artifact, Deployment, DiskPolicy, DiskUsage, Inventory, OffhoursPolicy, evaluate
from policies._timespec_items import wall_to_instants
from policies.durations import Duration, Size
from policies.windows import TimeSpec

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
GIB = 1024**3


def disk(**fields: Any) -> DiskPolicy:
    return DiskPolicy(**{"name": "pressure", "high_watermark": "85%", **fields})


def test_a_zero_disk_limit_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="0% would count any used byte as pressure"):
        disk(high_watermark="0%")


def test_an_interval_of_exactly_365_days_is_allowed_and_a_longer_one_is_refused_by_name() -> None:
    assert disk(check_interval="365d").check_interval == Duration.parse("365d")
    with pytest.raises(ValidationError, match="check_interval 366d must be at most 1y"):
        disk(check_interval="366d")


def test_watermarks_of_different_units_are_left_to_run_time_and_byte_watermarks_are_compared() -> None:
    assert disk(high_watermark="90GB", low_watermark="80%").low_watermark == Size.parse("80%")
    assert disk(high_watermark="90GB", low_watermark="80GB").low_watermark == Size.parse("80GB")
    with pytest.raises(ValidationError, match="low_watermark 95GB must be below high_watermark 90GB"):
        disk(high_watermark="90GB", low_watermark="95GB")


def test_a_disk_policy_selects_by_kind_name_and_label_together() -> None:
    def version(kind: str, name: str, label: str, **extra: Any) -> Artifact:
        created = NOW - timedelta(days=30)
        return Artifact(kind=kind, name=name, version=label, created_at=created, modified_at=created, size_bytes=GIB, **extra)

    items = (
        version("model", "iris", "v1", labels={"team": "a"}), version("model", "iris", "v2", labels={"team": "b"}),
        version("model", "mnist", "v1", labels={"team": "a"}), version("bento", "iris", "b1", labels={"team": "a"}),
        *(version(kind, name, "newest", is_latest=True) for kind, name in (("model", "iris"), ("model", "mnist"), ("bento", "iris"))),
    )
    policy = disk(kinds=("model",), match=("iris",), labels={"team": "a"}, low_watermark="10%")
    plan = evaluate(Inventory(items, disk=DiskUsage(100 * GIB, 99 * GIB)), [policy], NOW)
    assert [(action.kind, action.name, action.version) for action in plan.actions] == [("model", "iris", "v1")]


def test_an_uptime_policy_says_it_acts_outside_uptime_and_ignores_other_providers() -> None:
    uptime = "Mon-Fri 07:00-20:00 Europe/Berlin"
    nights = OffhoursPolicy(name="nights", provider="cloud", uptime=uptime)
    long_ago = NOW - timedelta(days=30)
    ours = Deployment(provider="cloud", name="a", status="running", created_at=long_ago, updated_at=long_ago)
    other = Deployment(provider="local", name="a", status="running", created_at=long_ago, updated_at=long_ago)
    sunday = datetime(2026, 11, 22, 12, 0, tzinfo=BERLIN)
    plan = evaluate(Inventory((), deployments=(ours, other)), [nights], sunday)
    assert [(action.action, action.provider, action.reasons) for action in plan.actions] == [
        ("terminate", "cloud", (f"outside uptime {uptime}",))
    ]
    assert plan.kept == ()


def test_a_duration_keeps_the_text_it_was_written_with() -> None:
    assert str(Duration.parse(" 2w ")) == "2w"
    assert str(Duration.parse("1d12h")) == "1d12h"


def test_long_config_values_are_cut_in_messages_at_60_characters() -> None:
    long = "M" * 100
    with pytest.raises(ValueError) as error:
        Duration.parse(long)
    assert str(error.value).startswith(f"invalid duration {repr(long)[:60]}…: 'M' is ambiguous")
    exactly = "M" * 58  # its repr is 60 characters: shown whole
    with pytest.raises(ValueError) as error:
        Duration.parse(exactly)
    assert str(error.value).startswith(f"invalid duration {exactly!r}: 'M' is ambiguous")


def test_a_size_ending_in_a_percent_sign_gets_the_share_hint() -> None:
    with pytest.raises(ValueError, match="a share ends in '%'"):
        Size.parse("-5%")


def test_a_value_of_an_unexpected_type_is_named_by_its_type() -> None:
    with pytest.raises(ValueError, match="not bytes$"):
        Duration.parse(b"7d")  # type: ignore[arg-type]


@pytest.mark.usefixtures("host_in_berlin")
def test_duration_arithmetic_answers_in_utc_with_exact_hours_whatever_the_hosts_timezone() -> None:
    at = datetime(2025, 3, 29, 12, 0, tzinfo=timezone.utc)
    later = Duration.parse("1d").after(at, timezone.utc)
    assert later == datetime(2025, 3, 30, 12, 0, tzinfo=timezone.utc) and later.utcoffset() == timedelta(0)
    assert Duration.parse("1h").after(at, timezone.utc).utcoffset() == timedelta(0)
    assert Duration.parse("1h").before(at, timezone.utc).utcoffset() == timedelta(0)


@pytest.mark.usefixtures("host_in_berlin")
def test_an_absolute_range_ending_in_the_last_hour_of_year_9999_still_ends() -> None:
    spec = TimeSpec.parse("9999-12-31T22:00:00Z-9999-12-31T23:30:00Z")
    assert spec.next_change(datetime(9999, 12, 31, 22, 30, tzinfo=timezone.utc)) == datetime(
        9999, 12, 31, 23, 30, 0, 1, tzinfo=timezone.utc
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Mon-Fri 08:00-09:00 UTC,", "invalid time spec item '': empty item (stray comma?)"),
        ("Mon-Fri 24:00-09:00 UTC", "start time 24:00 is not allowed (24:00 can only end a range)"),
        ("2026-01-02T00:00:00Z-2026-01-01T00:00:00Z", "absolute range ends before it starts"),
    ],
)
def test_time_spec_items_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        TimeSpec.parse(text)
    assert str(error.value).endswith(message)


def test_holidays_given_as_one_string_are_refused_with_the_reason() -> None:
    with pytest.raises(TypeError, match="^holidays must be a list of dates or date ranges, not a single string$"):
        TimeSpec.parse("always", "2026-12-24")  # type: ignore[arg-type]


def test_a_minute_59_and_a_range_of_one_instant_are_valid_items() -> None:
    minute = TimeSpec.parse("Mon-Sun 08:59-09:59 UTC")
    assert minute.matches(datetime(2026, 11, 22, 8, 59, tzinfo=timezone.utc))
    instant = TimeSpec.parse("2026-01-01T00:00:00Z-2026-01-01T00:00:00Z")
    assert instant.matches(datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert not instant.matches(datetime(2026, 1, 1, 0, 0, 1, tzinfo=timezone.utc))


@pytest.mark.parametrize("seconds", [1, 2, 3, 1800, 3598, 3599])
def test_a_wall_time_the_spring_change_skips_is_reached_at_the_exact_second_of_the_change(seconds: int) -> None:
    skipped = datetime(2025, 3, 30, 2, 0) + timedelta(seconds=seconds)
    assert wall_to_instants(skipped, BERLIN) == [datetime(2025, 3, 30, 1, 0, tzinfo=timezone.utc)]


def test_a_change_exactly_eight_days_ahead_is_found_on_the_edge_of_the_search_window() -> None:
    # Every day but Sunday, and a Sunday holiday: downtime all week; the next Sunday at 00:00, exactly eight
    # days (the span next_change searches at a time) after Saturday 00:00, is the first change.
    spec = TimeSpec.parse("Mon-Sat 00:00-24:00 UTC", ["2026-11-22"])
    saturday = datetime(2026, 11, 21, tzinfo=timezone.utc)
    assert spec.next_change(saturday) == datetime(2026, 11, 29, tzinfo=timezone.utc)


def test_the_next_change_of_a_zone_a_day_behind_the_host_is_found(host_zone: Callable[[str], None]) -> None:
    # Host at UTC+14, the spec's zone at UTC-11 (Samoa, 2011): local days differ by more than one.
    host_zone("Pacific/Kiritimati")
    spec = TimeSpec.parse("Sat-Sun 00:00-24:00 Pacific/Apia")
    assert spec.next_change(datetime(2011, 6, 6, 10, 0, tzinfo=timezone.utc)) == datetime(2011, 6, 6, 11, 0, tzinfo=timezone.utc)


def test_a_change_at_the_edge_of_the_search_window_in_a_zone_ahead_of_the_host_is_found(host_zone: Callable[[str], None]) -> None:
    # Host at UTC-12, the spec's zone at UTC+14: the search window's last local day is two days ahead of the
    # host's. Uptime on Sunday mornings, and a Sunday holiday: downtime from Saturday until the next Sunday.
    host_zone("Etc/GMT+12")
    kiritimati = ZoneInfo("Pacific/Kiritimati")
    spec = TimeSpec.parse("Sun-Sun 00:00-12:00 Pacific/Kiritimati", ["2026-11-22"], "Pacific/Kiritimati", invert=True)
    saturday = datetime(2026, 11, 21, tzinfo=kiritimati)
    assert spec.next_change(saturday) == datetime(2026, 11, 29, tzinfo=kiritimati)


def test_the_end_of_an_absolute_range_exactly_at_the_end_of_the_search_window_is_found() -> None:
    # The recurring item (start = end) never matches; it only makes next_change search window by window.
    spec = TimeSpec.parse("2026-11-21T00:00:00Z-2026-11-29T00:00:00Z, Mon-Mon 10:00-10:00 UTC")
    ends = datetime(2026, 11, 29, 0, 0, 0, 1, tzinfo=timezone.utc)
    assert spec.next_change(ends - timedelta(days=8)) == ends


def test_a_holiday_inside_an_absolute_range_is_no_change() -> None:
    spec = TimeSpec.parse("2026-11-21T00:00:00Z-2026-11-29T00:00:00Z", ["2026-11-23"])
    assert spec.next_change(datetime(2026, 11, 22, tzinfo=timezone.utc)) == datetime(2026, 11, 29, 0, 0, 0, 1, tzinfo=timezone.utc)


def test_an_instant_whose_zone_gives_no_offset_is_naive() -> None:
    class NoOffset(tzinfo):
        def utcoffset(self, dt: datetime | None) -> None:
            return None

    with pytest.raises(ValueError, match="naive datetime"):
        TimeSpec.parse("always").matches(datetime(2026, 11, 22, tzinfo=NoOffset()))
