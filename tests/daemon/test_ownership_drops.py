"""Every rule by which ownership records are dropped or kept, through ``OwnershipState.observe``,
and the drop of a stop by hand end to end: the CLI in subprocesses whose clock is set to each step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.audit import read_records
from daemon.ownership import OwnershipFile, OwnershipState
from policies import Deployment, HandStart, OffhoursPolicy, Ownership
from tests.cloud_server import CloudServer
from tests.helpers.offhours_cli import NIGHTS, cli_at, decided, json_at, kept_reasons, next_wednesday, utc

BERLIN = ZoneInfo("Europe/Berlin")
POLICY = OffhoursPolicy(name="nights", provider="cloud", match=("staging-*",), downtime=NIGHTS)
WED_NOON = datetime(2026, 11, 25, 12, 0, tzinfo=BERLIN)
WED_NIGHT = datetime(2026, 11, 25, 22, 0, tzinfo=BERLIN)
THU_MORNING = datetime(2026, 11, 26, 7, 0, tzinfo=BERLIN)
THU_NOON = datetime(2026, 11, 26, 12, 0, tzinfo=BERLIN)
KEY = ("cloud", "staging-a")


def listed(status: str = "running", identity: str = "uid-a", provider: str = "cloud", name: str = "staging-a") -> Deployment:
    return Deployment(provider, name, status, identity=identity)


def ours(identity: str = "uid-a", provider: str = "cloud", name: str = "staging-a") -> Ownership:
    return Ownership(provider, name, "nights", WED_NIGHT, THU_MORNING, identity)


def by_hand(at: datetime, identity: str = "uid-a") -> Ownership:
    return Ownership("cloud", "staging-a", "manual", at, None, identity, manual=True)


def observe(record: Ownership, deployments: list[Deployment], now: datetime) -> tuple[list[str], OwnershipState]:
    state = OwnershipState(records={(record.provider, record.name): record})
    return state.observe(deployments, ["cloud"], now, [POLICY]), state


@pytest.mark.parametrize("record", [ours(), by_hand(WED_NIGHT)], ids=["ours", "by-hand"])
def test_a_record_of_a_deployment_no_longer_listed_is_dropped_as_deleted_by_someone_else(record: Ownership) -> None:
    # Even inside the window of the stop: the deployment itself is gone.
    assert observe(record, [listed(name="staging-b")], WED_NIGHT + timedelta(hours=1)) == (
        ["cloud/staging-a: deleted by someone else"], OwnershipState()
    )


@pytest.mark.parametrize("status", ["running", "terminated"])
@pytest.mark.parametrize("record", [ours(), by_hand(WED_NIGHT)], ids=["ours", "by-hand"])
def test_a_record_of_a_namesake_with_another_identity_is_dropped_as_replaced(record: Ownership, status: str) -> None:
    dropped, state = observe(record, [listed(status, identity="uid-new")], WED_NIGHT + timedelta(hours=1))
    assert dropped == ["cloud/staging-a: replaced by a new deployment of the same name"]
    assert state.records == {}


@pytest.mark.parametrize(("recorded", "reported"), [("", "uid-new"), ("uid-a", ""), ("uid-a", "uid-a")])
def test_a_record_is_kept_while_the_identities_do_not_prove_a_replacement(recorded: str, reported: str) -> None:
    # An unknown identity on either side is the same deployment (a file written before identities existed).
    dropped, state = observe(ours(identity=recorded), [listed("terminated", identity=reported)], THU_NOON)
    assert dropped == [] and list(state.records) == [KEY]


@pytest.mark.parametrize("status", ["terminated", "failed", "image-build-failed", "terminating", "unknown"])
@pytest.mark.parametrize("record", [ours(), by_hand(WED_NOON)], ids=["ours", "by-hand"])
def test_a_record_of_a_deployment_that_does_not_run_is_kept_whatever_the_hour(record: Ownership, status: str) -> None:
    for now in (WED_NIGHT + timedelta(hours=1), THU_NOON, THU_NOON + timedelta(days=40)):
        dropped, state = observe(record, [listed(status)], now)
        assert dropped == [] and state.records == {KEY: record}, now


@pytest.mark.parametrize("status", ["running", "deploying", "unhealthy", "scaled-to-zero"])
def test_a_stop_by_hand_outside_downtime_is_dropped_as_soon_as_the_deployment_runs_again(status: str) -> None:
    # Stopped by hand at noon (no downtime window was on), started again by someone an hour later.
    dropped, state = observe(by_hand(WED_NOON), [listed(status)], WED_NOON + timedelta(hours=1))
    assert dropped == ["cloud/staging-a: started again by someone; the manual stop no longer applies"]
    assert state.records == {}


def test_a_stop_by_hand_of_a_deployment_no_policy_selects_is_dropped_once_it_runs_again() -> None:
    record = Ownership("cloud", "prod-a", "manual", WED_NIGHT, None, "uid-p", manual=True)
    dropped, state = observe(record, [listed(identity="uid-p", name="prod-a")], WED_NIGHT + timedelta(minutes=5))
    assert dropped == ["cloud/prod-a: started again by someone; the manual stop no longer applies"]
    assert state.records == {}


def test_a_stop_by_hand_in_downtime_started_again_holds_until_that_window_ends_then_is_dropped() -> None:
    record = by_hand(WED_NIGHT)
    state = OwnershipState(records={KEY: record})
    assert state.observe([listed()], ["cloud"], THU_MORNING - timedelta(seconds=1), [POLICY]) == []
    assert state.records == {KEY: record}
    assert state.observe([listed()], ["cloud"], THU_MORNING, [POLICY]) == [
        "cloud/staging-a: started again by someone; the manual stop no longer applies"
    ]
    assert state.records == {}


def test_our_stop_started_again_holds_until_its_recorded_window_end_then_is_dropped() -> None:
    state = OwnershipState(records={KEY: ours()})
    assert state.observe([listed()], ["cloud"], THU_MORNING - timedelta(seconds=1), [POLICY]) == []
    assert state.observe([listed()], ["cloud"], THU_MORNING, [POLICY]) == [
        "cloud/staging-a: started again by someone and its downtime window has ended; the stop by retentiond no longer applies"
    ]
    assert state.records == {}


def test_a_provider_that_could_not_be_listed_changes_nothing_of_its_own() -> None:
    other = ours(provider="agent", name="web")
    state = OwnershipState(
        records={KEY: ours(), ("agent", "web"): other},
        hand_starts={("agent", "api"): HandStart("agent", "api", WED_NIGHT, "pid-1")},
        inactive_since={("agent", "web"): WED_NIGHT, KEY: WED_NIGHT},
    )
    # cloud answered (staging-a is gone there); agent did not, so nothing of agent's is judged by its absence.
    assert state.observe([], ["cloud"], THU_NOON, [POLICY]) == ["cloud/staging-a: deleted by someone else"]
    assert state.records == {("agent", "web"): other}
    assert list(state.hand_starts) == [("agent", "api")]
    assert state.inactive_since == {("agent", "web"): WED_NIGHT}


def test_inactive_since_is_when_a_deployment_was_first_seen_down_and_goes_when_it_runs_or_vanishes() -> None:
    state = OwnershipState()
    first, later = WED_NIGHT, WED_NIGHT + timedelta(hours=3)
    down = [listed("terminated"), listed("failed", name="staging-b"), listed("image-build-failed", name="staging-c")]
    assert state.observe(down, ["cloud"], first) == []
    expected = {("cloud", name): first for name in ("staging-a", "staging-b", "staging-c")}
    assert state.inactive_since == expected
    assert state.observe(down, ["cloud"], later) == []
    assert state.inactive_since == expected  # the first sighting counts, not the latest
    annotated = state.annotate([listed("terminated")])
    assert annotated[0].inactive_since == first
    # staging-a runs again, staging-b is being stopped (not down yet), staging-c is gone.
    state.observe([listed("running"), listed("terminating", name="staging-b")], ["cloud"], later)
    assert state.inactive_since == {}
    state.observe([listed("terminated")], ["cloud"], THU_NOON)
    assert state.inactive_since == {KEY: THU_NOON}  # down again: counted from this sighting


# End to end: a stop by hand through the CLI, the deployment started again in the provider, then runs.

@pytest.fixture
def cloud() -> Iterator[CloudServer]:
    with CloudServer(token="secret-token", watchdog_seconds=300) as server:
        for name in ("staging-a", "staging-b", "staging-c"):
            server.add_deployment(name)
        yield server


@pytest.fixture
def config(write_config: Callable[..., Path], cloud: CloudServer) -> Path:
    return write_config(
        f'[providers.cloud]\ntype = "bentocloud"\nendpoint = "{cloud.url}"\napi_token = "secret-token"\n'
        f'[[offhours]]\nname = "nights"\nprovider = "cloud"\nmatch = ["staging-*"]\ndowntime = "{NIGHTS}"\n'
        'grace_period = "0s"\n'
    )


def test_stops_by_hand_started_again_are_forgotten_in_uptime_and_downtime_acts_on_them_as_usual(
    cloud: CloudServer, config: Path, tmp_path: Path
) -> None:
    options = ("--config", str(config))
    noon, evening, night = next_wednesday(12), next_wednesday(21), next_wednesday(22)
    thursday_noon, thursday_night = noon + timedelta(days=1), night + timedelta(days=1)
    ownership = OwnershipFile(tmp_path / "state")

    def dropped() -> list[str]:
        return [r["detail"] for r in read_records(tmp_path / "log" / "audit.jsonl") if r["event"] == "ownership.dropped"]

    # staging-a: stopped by hand at noon (uptime), started again in the provider's UI (same uid).
    code, stdout, stderr = cli_at(noon, "deployments", "terminate", "staging-a", *options)
    assert (code, stdout) == (0, "terminate cloud/staging-a: ok\n"), stderr
    assert ownership.load().records[("cloud", "staging-a")].manual
    cloud.deployment("staging-a")["status"] = "running"
    assert decided(json_at(noon + timedelta(hours=1), "apply", *options)) == []
    assert dropped() == ["cloud/staging-a: started again by someone; the manual stop no longer applies"]
    assert ownership.load().records == {}

    # staging-c: stopped by hand in downtime, started again in the same window: left up until it ends.
    code, stdout, stderr = cli_at(evening, "deployments", "terminate", "staging-c", *options)
    assert (code, stdout) == (0, "terminate cloud/staging-c: ok\n"), stderr
    cloud.deployment("staging-c")["status"] = "running"
    result = json_at(night, "apply", *options)
    assert [(a["action"], a["name"], a["reasons"], a["outcome"]) for a in result["actions"]] == [
        ("terminate", name, [f"downtime {NIGHTS}"], "ok") for name in ("staging-a", "staging-b")
    ]
    (reason,) = kept_reasons(result, "staging-c")
    assert reason.startswith(f"started by hand during this downtime (it was terminated by hand at {utc(evening)[:-3]}")
    records = ownership.load().records
    assert {name: record.manual for (_, name), record in records.items()} == {"staging-a": False, "staging-b": False, "staging-c": True}

    # Thursday noon: ours are restarted; the stop by hand of staging-c has run its course and is forgotten.
    result = json_at(thursday_noon, "apply", *options)
    assert [(a["action"], a["name"], a["outcome"]) for a in result["actions"]] == [
        ("restart", "staging-a", "ok"), ("restart", "staging-b", "ok")
    ]
    assert dropped()[1:] == ["cloud/staging-c: started again by someone; the manual stop no longer applies"]
    assert ownership.load().records == {}
    rows = {row["name"]: row for row in json_at(thursday_noon, "deployments", "list", *options)}
    assert [rows[name]["owner"] for name in ("staging-a", "staging-b", "staging-c")] == [None, None, None]

    # Thursday night: all three are stopped as usual, none of them as started by hand.
    result = json_at(thursday_night, "apply", *options)
    assert [(a["action"], a["name"], a["outcome"]) for a in result["actions"]] == [
        ("terminate", name, "ok") for name in ("staging-a", "staging-b", "staging-c")
    ]
    assert {name: record.manual for (_, name), record in ownership.load().records.items()} == {
        "staging-a": False, "staging-b": False, "staging-c": False
    }
