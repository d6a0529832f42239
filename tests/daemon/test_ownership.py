"""ownership.json: old files still load, starts by hand survive a reload, and stale records are dropped."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon.ownership import OwnershipFile, OwnershipState
from policies import Deployment, HandStart, OffhoursPolicy, Ownership

BERLIN = ZoneInfo("Europe/Berlin")
NIGHTS = OffhoursPolicy(name="nights", provider="cloud", match=("staging-*",),
                        downtime="Mon-Fri 20:00-07:00 Europe/Berlin, Sat-Sun 00:00-24:00 Europe/Berlin")
WED_NIGHT = datetime(2026, 11, 25, 22, 0, tzinfo=BERLIN)
THU_MORNING = datetime(2026, 11, 26, 7, 0, tzinfo=BERLIN)
THU_NOON = datetime(2026, 11, 26, 12, 0, tzinfo=BERLIN)


def running(name: str = "staging-a", identity: str = "uid-a", status: str = "running") -> Deployment:
    return Deployment("cloud", name, status, identity=identity)


def test_a_file_written_before_starts_by_hand_existed_loads_and_gains_them_on_save(tmp_path: Path) -> None:
    old = {"records": [{"provider": "cloud", "name": "staging-b", "policy": "nights", "terminated_at": WED_NIGHT.isoformat(),
                        "window_ends_at": THU_MORNING.isoformat(), "identity": "uid-b", "manual": False}],
           "inactive_since": {"cloud/staging-b": WED_NIGHT.isoformat()}}
    ownership_file = OwnershipFile(tmp_path)
    ownership_file.path.write_text(json.dumps(old))
    state = ownership_file.load()
    assert list(state.records) == [("cloud", "staging-b")] and state.hand_starts == {}
    state.hand_starts[("cloud", "staging-a")] = HandStart("cloud", "staging-a", WED_NIGHT, "uid-a")
    ownership_file.save(state)
    again = OwnershipFile(tmp_path).load()
    assert again == state
    assert json.loads(ownership_file.path.read_text())["started_by_hand"] == [
        {"provider": "cloud", "name": "staging-a", "started_at": WED_NIGHT.isoformat(), "identity": "uid-a"}
    ]


def test_a_start_by_hand_is_dropped_when_its_window_ends_or_the_deployment_is_replaced_or_deleted(tmp_path: Path) -> None:
    state = OwnershipState(hand_starts={
        ("cloud", name): HandStart("cloud", name, WED_NIGHT, f"uid-{name[-1]}") for name in ("staging-a", "staging-b", "staging-c")
    })
    listing = [running("staging-a"), running("staging-b", identity="uid-new")]
    dropped = state.observe(listing, ["cloud"], WED_NIGHT + timedelta(hours=1), [NIGHTS])
    assert dropped == ["cloud/staging-b: started by hand: replaced by a new deployment of the same name",
                       "cloud/staging-c: started by hand: deleted by someone else"]
    assert list(state.hand_starts) == [("cloud", "staging-a")]
    assert state.observe(listing, ["cloud"], THU_MORNING - timedelta(seconds=1), [NIGHTS]) == []
    assert state.observe(listing, ["cloud"], THU_MORNING, [NIGHTS]) == [
        "cloud/staging-a: started by hand: the downtime window it was started by hand in has ended"
    ]
    assert state.hand_starts == {}


def test_a_provider_that_could_not_be_listed_keeps_its_starts_by_hand(tmp_path: Path) -> None:
    state = OwnershipState(hand_starts={("cloud", "staging-a"): HandStart("cloud", "staging-a", WED_NIGHT, "uid-a")})
    assert state.observe([], [], THU_NOON, [NIGHTS]) == []
    assert list(state.hand_starts) == [("cloud", "staging-a")]


def test_our_record_of_a_deployment_started_by_someone_lasts_only_until_its_window_ends() -> None:
    ours = Ownership("cloud", "staging-a", "nights", WED_NIGHT, THU_MORNING, "uid-a")
    state = OwnershipState(records={("cloud", "staging-a"): ours})
    # Inside the window the record is what keeps the start by hand respected.
    assert state.observe([running()], ["cloud"], WED_NIGHT + timedelta(hours=1), [NIGHTS]) == []
    # After it, it could only make off-hours undo a later stop by someone else.
    assert state.observe([running()], ["cloud"], THU_NOON, [NIGHTS]) == [
        "cloud/staging-a: started again by someone and its downtime window has ended; "
        "the stop by retentiond no longer applies"
    ]
    # Terminated as we left it, the record stays, whatever the hour.
    state = OwnershipState(records={("cloud", "staging-a"): ours})
    assert state.observe([running(status="terminated")], ["cloud"], THU_NOON, [NIGHTS]) == []


def test_a_stop_by_hand_started_again_in_its_own_window_is_kept_until_that_window_ends() -> None:
    manual = Ownership("cloud", "staging-a", "manual", WED_NIGHT, None, "uid-a", manual=True)
    state = OwnershipState(records={("cloud", "staging-a"): manual})
    assert state.observe([running()], ["cloud"], WED_NIGHT + timedelta(hours=1), [NIGHTS]) == []
    assert state.observe([running()], ["cloud"], THU_NOON, [NIGHTS]) == [
        "cloud/staging-a: started again by someone; the manual stop no longer applies"
    ]
