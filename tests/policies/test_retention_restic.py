"""The real restic 0.14 judges ``policies.retention.apply_rules``.

Random cases (zones with odd offsets and DST, ISO week 53, month ends, items in the
future, boundary items exactly at ``keep_within`` cut-offs) are decided both by
``restic forget --dry-run --json`` and by ``apply_rules``; the kept sets, and the
kinds of reasons for each kept item, must agree group by group.

The seed changes every run and is printed in every failure. Reproduce a run with
``RETENTION_JUDGE_SEED=<seed>``; ``RETENTION_JUDGE_CASES`` changes the number of
cases. Future items are generated relative to the clock, so they move with it.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from policies.durations import Duration
from policies.retention import KeepRules, apply_rules
from tests.restic_oracle import ForgetRun, ResticOracle, find_restic, go_time_text, unavailable_reason

pytestmark = pytest.mark.restic

UTC = timezone.utc
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham")
SEED = int(os.environ.get("RETENTION_JUDGE_SEED") or random.SystemRandom().randrange(2**32))
CASE_COUNT = int(os.environ.get("RETENTION_JUDGE_CASES") or 80)
GENERATED_AT = datetime.now(UTC).replace(microsecond=0)
# Generated past items stay this far from the clock, so restic's "now" and ours see the same past.
CLOCK_MARGIN = timedelta(days=2)

# Local wall times that items cluster around.
YEAR_END_WALLS = (
    datetime(2020, 12, 31, 23, 30),  # 2020 has ISO week 53 (2020-12-28 .. 2021-01-03)
    datetime(2021, 1, 3, 22, 0),  # last day of 2020-W53
    datetime(2015, 12, 31, 12, 0),  # 2015-W53
    datetime(2024, 12, 30, 0, 30),  # calendar 2024, ISO week 2025-W01
    datetime(2025, 12, 29, 1, 0),  # calendar 2025, ISO week 2026-W01
)
MONTH_END_WALLS = (
    datetime(2024, 1, 31, 12, 0),
    datetime(2024, 2, 29, 23, 0),
    datetime(2024, 3, 31, 12, 0),
    datetime(2023, 2, 28, 6, 0),
    datetime(2025, 3, 31, 0, 30),
    datetime(2025, 5, 31, 18, 0),
    datetime(2023, 12, 31, 23, 59),
)
SPREADS = (
    timedelta(minutes=30),
    timedelta(hours=3),
    timedelta(days=2),
    timedelta(days=10),
    timedelta(days=45),
    timedelta(days=400),
    timedelta(days=1100),
)
NOTABLE_WITHIN = ("1d", "2d", "1w", "1mo", "2mo", "1y", "13mo", "1y1mo", "1mo1d", "36h", "1d12h", "3h", "1y2mo3d4h")
# Shifts between an anchor and a wall time near a DST change: calendar years, months, days, exact hours.
DST_SHIFTS = (
    (0, 0, 1, 0),
    (0, 0, 2, 0),
    (0, 0, 7, 0),
    (0, 1, 0, 0),
    (1, 0, 0, 0),
    (0, 1, 1, 0),
    (0, 0, 0, 2),
    (0, 0, 0, 5),
    (0, 0, 0, 25),
    (0, 0, 1, 3),
)
COUNT_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
WITHIN_RULES = ("within", "within_hourly", "within_daily", "within_weekly", "within_monthly", "within_yearly")
THEMES = ("dst", "year end", "month end", "mixed")
LIKELY_RULES = {
    "dst": ("hourly", "daily"),
    "year end": ("weekly", "yearly", "within_weekly", "within_yearly"),
    "month end": ("monthly", "within", "within_monthly"),
    "mixed": (),
}


# -- restic and its flags ---------------------------------------------------------------


def _require_restic() -> str:
    """Return the restic program; without a usable restic, fail when CI is set and skip otherwise."""
    problem = unavailable_reason()
    restic = find_restic()
    if problem is None and restic is not None:
        return restic
    message = problem or "restic is not on PATH"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so the restic judge must run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> ResticOracle:
    """One restic repository template for the whole session (``restic init`` is slow)."""
    return ResticOracle.create(_require_restic(), tmp_path_factory.mktemp("restic-judge"))


def test_restic_judge_can_run_here() -> None:
    _require_restic()


def restic_duration(span: Duration) -> str:
    """Given one of our durations, return restic's ``--keep-within`` text (``y m d h``, ``m`` = months)."""
    if span.seconds % 3600:
        raise ValueError(f"restic's --keep-within has no unit below hours: {span}")
    parts = ((span.years, "y"), (span.months, "m"), (span.days, "d"), (span.seconds // 3600, "h"))
    text = "".join(f"{value}{unit}" for value, unit in parts if value)
    if not text:
        raise ValueError("restic has no zero --keep-within")
    return text


def restic_flags(rules: KeepRules) -> list[str]:
    """Return the ``restic forget`` flags equivalent to ``rules``."""
    flags: list[str] = []
    for name in COUNT_RULES:
        count = getattr(rules, name)
        if count:
            flags += [f"--keep-{name}", str(count)]
    for name in WITHIN_RULES:
        span = getattr(rules, name)
        if span is not None:
            flags += [f"--keep-{name.replace('_', '-')}", restic_duration(span)]
    return flags


def reason_kind(reason: str) -> str:
    """Reduce a keep reason, ours ("daily 2024-03-31") or restic's ("daily snapshot"), to its rule."""
    words = reason.split()
    if words[0] in ("within", "last"):
        return words[0]
    if len(words) > 1 and words[1] == "within":
        return f"{words[0]} within"
    return words[0]


def kept_by_us(
    times: Sequence[datetime], rules: KeepRules, zone_name: str, now: datetime
) -> tuple[frozenset[int], dict[int, frozenset[str]]]:
    reasons = apply_rules(times, rules, ZoneInfo(zone_name), now)
    kinds = {index: frozenset(map(reason_kind, item)) for index, item in enumerate(reasons) if item}
    return frozenset(kinds), kinds


# -- random cases -----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    number: int
    zone_name: str
    theme: str
    rules: KeepRules
    groups: tuple[tuple[datetime, ...], ...]

    @property
    def flags(self) -> list[str]:
        return restic_flags(self.rules)


def generate_cases(seed: int, count: int) -> list[Case]:
    """Return ``count`` random cases; the same seed gives the same cases (up to the clock)."""
    rng = random.Random(seed)
    return [_random_case(rng, number) for number in range(count)]


def _random_case(rng: random.Random, number: int) -> Case:
    """A zone, a theme that decides where items cluster and which rules are likely, and 1-3 groups."""
    zone_name = ZONES[number % len(ZONES)] if number < len(ZONES) else rng.choice(ZONES)
    zone = ZoneInfo(zone_name)
    themes = ("dst", "dst", "year end", "month end", "mixed") if _transitions(zone_name) else THEMES[1:]
    theme = rng.choice(themes)
    forced: dict[str, Duration] = {}
    shift = rng.choice(DST_SHIFTS)
    anchor_at_change = rng.random() < 0.5
    if anchor_at_change and rng.random() < 0.6:
        shift = (0, 0, 0, rng.randint(1, 3))
    if theme == "dst":
        span = Duration.parse("".join(f"{v}{u}" for v, u in zip(shift, ("y", "mo", "d", "h")) if v))
        # Plain "within" decides items at its cut-off one by one, so it is forced more often.
        forced = dict.fromkeys({rng.choice(("within", *WITHIN_RULES)) for _ in range(rng.randint(1, 2))}, span)
    rules = _random_rules(rng, forced, likely=LIKELY_RULES[theme])
    groups = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        if theme == "dst":
            times = _dst_group(rng, zone_name, shift, anchor_at_change)
        else:
            times = _cluster_group(rng, rng.choice(_centres(zone_name, theme)))
        if rng.random() < (0.9 if theme == "dst" else 0.6):
            times |= _boundary_probes(times, rules, zone)
        if rng.random() < 0.3:
            times |= {_future(rng) for _ in range(rng.randint(1, 3))}
        if rng.random() < 0.04:
            times = {_future(rng) for _ in range(rng.randint(1, 4))}
        ordered = sorted(times)
        rng.shuffle(ordered)
        groups.append(tuple(ordered))
    return Case(number, zone_name, theme, rules, tuple(groups))


def _random_rules(rng: random.Random, forced: Mapping[str, Duration], likely: Iterable[str]) -> KeepRules:
    limits = {"last": 5, "hourly": 30, "daily": 20, "weekly": 10, "monthly": 10, "yearly": 4}
    chance = {name: 0.25 for name in (*limits, *WITHIN_RULES)} | dict.fromkeys(likely, 0.6)
    values: dict[str, object] = {}
    for name, limit in limits.items():
        if rng.random() < chance[name]:
            values[name] = rng.randint(1, limit)
    for name in WITHIN_RULES:
        if rng.random() < chance[name] * 0.8:
            values[name] = _random_within(rng)
    values.update(forced)
    rules = KeepRules(**values)  # type: ignore[arg-type]
    if rules.is_empty():
        rules = KeepRules(daily=rng.randint(1, 7))
    return rules


def _random_within(rng: random.Random) -> Duration:
    if rng.random() < 0.5:
        return Duration.parse(rng.choice(NOTABLE_WITHIN))
    while True:
        parts = (
            (rng.randint(0, 2) if rng.random() < 0.2 else 0, "y"),
            (rng.randint(0, 14) if rng.random() < 0.4 else 0, "mo"),
            (rng.randint(0, 45) if rng.random() < 0.5 else 0, "d"),
            (rng.randint(0, 72) if rng.random() < 0.4 else 0, "h"),
        )
        text = "".join(f"{value}{unit}" for value, unit in parts if value)
        if text:
            return Duration.parse(text)


@functools.cache
def _centres(zone_name: str, theme: str) -> tuple[datetime, ...]:
    zone = ZoneInfo(zone_name)
    walls = {"year end": YEAR_END_WALLS, "month end": MONTH_END_WALLS}.get(theme, YEAR_END_WALLS + MONTH_END_WALLS)
    instants = tuple(wall.replace(tzinfo=zone).astimezone(UTC) for wall in walls)
    return instants if theme != "mixed" else instants + _transitions(zone_name)


@functools.cache
def _transitions(zone_name: str) -> tuple[datetime, ...]:
    """Return the instants in 2024 and 2025 at which ``zone_name`` changes its UTC offset."""
    zone = ZoneInfo(zone_name)

    def offset(epoch: int) -> timedelta | None:
        return datetime.fromtimestamp(epoch, UTC).astimezone(zone).utcoffset()

    found = []
    start = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    for epoch in range(start, end, 3600):
        if offset(epoch) == offset(epoch + 3600):
            continue
        low, high = epoch, epoch + 3600  # offset(low) != offset(high)
        while high - low > 1:
            middle = (low + high) // 2
            if offset(middle) == offset(low):
                low = middle
            else:
                high = middle
        found.append(datetime.fromtimestamp(high, UTC))
    return tuple(found)


def _seconds(instant: datetime) -> datetime:
    return instant.replace(microsecond=0)


def _cluster_group(rng: random.Random, centre: datetime) -> set[datetime]:
    """Items scattered around ``centre``, sometimes with ``centre`` itself as the newest."""
    spreads = rng.sample(SPREADS, rng.randint(1, 3))
    newest_is_centre = rng.random() < 0.3
    times = {centre} if newest_is_centre else set()
    target = rng.randint(1, 25)
    while len(times) < target:
        spread = rng.choice(spreads).total_seconds()
        offset = rng.uniform(-spread, 0 if newest_is_centre else spread)
        times.add(_seconds(centre + timedelta(seconds=round(offset))))
    return {instant for instant in times if instant < GENERATED_AT - CLOCK_MARGIN}


def _dst_group(rng: random.Random, zone_name: str, shift: tuple[int, int, int, int], anchor_at_change: bool) -> set[datetime]:
    """Items whose ``within`` cut-off, ``shift`` before the anchor, falls at a wall time near a DST change.

    With ``anchor_at_change`` the anchor itself is the one at the DST change instead: after a
    fall-back its wall time is ambiguous, and restic re-reads it through Go's AddDate.
    """
    zone = ZoneInfo(zone_name)
    transition = rng.choice(_transitions(zone_name))
    before = (transition - timedelta(seconds=1)).astimezone(zone).utcoffset()
    after = transition.astimezone(zone).utcoffset()
    assert before is not None and after is not None
    # Mostly a wall time that is skipped or repeated, sometimes one just around it.
    margin = timedelta(minutes=rng.choice((0, 0, 0, 30)))
    low = (transition + min(before, after)).replace(tzinfo=None) - margin
    width = abs(after - before) + 2 * margin
    wall = low + timedelta(seconds=rng.randint(0, int(width.total_seconds()) - 1))
    years, months, days, hours = shift
    anchor_wall = _add_calendar(wall, years, months, days)
    if anchor_wall is None:  # e.g. Oct 31 + 1 month
        anchor_wall = wall + timedelta(days=1)
    anchor = anchor_wall.replace(tzinfo=zone).astimezone(UTC) + timedelta(hours=hours)
    if anchor_at_change:
        change = int(abs(after - before).total_seconds())
        anchor = transition + timedelta(seconds=rng.randint(-change, change - 1))
    times = {anchor}
    for _ in range(rng.randint(3, 12)):
        times.add(_seconds(transition + timedelta(seconds=rng.randint(-6 * 3600, 6 * 3600))))
    lower, upper = int((transition + timedelta(hours=6)).timestamp()), int(anchor.timestamp()) - 1
    for _ in range(rng.randint(0, 6) if lower < upper else 0):
        times.add(datetime.fromtimestamp(rng.randint(lower, upper), UTC))
    for _ in range(rng.randint(0, 4)):
        times.add(_seconds(transition - timedelta(seconds=rng.randint(6 * 3600, 60 * 86400))))
    return {instant for instant in times if instant <= anchor and instant < GENERATED_AT - CLOCK_MARGIN}


def _add_calendar(wall: datetime, years: int, months: int, days: int) -> datetime | None:
    month_index = wall.month - 1 + months
    try:
        moved = wall.replace(year=wall.year + years + month_index // 12, month=month_index % 12 + 1)
    except ValueError:
        return None
    return moved + timedelta(days=days)


def _boundary_probes(times: Iterable[datetime], rules: KeepRules, zone: ZoneInfo) -> set[datetime]:
    """Items at, just before and just after every ``within`` cut-off, under several readings of the calendar.

    One cut-off follows Go (``Duration.before``); the others clamp the day of month and
    subtract the hours exactly or on the wall clock, so restic decides which reading is right.
    """
    past = [instant for instant in times if instant < GENERATED_AT - CLOCK_MARGIN]
    if not past:
        return set()
    anchor = max(past)
    probes: set[datetime] = set()
    for name in WITHIN_RULES:
        span = getattr(rules, name)
        if span is None:
            continue
        cutoffs = [span.before(anchor, zone)]
        for hours_on_wall in (True, False):
            cutoffs += _clamped_before(anchor, span, zone, hours_on_wall)
        for cutoff in cutoffs:
            for delta in (-1, 0, 1):
                probe = cutoff + timedelta(seconds=delta)
                if probe < anchor:
                    probes.add(probe)
    return probes


def _clamped_before(anchor: datetime, span: Duration, zone: ZoneInfo, hours_on_wall: bool) -> list[datetime]:
    """Cut-offs under a Python reading: day of month clamped, either DST fold for the wall time."""
    local = anchor.astimezone(zone).replace(tzinfo=None)
    month_index = local.month - 1 - span.months
    year = local.year - span.years + month_index // 12
    month = month_index % 12 + 1
    for day in range(local.day, 27, -1):
        try:
            local = local.replace(year=year, month=month, day=day)
            break
        except ValueError:
            continue
    local -= timedelta(days=span.days)
    exact = timedelta(0)
    if hours_on_wall:
        local -= timedelta(seconds=span.seconds)
    else:
        exact = timedelta(seconds=span.seconds)
    return [local.replace(tzinfo=zone, fold=fold).astimezone(UTC) - exact for fold in (0, 1)]


def _future(rng: random.Random) -> datetime:
    return GENERATED_AT + timedelta(seconds=rng.randint(2 * 86400, 800 * 86400))


CASES = generate_cases(SEED, CASE_COUNT)


# -- the judge --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def restic_runs(oracle: ResticOracle) -> dict[int, ForgetRun | Exception]:
    """restic's verdict on every case, asked in parallel (one ``restic forget`` per case)."""

    def judge(case: Case) -> ForgetRun | Exception:
        try:
            return oracle.forget(case.groups, case.zone_name, case.flags)
        except Exception as error:  # reported by the case's own test
            return error

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        return dict(zip((case.number for case in CASES), pool.map(judge, CASES)))


def test_restic_duration_writes_months_as_m_and_weeks_as_days() -> None:
    assert restic_duration(Duration.parse("1y2mo3w4d5h")) == "1y2m25d5h"
    assert restic_duration(Duration.parse("36h")) == "36h"
    with pytest.raises(ValueError, match="hours"):
        restic_duration(Duration.parse("90m"))


def test_enough_random_cases_per_run() -> None:
    assert len(CASES) >= 50 or "RETENTION_JUDGE_CASES" in os.environ
    assert {case.zone_name for case in CASES} >= set(ZONES)


@pytest.mark.parametrize("case", CASES, ids=[f"case-{case.number:02d}" for case in CASES])
def test_restic_and_apply_rules_keep_the_same_items(case: Case, restic_runs: dict[int, ForgetRun | Exception]) -> None:
    run = restic_runs[case.number]
    if isinstance(run, Exception):
        pytest.fail(f"restic could not judge {_reproduction(case)}:\n{run}")
    # restic's "now" lies somewhere in [started, finished]; with no item there, any such now gives the same anchor.
    for group in case.groups:
        near_now = [instant for instant in group if run.started <= instant <= run.finished]
        assert not near_now, f"generator bug: items at restic's clock {near_now} in {_reproduction(case)}"

    problems = []
    for group_index, (times, verdict) in enumerate(zip(case.groups, run.verdicts)):
        ours, our_kinds = kept_by_us(times, case.rules, case.zone_name, run.started)
        restic_kinds = {index: frozenset(map(reason_kind, reasons)) for index, reasons in verdict.reasons.items()}
        if ours != verdict.kept or our_kinds != restic_kinds:
            problems.append(_explain_group(case, group_index, run, ours, our_kinds, restic_kinds))
    assert not problems, f"{_reproduction(case)}\n{run.command}\n" + "\n".join(problems)


def _reproduction(case: Case) -> str:
    return (
        f"case {case.number} ({case.theme}) of seed {SEED}, zone {case.zone_name}, rules {_rules_text(case.rules)}; "
        f"reproduce with RETENTION_JUDGE_SEED={SEED} RETENTION_JUDGE_CASES={CASE_COUNT} "
        f"pytest tests/policies/test_retention_restic.py -k case-{case.number:02d}"
    )


def _rules_text(rules: KeepRules) -> str:
    parts = [f"{field.name}={getattr(rules, field.name)}" for field in fields(rules) if getattr(rules, field.name)]
    return "KeepRules(" + ", ".join(parts) + ")"


def _explain_group(
    case: Case,
    group_index: int,
    run: ForgetRun,
    ours: frozenset[int],
    our_kinds: Mapping[int, frozenset[str]],
    restic_kinds: Mapping[int, frozenset[str]],
) -> str:
    times = case.groups[group_index]
    zone = ZoneInfo(case.zone_name)
    verdict = run.verdicts[group_index]
    lines = [
        f"group {group_index}: restic keeps {sorted(verdict.kept)}, apply_rules keeps {sorted(ours)} "
        f"(now={run.started.isoformat()}); newest first:"
    ]
    for index in sorted(range(len(times)), key=lambda i: times[i], reverse=True):
        marker = "  " if (index in ours) == (index in verdict.kept) else "!!"
        if our_kinds.get(index, frozenset()) != restic_kinds.get(index, frozenset()):
            marker = marker if marker == "!!" else "~~"
        lines.append(
            f"  {marker} [{index:2d}] {go_time_text(times[index], zone):25s} "
            f"restic={sorted(restic_kinds.get(index, ()))} ours={sorted(our_kinds.get(index, ()))}"
        )
    lines.append("  times (UTC): " + repr([instant.isoformat() for instant in times]))
    return "\n".join(lines)


# -- the harness itself, checked against restic's own behaviour --------------------------


def test_written_snapshots_read_back_like_restic_backup_writes_them(oracle: ResticOracle) -> None:
    """restic lists a snapshot we wrote exactly like one it made with ``backup --time`` in that zone."""
    walls = {
        "UTC": "2024-07-15 10:20:30",
        "Europe/Berlin": "2024-07-15 10:20:30",
        "America/New_York": "2024-01-15 10:20:30",
        "Asia/Kolkata": "2024-01-15 10:20:30",
        "Australia/Lord_Howe": "2024-07-15 10:20:30",
        "Pacific/Chatham": "2024-01-15 10:20:30",
    }

    def compare(zone_name: str) -> tuple[str, str, str]:
        repository = oracle.new_repository()
        oracle.backup(repository, walls[zone_name], zone_name, host="restic")
        instant = datetime.fromisoformat(walls[zone_name]).replace(tzinfo=ZoneInfo(zone_name))
        oracle.write_snapshot(repository, instant.astimezone(UTC), zone_name, host="written")
        listing = oracle.list_snapshots(repository, zone_name)
        by_host = {snapshot["hostname"]: snapshot["time"] for snapshot in listing}
        return zone_name, by_host["restic"], by_host["written"]

    with ThreadPoolExecutor(max_workers=len(walls)) as pool:
        for zone_name, restic_time, written_time in pool.map(compare, walls):
            assert restic_time == written_time, zone_name


def _kept_times(oracle: ResticOracle, times: Sequence[datetime], zone_name: str, flags: list[str]) -> set[datetime]:
    return {times[index] for index in oracle.restic_kept(times, zone_name, flags)}


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_restic_keep_daily_counts_only_days_that_have_snapshots(oracle: ResticOracle) -> None:
    times = [_utc(2024, 5, 9, 10), _utc(2024, 5, 9, 8), _utc(2024, 5, 5, 10), _utc(2024, 5, 2, 10), _utc(2024, 5, 1, 9)]
    assert _kept_times(oracle, times, "UTC", ["--keep-daily", "3"]) == {times[0], times[2], times[3]}


def test_restic_keep_weekly_puts_2021_01_03_in_iso_week_53_of_2020(oracle: ResticOracle) -> None:
    times = [_utc(2021, 1, 4, 12), _utc(2021, 1, 3, 12), _utc(2020, 12, 28, 12), _utc(2020, 12, 27, 12)]
    assert _kept_times(oracle, times, "UTC", ["--keep-weekly", "3"]) == {times[0], times[1], times[3]}


def test_restic_keep_within_1_month_before_march_31_reaches_only_march_2(oracle: ResticOracle) -> None:
    anchor = _utc(2024, 3, 31, 12)
    times = [anchor, _utc(2024, 3, 2, 12, 0, 1), _utc(2024, 3, 2, 12), _utc(2024, 2, 29, 12)]
    assert _kept_times(oracle, times, "UTC", ["--keep-within", "1m"]) == {anchor, times[1]}


def test_restic_keep_within_1_year_before_feb_29_reaches_only_march_1(oracle: ResticOracle) -> None:
    anchor = _utc(2024, 2, 29, 12)
    times = [anchor, _utc(2023, 3, 1, 12, 0, 1), _utc(2023, 3, 1, 12), _utc(2023, 2, 28, 12, 0, 1)]
    assert _kept_times(oracle, times, "UTC", ["--keep-within", "1y"]) == {anchor, times[1]}


def test_restic_keep_within_1_day_across_spring_forward_is_23_hours(oracle: ResticOracle) -> None:
    anchor = datetime(2025, 3, 31, 12, tzinfo=ZoneInfo("Europe/Berlin"))  # 10:00 UTC
    times = [anchor.astimezone(UTC), _utc(2025, 3, 30, 10, 0, 1), _utc(2025, 3, 30, 10), _utc(2025, 3, 30, 9, 0, 1)]
    assert _kept_times(oracle, times, "Europe/Berlin", ["--keep-within", "1d"]) == {times[0], times[1]}


def test_restic_keep_within_anchors_at_newest_past_snapshot_and_keeps_future_ones(oracle: ResticOracle) -> None:
    future = GENERATED_AT + timedelta(days=30)
    anchor = _utc(2024, 6, 10, 12)
    times = [future, anchor, _utc(2024, 6, 9, 12, 0, 1), _utc(2024, 6, 9, 12)]
    assert _kept_times(oracle, times, "UTC", ["--keep-within", "1d"]) == {future, anchor, times[2]}


def test_restic_keep_within_keeps_everything_when_every_snapshot_is_in_the_future(oracle: ResticOracle) -> None:
    times = [GENERATED_AT + timedelta(days=days) for days in (3, 40, 400)]
    assert _kept_times(oracle, times, "UTC", ["--keep-within", "1d"]) == set(times)


def test_restic_keep_last_counts_future_snapshots_too(oracle: ResticOracle) -> None:
    times = [GENERATED_AT + timedelta(days=5), _utc(2024, 6, 10, 12), _utc(2024, 6, 9, 12)]
    assert _kept_times(oracle, times, "UTC", ["--keep-last", "2"]) == {times[0], times[1]}


def test_restic_keep_within_hours_rereads_an_ambiguous_anchor_as_go_does(oracle: ResticOracle) -> None:
    """restic computes ``latest.AddDate(0, 0, 0).Add(-hours)``; AddDate re-reads the anchor's wall time.

    New York's repeated 01:30 is read as EDT (the first one), Berlin's repeated 02:30 as CET
    (the second one), so an anchor at the other occurrence moves by an hour first.
    """
    new_york_anchor = _utc(2025, 11, 2, 6, 30)  # 01:30 EST, the second 01:30
    times = [new_york_anchor, _utc(2025, 11, 2, 4, 0)]  # 00:00 EDT, 2.5 h earlier
    assert _kept_times(oracle, times, "America/New_York", ["--keep-within", "2h"]) == set(times)

    berlin_anchor = _utc(2025, 10, 26, 0, 30)  # 02:30 CEST, the first 02:30
    times = [berlin_anchor, _utc(2025, 10, 25, 23)]
    assert _kept_times(oracle, times, "Europe/Berlin", ["--keep-within", "1h"]) == set()
    assert _kept_times(oracle, times, "Europe/Berlin", ["--keep-within", "2h"]) == {berlin_anchor}
