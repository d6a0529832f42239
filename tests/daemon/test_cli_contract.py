"""The command names of the CLI contract, each reaching its own handler.

A renamed subcommand, or two handlers swapped in the dispatch, fails here: every command's
``--help`` must be that very command's usage, and every command is run for real (the CLI in
a subprocess, on a small store) and checked on an output that only its own handler produces.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.audit import read_records
from tests.cloud_server import CloudServer
from tests.helpers.daemon_process import Daemon

REPO = Path(__file__).resolve().parents[2]

# The contract: the CLI block of DESIGN.md ("### CLI"), copied. Change it only with DESIGN.md.
#   retentiond run | plan | apply | status | audit show|verify | window SPEC
#              | deployments list|terminate NAME|restart NAME | restore NAME:VERSION | check-config
CONTRACT: dict[str, tuple[str, ...]] = {
    "run": (),
    "plan": (),
    "apply": (),
    "status": (),
    "audit": ("show", "verify"),
    "window": (),
    "deployments": ("list", "terminate", "restart"),
    "restore": (),
    "check-config": (),
}
COMMAND_LINES = [(command, *((sub,) if sub else ())) for command, subs in CONTRACT.items() for sub in (subs or ("",))]
WINDOW = "Mon-Fri 20:00-07:00 Europe/Berlin"


def retentiond(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *arguments],
        capture_output=True, text=True, cwd=REPO, timeout=120, env={**os.environ, **(env or {})},
    )


def offered_choices(*arguments: str) -> list[str]:
    """Return the commands the CLI offers after ``arguments``, from its answer to an unknown one."""
    result = retentiond(*arguments, "no-such-command")
    assert result.returncode == 2
    (choices,) = re.findall(r"invalid choice: .*\(choose from (.*)\)", result.stderr)
    return [choice.strip().strip("'") for choice in choices.split(",")]


def test_the_cli_offers_exactly_the_commands_of_the_contract() -> None:
    assert sorted(offered_choices()) == sorted(CONTRACT)
    for command, subcommands in CONTRACT.items():
        if subcommands:
            assert sorted(offered_choices(command)) == sorted(subcommands), command


@pytest.mark.parametrize("command_line", COMMAND_LINES, ids=" ".join)
def test_each_command_answers_help_with_its_own_usage(command_line: tuple[str, ...]) -> None:
    result = retentiond(*command_line, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: retentiond {' '.join(command_line)} [-h]"), result.stdout.splitlines()[:1]


# Each command for real, on one small store: iris v0 (newest) .. v4, keep_last = 2; a cloud provider.

@pytest.fixture
def cloud() -> Iterator[CloudServer]:
    with CloudServer(token="secret-token") as server:
        server.add_deployment("staging-a")
        yield server


@pytest.fixture
def config(write_config: Callable[..., Path], five_versions: list[str], cloud: CloudServer) -> Path:
    return write_config(
        '[[retention]]\nname = "ci"\nkeep_last = 2\n'
        f'[providers.cloud]\ntype = "bentocloud"\nendpoint = "{cloud.url}"\napi_token = "secret-token"\n'
    )


def run_json(*arguments: str) -> Any:
    result = retentiond(*arguments, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def versions(home: Path) -> set[str]:
    return {entry.name for entry in (home / "models" / "iris").iterdir() if entry.is_dir()}


def test_plan_reaches_the_planner_which_changes_nothing(config: Path, home: Path, tmp_path: Path) -> None:
    plan = run_json("plan", "--config", str(config))
    assert {"at", "actions", "kept", "warnings"} <= set(plan)
    assert sorted((a["action"], a["version"]) for a in plan["actions"]) == [("delete", "v2"), ("delete", "v3"), ("delete", "v4")]
    assert all("outcome" not in action for action in plan["actions"])
    assert versions(home) == {"v0", "v1", "v2", "v3", "v4"}
    assert not (tmp_path / "log" / "audit.jsonl").exists()


def test_apply_reaches_the_executor_which_deletes_and_audits(config: Path, home: Path, tmp_path: Path) -> None:
    result = run_json("apply", "--config", str(config))
    assert sorted((a["version"], a["outcome"]) for a in result["actions"]) == [("v2", "ok"), ("v3", "ok"), ("v4", "ok")]
    assert versions(home) == {"v0", "v1"}
    events = [record["event"] for record in read_records(tmp_path / "log" / "audit.jsonl")]
    assert events[0] == "run.started" and events.count("artifact.deleted") == 3


def test_status_reaches_the_status_report(config: Path, home: Path) -> None:
    report = run_json("status", "--config", str(config))
    assert {"store", "disk", "trash", "policies"} <= set(report)
    assert report["store"]["versions"] == 5 and [policy["name"] for policy in report["policies"]] == ["ci"]


def test_audit_show_prints_the_records_and_audit_verify_checks_the_chain(config: Path, tmp_path: Path) -> None:
    assert retentiond("apply", "--config", str(config)).returncode == 0
    written = list(read_records(tmp_path / "log" / "audit.jsonl"))
    shown = retentiond("audit", "show", "--config", str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    assert [json.loads(line) for line in shown.stdout.splitlines()] == written
    report = run_json("audit", "verify", "--config", str(config))
    assert (report["intact"], report["records"], report["problem"]) == (True, len(written), None)


def test_window_reaches_the_time_spec() -> None:
    answer = run_json("window", WINDOW, "--at", "2026-11-25T21:00:00Z", "--at", "2026-11-25T12:00:00+01:00")
    assert answer == {"spec": WINDOW, "instants": [
        {"at": "2026-11-25T21:00:00+00:00", "active": True, "next_change": "2026-11-26T06:00:00+00:00"},
        {"at": "2026-11-25T12:00:00+01:00", "active": False, "next_change": "2026-11-25T20:00:00+01:00"},
    ]}


def test_deployments_list_terminate_and_restart_reach_the_provider(config: Path, cloud: CloudServer) -> None:
    (row,) = run_json("deployments", "list", "--config", str(config))
    assert (row["provider"], row["name"], row["status"]) == ("cloud", "staging-a", "running")
    terminated = retentiond("deployments", "terminate", "staging-a", "--config", str(config))
    assert (terminated.returncode, terminated.stdout) == (0, "terminate cloud/staging-a: ok\n"), terminated.stderr
    assert cloud.deployment("staging-a")["status"] == "terminated"
    restarted = retentiond("deployments", "restart", "staging-a", "--config", str(config))
    assert (restarted.returncode, restarted.stdout) == (0, "restart cloud/staging-a: ok\n"), restarted.stderr
    assert cloud.deployment("staging-a")["status"] == "running"


def test_restore_takes_a_version_back_out_of_the_trash(config: Path, home: Path) -> None:
    # Keep what apply deletes in the trash for a week, so that there is something to restore.
    config.write_text(config.read_text().replace(f'home = "{home}"\n', f'home = "{home}"\ntrash_retention = "7d"\n', 1))
    assert retentiond("apply", "--config", str(config)).returncode == 0
    assert versions(home) == {"v0", "v1"}
    restored = retentiond("restore", "iris:v3", "--config", str(config))
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith("restored model iris:v3 (trashed ")
    assert versions(home) == {"v0", "v1", "v3"}


def test_check_config_prints_the_effective_config(config: Path, home: Path) -> None:
    result = retentiond("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"# config: {config} -- valid" in result.stderr
    assert tomllib.loads(result.stdout)["store"]["home"] == str(home)  # for people: TOML, as it is written
    result = retentiond("check-config", "--config", str(config), "--json")
    effective = json.loads(result.stdout)
    assert effective["store"]["home"] == str(home)
    assert effective["providers"]["cloud"]["api_token"] != "secret-token"  # redacted


def test_run_starts_the_daemon_which_stops_cleanly_on_sigterm(config: Path, tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, config)
    try:
        daemon.read_messages(until="READY=1", timeout=60)
        assert daemon.stop() == 0
        assert any("STOPPING=1" in message for message in daemon.messages)
    finally:
        daemon.close()
