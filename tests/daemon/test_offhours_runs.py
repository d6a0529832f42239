"""Off-hours through the real CLI and runner, against the contract server (127.0.0.1 only)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from daemon.audit import read_records
from daemon.cli import main
from daemon.config import load_config
from daemon.deployments import DeploymentActor
from daemon.errors import EXIT_OK, StoreBusyError
from daemon.ownership import OwnershipFile, OwnershipState
from daemon.providers import ProviderError
from daemon.providers.bentocloud import BentoCloudProvider
from daemon.runner import apply_once
from policies import Action, Deployment, OffhoursPolicy
from tests.cloud_server import CloudServer

NOW = datetime(2026, 11, 25, 22, 0, tzinfo=timezone.utc)


@pytest.fixture
def cloud() -> Iterator[CloudServer]:
    with CloudServer(token="secret-token") as server:
        server.add_deployment("staging-a")
        server.add_deployment("staging-b")
        server.add_deployment("prod-a")
        yield server


@pytest.fixture
def offhours_config(write_config: Callable[..., Path], cloud: CloudServer, tmp_path: Path) -> Callable[[str], Path]:
    def write(window: str) -> Path:
        return write_config(
            f'[providers.cloud]\ntype = "bentocloud"\nendpoint = "{cloud.url}"\napi_token = "secret-token"\n'
            f'[[offhours]]\nname = "nights"\nprovider = "cloud"\nmatch = ["staging-*"]\n{window}\ngrace_period = "0s"\n'
        )

    return write


def statuses(cloud: CloudServer) -> dict[str, str]:
    return {name: deployment["status"] for (_, name), deployment in sorted(cloud.deployments.items())}


def test_window_opens_then_closes_restarting_exactly_what_was_terminated(
    cloud: CloudServer, offhours_config: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.deployment("staging-b")["status"] = "terminated"  # someone stopped it on purpose
    original = json.dumps(cloud.deployment("staging-a")["latest_revision"]["targets"][0]["config"], sort_keys=True)
    inside = offhours_config('downtime = "always"')
    assert main(["apply", "--config", str(inside), "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert [(a["action"], a["name"], a["outcome"]) for a in result["actions"]] == [("terminate", "staging-a", "ok")]
    assert statuses(cloud) == {"prod-a": "running", "staging-a": "terminated", "staging-b": "terminated"}
    records = OwnershipFile(tmp_path / "state").load().records
    assert list(records) == [("cloud", "staging-a")] and not records[("cloud", "staging-a")].manual

    outside = offhours_config('downtime = "never"')
    assert main(["apply", "--config", str(outside), "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert [(a["action"], a["name"], a["outcome"]) for a in result["actions"]] == [("restart", "staging-a", "ok")]
    assert statuses(cloud) == {"prod-a": "running", "staging-a": "running", "staging-b": "terminated"}
    assert cloud.put_bodies[-1][0] == "staging-a"
    assert json.dumps(cloud.put_bodies[-1][1]["services"], sort_keys=True) == json.dumps(
        json.loads(original)["services"], sort_keys=True
    )
    assert OwnershipFile(tmp_path / "state").load().records == {}
    events = [r["event"] for r in read_records(tmp_path / "log" / "audit.jsonl") if r["event"].startswith("deployment.")]
    assert events == ["deployment.terminate_intended", "deployment.terminated", "deployment.restart_intended", "deployment.restarted"]


def test_manual_terminate_is_never_restarted_by_offhours(
    cloud: CloudServer, offhours_config: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = offhours_config('downtime = "never"')
    assert main(["deployments", "terminate", "staging-a", "--config", str(outside)]) == EXIT_OK
    assert "terminate cloud/staging-a: ok" in capsys.readouterr().out
    assert OwnershipFile(tmp_path / "state").load().records[("cloud", "staging-a")].manual
    assert main(["apply", "--config", str(outside), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["actions"] == []
    assert statuses(cloud)["staging-a"] == "terminated"
    assert main(["deployments", "restart", "staging-a", "--config", str(outside)]) == EXIT_OK
    assert statuses(cloud)["staging-a"] == "running"
    assert OwnershipFile(tmp_path / "state").load().records == {}


def test_two_runs_at_once_never_act_twice(cloud: CloudServer, offhours_config: Callable[[str], Path]) -> None:
    settings = load_config(str(offhours_config('downtime = "always"'))).settings
    results: list[object] = []

    def run() -> None:
        try:
            results.append(apply_once(settings, wait_seconds=30))
        except StoreBusyError as error:  # pragma: no cover - the wait makes this unexpected
            results.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    terminations = [r for r in cloud.requests if r.method == "POST" and r.path.endswith("/terminate")]
    assert sorted(r.path for r in terminations) == ["/api/v2/deployments/staging-a/terminate", "/api/v2/deployments/staging-b/terminate"]
    done = sorted(len([a for a in result.results if a.outcome == "ok"]) for result in results)  # type: ignore[attr-defined]
    assert done == [0, 2]


def test_unlistable_provider_refuses_its_policy_and_exits_1_without_the_token(
    cloud: CloudServer, offhours_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.fail_next(401, times=5)
    assert main(["apply", "--config", str(offhours_config('downtime = "always"')), "--json"]) == 1  # DESIGN: reported, exit 1
    output = capsys.readouterr()
    result = json.loads(output.out)
    assert result["actions"] == []
    assert [refusal["policy"] for refusal in result["refusals"]] == ["nights"]
    assert "could not list its deployments" in result["refusals"][0]["reason"] and "401" in result["refusals"][0]["reason"]
    assert "secret-token" not in output.out + output.err
    assert statuses(cloud)["staging-a"] == "running"


class RefusingProvider:
    """A provider whose actions all fail, as a BentoCloud outage would."""

    name = "cloud"

    def list(self) -> list[Deployment]:
        return [Deployment("cloud", "staging-a", "running", identity="uid-1")]

    def terminate(self, name: str) -> None:
        raise ProviderError("BentoCloud answered 500 four times")

    restart = delete = terminate


def test_failed_terminate_keeps_ownership_unchanged(tmp_path: Path) -> None:
    ownership_file = OwnershipFile(tmp_path)
    state = ownership_file.load()
    policy = OffhoursPolicy(name="nights", provider="cloud", downtime="always")
    actor = DeploymentActor({"cloud": RefusingProvider()}, ownership_file, state, [policy], RefusingProvider().list(), NOW)
    action = Action("terminate", "deployment", "staging-a", None, "nights", ("downtime always",), provider="cloud")
    assert actor.carry_out(action) == ("failed", "BentoCloud answered 500 four times")
    assert state.records == {} and ownership_file.load().records == {}


def test_unwritable_ownership_records_mean_no_terminate(cloud: CloudServer, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the state directory should be")
    ownership_file = OwnershipFile(blocked)
    policy = OffhoursPolicy(name="nights", provider="cloud", downtime="always")
    provider = BentoCloudProvider(name="cloud", endpoint=cloud.url, api_token="secret-token")
    actor = DeploymentActor({"cloud": provider}, ownership_file, OwnershipState(), [policy], provider.list(), NOW)
    action = Action("terminate", "deployment", "staging-a", None, "nights", ("downtime always",), provider="cloud")
    outcome, error = actor.carry_out(action)
    assert outcome == "failed" and "cannot write the ownership record" in (error or "")
    assert statuses(cloud)["staging-a"] == "running"


def test_plan_at_simulates_another_instant_against_current_states(
    cloud: CloudServer, offhours_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = offhours_config('downtime = "Mon-Fri 20:00-07:00 Europe/Berlin, Sat-Sun 00:00-24:00 Europe/Berlin"')
    verdicts = {}
    for label, at in (("weekday night", "2026-11-25T22:00:00+01:00"), ("weekday day", "2026-11-25T12:00:00+01:00"),
                      ("weekend", "2026-11-28T12:00:00+01:00")):
        assert main(["plan", "--config", str(config), "--json", "--at", at]) == EXIT_OK
        verdicts[label] = sorted((a["action"], a["name"]) for a in json.loads(capsys.readouterr().out)["actions"])
    assert verdicts["weekday night"] == verdicts["weekend"] == [("terminate", "staging-a"), ("terminate", "staging-b")]
    assert verdicts["weekday day"] == []
    assert statuses(cloud)["staging-a"] == "running"  # plan changes nothing
    # The human totals count deployment actions too, not only versions.
    assert main(["plan", "--config", str(config), "--at", "2026-11-25T22:00:00+01:00"]) == EXIT_OK
    assert "0 version(s) to delete, 0 B to free; deployment(s) to terminate 2;" in capsys.readouterr().out


def test_a_failing_provider_action_is_audited_and_leaves_ownership_unchanged(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps([{"name": "staging-a", "status": "running"}]))
    config = write_config(
        "[providers.hooks]\ntype = \"command\"\n"
        f"list = \"cat {listing}\"\n"
        "terminate = \"sh -c 'echo cannot reach the unit {name} >&2; exit 3'\"\n"
        "restart = \"true {name}\"\n"
        '[[offhours]]\nname = "nights"\nprovider = "hooks"\ndowntime = "always"\ngrace_period = "0s"\n'
    )
    assert main(["apply", "--config", str(config), "--json"]) == 1
    (action,) = json.loads(capsys.readouterr().out)["actions"]
    assert action["action"] == "terminate" and action["outcome"] == "failed"
    assert "exit" in action["error"] and "cannot reach the unit staging-a" in action["error"]
    failed = [r for r in read_records(tmp_path / "log" / "audit.jsonl") if r["event"] == "deployment.terminate_failed"]
    assert len(failed) == 1 and failed[0]["provider"] == "hooks" and failed[0]["error"] == action["error"]
    assert OwnershipFile(tmp_path / "state").load().records == {}
