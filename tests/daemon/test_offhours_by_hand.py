"""A start by hand during downtime, end to end: the CLI in subprocesses whose clock is set to
the instant of each step (freezegun, ticking), and runs through the runner with an injected clock.

The instants lie in the week after today, so deployments the contract server just touched are
never "recently changed" at them; ``grace_period = "0s"`` keeps grace out of the picture.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from daemon.audit import read_records
from daemon.config import load_config
from daemon.deployments import DeploymentActor
from daemon.errors import EXIT_OK
from daemon.operations import manual_deployment_action
from daemon.ownership import OwnershipFile, OwnershipState
from daemon.providers.bentocloud import BentoCloudProvider
from daemon.providers.process import ProcessProvider
from daemon.runner import apply_once
from policies import Action, OffhoursPolicy
from tests.cloud_server import CloudServer
from tests.helpers.offhours_cli import NIGHTS, cli_at, decided, json_at, kept_reasons, next_wednesday, utc
from tests.helpers.waiting import free_port, serves, wait_until

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "tests" / "slow_server.py"


def started_by_hand(at: datetime, window_begins: datetime) -> re.Pattern[str]:
    # The clock ticks from ``at`` while the CLI starts: the start lands a few seconds later.
    return re.compile(
        rf"started by hand at {utc(at)[:-3]}\d\dZ during this downtime; "
        rf"stays up until the next window \(begins {utc(window_begins)}\)"
    )


@pytest.fixture
def cloud() -> Iterator[CloudServer]:
    with CloudServer(token="secret-token", watchdog_seconds=300) as server:
        server.add_deployment("staging-a")
        server.add_deployment("staging-b")
        yield server


@pytest.fixture
def make_config(write_config: Callable[..., Path], cloud: CloudServer) -> Callable[[str], Path]:
    def make(extra: str = "") -> Path:
        return write_config(
            f'[providers.cloud]\ntype = "bentocloud"\nendpoint = "{cloud.url}"\napi_token = "secret-token"\n'
            f'[[offhours]]\nname = "nights"\nprovider = "cloud"\nmatch = ["staging-*"]\ndowntime = "{NIGHTS}"\n'
            f'grace_period = "0s"\n{extra}'
        )

    return make


@pytest.fixture
def config(make_config: Callable[[str], Path]) -> Path:
    return make_config("")


def statuses(cloud: CloudServer) -> dict[str, str]:
    return {name: deployment["status"] for (_, name), deployment in sorted(cloud.deployments.items())}


def test_restart_by_hand_after_offhours_stays_up_until_the_next_window_through_the_cli(
    cloud: CloudServer, config: Path, tmp_path: Path
) -> None:
    night, noon = next_wednesday(22), next_wednesday(12) + timedelta(days=1)
    next_window = next_wednesday(20) + timedelta(days=1)
    options = ("--config", str(config))
    assert decided(json_at(night, "apply", *options)) == [("terminate", "staging-a"), ("terminate", "staging-b")]

    started = night + timedelta(minutes=30)
    code, stdout, stderr = cli_at(started, "deployments", "restart", "staging-a", *options)
    assert (code, stdout) == (EXIT_OK, "restart cloud/staging-a: ok\n"), stderr
    assert statuses(cloud) == {"staging-a": "running", "staging-b": "terminated"}

    later = night + timedelta(hours=1)
    for command in ("apply", "plan"):
        result = json_at(later, command, *options)
        assert decided(result) == [], command
        (reason,) = kept_reasons(result, "staging-a")
        assert started_by_hand(started, next_window).fullmatch(reason), reason
    assert statuses(cloud)["staging-a"] == "running"
    (row,) = [row for row in json_at(later, "deployments", "list", *options) if row["name"] == "staging-a"]
    assert row["owner"] == "started by hand" and row["started_by_hand_at"].startswith(utc(started)[:-3])
    (intent,) = [r for r in read_records(tmp_path / "log" / "audit.jsonl") if r["event"] == "deployment.restart_intended"]
    assert intent["reasons"][1] == (f"in downtime {NIGHTS} (policy nights): off-hours leaves it up until "
                                    f"the next window (begins {utc(next_window)})")

    # `plan --at` the next window (today's clock) shows what the run then will do.
    plan = subprocess.run([sys.executable, "-m", "daemon", "plan", *options, "--json", "--at", next_window.isoformat()],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert decided(json.loads(plan.stdout)) == [("terminate", "staging-a")], plan.stderr

    # Thursday noon: ours is restarted, the start by hand has run its course.
    assert decided(json_at(noon, "apply", *options)) == [("restart", "staging-b")]
    assert OwnershipFile(tmp_path / "state").load().hand_starts == {}
    result = json_at(next_window, "apply", *options)
    assert [(a["action"], a["name"], a["outcome"]) for a in result["actions"]] == [
        ("terminate", "staging-a", "ok"), ("terminate", "staging-b", "ok")
    ]
    state = OwnershipFile(tmp_path / "state").load()
    assert sorted(state.records) == [("cloud", "staging-a"), ("cloud", "staging-b")] and state.hand_starts == {}
    assert not state.records[("cloud", "staging-a")].manual


def test_restart_by_hand_of_a_deployment_never_touched_keeps_it_up_through_the_cli(
    cloud: CloudServer, config: Path, tmp_path: Path
) -> None:
    night = next_wednesday(22)
    options = ("--config", str(config))
    code, stdout, stderr = cli_at(night, "deployments", "restart", "staging-a", *options)
    assert (code, stdout) == (EXIT_OK, "restart cloud/staging-a: ok\n"), stderr
    assert not [r for r in cloud.put_bodies if r[0] == "staging-a"]  # it was up: nothing to start
    result = json_at(night + timedelta(minutes=5), "apply", *options)
    assert decided(result) == [("terminate", "staging-b")]
    (reason,) = kept_reasons(result, "staging-a")
    assert started_by_hand(night, next_wednesday(20) + timedelta(days=1)).fullmatch(reason), reason
    assert statuses(cloud) == {"staging-a": "running", "staging-b": "terminated"}


def test_restart_by_hand_outside_downtime_records_nothing(cloud: CloudServer, config: Path, tmp_path: Path) -> None:
    settings = load_config(str(config)).settings
    noon = next_wednesday(12)
    cloud.deployment("staging-a")["status"] = "terminated"
    result = manual_deployment_action(settings, "restart", "staging-a", None, clock=lambda: noon)
    assert [r.outcome for r in result.results] == ["ok"]
    assert result.plan.actions[0].reasons == ("restart requested by hand",)
    assert OwnershipFile(tmp_path / "state").load().hand_starts == {}
    night = apply_once(settings, clock=lambda: next_wednesday(22))
    assert [(r.action.action, r.action.name) for r in night.results] == [("terminate", "staging-a"), ("terminate", "staging-b")]


def test_start_in_the_cloud_ui_after_offhours_stays_up_and_a_later_stop_by_someone_stays(
    cloud: CloudServer, config: Path, tmp_path: Path
) -> None:
    settings = load_config(str(config)).settings

    def apply_at(at: datetime) -> list[tuple[str, str]]:
        return [(r.action.action, r.action.name) for r in apply_once(settings, clock=lambda: at).results]

    night = next_wednesday(22)
    assert apply_at(night) == [("terminate", "staging-a"), ("terminate", "staging-b")]
    cloud.deployment("staging-a")["status"] = "running"  # someone starts it in BentoCloud's UI: same uid
    assert apply_at(night + timedelta(hours=1)) == []
    assert apply_at(next_wednesday(12) + timedelta(days=1)) == [("restart", "staging-b")]
    dropped = [r["detail"] for r in read_records(tmp_path / "log" / "audit.jsonl") if r["event"] == "ownership.dropped"]
    assert dropped == ["cloud/staging-a: started again by someone and its downtime window has ended; "
                       "the stop by retentiond no longer applies"]
    cloud.deployment("staging-a")["status"] = "terminated"  # someone stops it in the afternoon
    assert apply_at(next_wednesday(16) + timedelta(days=1)) == []
    assert statuses(cloud) == {"staging-a": "terminated", "staging-b": "running"}
    assert apply_at(next_wednesday(20) + timedelta(days=1)) == [("terminate", "staging-b")]


def test_daemon_down_across_the_window_edges_terminates_at_the_next_window(
    cloud: CloudServer, config: Path, tmp_path: Path
) -> None:
    settings = load_config(str(config)).settings
    night = next_wednesday(22)
    apply_once(settings, clock=lambda: night)
    manual_deployment_action(settings, "restart", "staging-a", None, clock=lambda: night + timedelta(minutes=10))
    # No run on Thursday morning or noon: the next one is inside Thursday's window.
    result = apply_once(settings, clock=lambda: next_wednesday(23) + timedelta(days=1))
    assert [(r.action.action, r.action.name, r.outcome) for r in result.results] == [("terminate", "staging-a", "ok")]
    state = OwnershipFile(tmp_path / "state").load()
    assert state.hand_starts == {} and list(state.records) == [("cloud", "staging-a"), ("cloud", "staging-b")]


def test_manual_terminate_then_restart_by_hand_in_downtime_then_enforce(
    cloud: CloudServer, make_config: Callable[[str], Path], config: Path, tmp_path: Path
) -> None:
    settings = load_config(str(config)).settings
    night = next_wednesday(22)
    manual_deployment_action(settings, "terminate", "staging-a", None, clock=lambda: night)
    assert OwnershipFile(tmp_path / "state").load().records[("cloud", "staging-a")].manual
    manual_deployment_action(settings, "restart", "staging-a", None, clock=lambda: night + timedelta(minutes=1))
    state = OwnershipFile(tmp_path / "state").load()
    assert state.records == {} and list(state.hand_starts) == [("cloud", "staging-a")]
    assert [r.action.name for r in apply_once(settings, clock=lambda: night + timedelta(minutes=2)).results] == ["staging-b"]
    enforcing = load_config(str(make_config("enforce = true\n"))).settings
    result = apply_once(enforcing, clock=lambda: night + timedelta(minutes=3))
    assert [(r.action.name, r.action.reasons[-1].endswith("enforce = true terminates it anyway")) for r in result.results] == [
        ("staging-a", True)
    ]
    assert OwnershipFile(tmp_path / "state").load().hand_starts == {}


@pytest.fixture
def process_config(write_config: Callable[..., Path], tmp_path: Path) -> Iterator[Path]:
    port = free_port()
    path = write_config(
        '[providers.agent]\ntype = "process"\n[[providers.agent.deployments]]\nname = "web"\n'
        f'command = ["{sys.executable}", "{SERVER}", "{port}"]\nlog_file = "{tmp_path / "web.log"}"\n'
        f'labels = {{ port = "{port}" }}\n'
        f'[[offhours]]\nname = "nights"\nprovider = "agent"\ndowntime = "{NIGHTS}"\ngrace_period = "0s"\n'
    )
    yield path
    settings = load_config(str(path)).settings
    ProcessProvider(name="agent", deployments=settings.providers["agent"].deployments,  # type: ignore[union-attr]
                    state_dir=tmp_path / "state" / "processes").terminate("web")


def test_restart_by_hand_of_a_local_process_in_downtime_stays_up_under_its_new_pid(process_config: Path, tmp_path: Path) -> None:
    night = next_wednesday(22)
    options = ("--config", str(process_config))
    port = int(re.findall(r'port = "(\d+)"', process_config.read_text())[0])
    state_file = tmp_path / "state" / "processes" / "processes-agent.json"

    def identity() -> str:
        process = json.loads(state_file.read_text())["processes"]["web"]
        return f"{process['pid']}:{process['create_time']}"

    code, stdout, stderr = cli_at(night - timedelta(hours=3), "deployments", "restart", "web", *options)
    assert (code, stdout) == (EXIT_OK, "restart agent/web: ok\n"), stderr
    assert OwnershipFile(tmp_path / "state").load().hand_starts == {}  # outside downtime: nothing to record
    wait_until(lambda: serves(port))
    first = identity()
    assert decided(json_at(night, "apply", *options)) == [("terminate", "web")]
    wait_until(lambda: not serves(port))

    code, stdout, stderr = cli_at(night + timedelta(minutes=30), "deployments", "restart", "web", *options)
    assert (code, stdout) == (EXIT_OK, "restart agent/web: ok\n"), stderr
    wait_until(lambda: serves(port))
    (hand_start,) = OwnershipFile(tmp_path / "state").load().hand_starts.values()
    assert hand_start.identity == identity() != first
    result = json_at(night + timedelta(hours=1), "apply", *options)
    assert decided(result) == [] and serves(port)
    assert kept_reasons(result, "web")[0].startswith("started by hand at")
    result = json_at(next_wednesday(20) + timedelta(days=1), "apply", *options)
    assert [(a["action"], a["name"], a["outcome"]) for a in result["actions"]] == [("terminate", "web", "ok")]
    wait_until(lambda: not serves(port))


def test_restart_by_hand_in_downtime_is_refused_when_its_record_cannot_be_written(cloud: CloudServer, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the state directory should be")
    policy = OffhoursPolicy(name="nights", provider="cloud", match=("staging-*",), downtime=NIGHTS)
    provider = BentoCloudProvider(name="cloud", endpoint=cloud.url, api_token="secret-token")
    cloud.deployment("staging-a")["status"] = "terminated"
    night = next_wednesday(22)
    actor = DeploymentActor({"cloud": provider}, OwnershipFile(blocked), OwnershipState(), [policy], provider.list(), night)
    action = Action("restart", "deployment", "staging-a", None, "manual", ("restart requested by hand",), provider="cloud")
    outcome, error = actor.carry_out(action)
    # Restarted without its record, the next run would terminate it again at once.
    assert outcome == "failed" and "cannot write the ownership record" in (error or "") and "not restarted" in (error or "")
    assert statuses(cloud)["staging-a"] == "terminated" and actor.state.hand_starts == {}
