"""Warnings before surprises (check-config, and the daemon at start), per-policy environment overrides, and a
daemon log in which every line is JSON (APScheduler's own included) and an unreachable disk target warns."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.errors import EXIT_CONFIG, EXIT_OK
from tests.daemon.conftest import NOW
from tests.fakestore import add_bento, add_model, make_home, populate
from tests.helpers.daemon_process import Daemon
from tests.helpers.daemon_process import write_config as write_daemon_config

SLOW_HOOK = """
import json, sys, time
if sys.argv[1] == "list":
    time.sleep(2.5)
    print(json.dumps([{"name": "prod-web", "status": "running"}]))
"""


def cli(*arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("RETENTIOND_")}
    return subprocess.run([sys.executable, "-m", "daemon", *arguments], capture_output=True, text=True, timeout=120,
                          env={**clean, "BENTOML_DO_NOT_TRACK": "True", **environment})


def warnings_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.removeprefix("retentiond: warning: ") for line in result.stderr.splitlines() if line.startswith("retentiond: warning: ")]


def test_check_config_warns_about_a_match_that_selects_nothing_and_a_schedule_that_never_fires(
    home: Path, write_config: Callable[..., Path]
) -> None:
    for name in ("iris", "resnet"):
        add_model(home, name, "v1", NOW)
    config = write_config(
        '[[retention]]\nname = "typo"\nmatch = ["irsi*"]\nkeep_last = 2\nschedule = "0 0 31 2 *"\n'
        '[[retention]]\nname = "fine"\nmatch = ["iris"]\nkeep_last = 2\nschedule = "0 * * * *"\n'
        '[[retention]]\nname = "no-bentos-yet"\nkinds = ["bento"]\nmatch = ["svc"]\nkeep_last = 2\nschedule = "0 * * * *"\n'
        '[[disk]]\nname = "pressure"\nmatch = ["bert-*"]\nmax_store_size = "1GiB"\n'
    )
    result = cli("check-config", "--config", str(config))
    assert result.returncode == EXIT_OK, result.stderr
    assert warnings_of(result) == [
        "retention policy 'typo': schedule '0 0 31 2 *' never fires (no such date); the daemon will never run it",
        "policy 'typo': match = [\"irsi*\"] selects none of the 2 model or bento names in the store (iris, resnet); "
        "it will never act until one matches",
        "policy 'pressure': match = [\"bert-*\"] selects none of the 2 model or bento names in the store (iris, resnet); "
        "it will never act until one matches",
    ]

    add_bento(home, "other", "b1", NOW, [])
    assert "policy 'no-bentos-yet': match = [\"svc\"] selects none of the 1 bento names in the store (other)" in " ".join(
        warnings_of(cli("check-config", "--config", str(config))))


def test_an_override_of_one_policy_table_by_its_index_changes_that_policy(
    five_versions: list[str], write_config: Callable[..., Path]
) -> None:
    config = str(write_config())
    plan = cli("plan", "--json", "--config", config, RETENTIOND_RETENTION__0__KEEP_LAST="4")
    assert plan.returncode == EXIT_OK, plan.stderr
    assert [action["version"] for action in json.loads(plan.stdout)["actions"]] == ["v4"]  # keep_last 4, not 2

    labels = cli("check-config", "--json", "--config", config, RETENTIOND_RETENTION__0__KEEP_LABELS__STAGE="prod",
                 RETENTIOND_RETENTION__0__MATCH='["iris", "bert-*"]')
    policy = json.loads(labels.stdout)["retention"][0]
    assert policy["keep_labels"] == {"stage": "prod"} and policy["match"] == ["iris", "bert-*"]

    missing = cli("check-config", "--config", config, RETENTIOND_RETENTION__1__KEEP_LAST="9")
    assert missing.returncode == EXIT_CONFIG
    assert "RETENTIOND_RETENTION__1__KEEP_LAST: " in missing.stderr and "there is no retention[1] to override" in missing.stderr
    assert "RETENTIOND_RETENTION='[{" in missing.stderr

    bad = cli("check-config", "--config", config, RETENTIOND_RETENTION__0__KEEP_LAST="-1")
    assert bad.returncode == EXIT_CONFIG and "retention[0].keep_last: Input should be greater than or equal to 0" in bad.stderr


def test_the_daemon_log_is_all_json_and_warns_at_start_about_policies_that_never_act(tmp_path: Path) -> None:
    home = make_home(tmp_path)
    populate(home, names=1, versions_per_name=1, now=NOW)
    hook = tmp_path / "hook.py"
    hook.write_text(SLOW_HOOK)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(hook))}"
    config = write_daemon_config(
        tmp_path, home,
        '[[retention]]\nname = "typo"\nmatch = ["modle-*"]\nkeep_last = 2\nschedule = "0 0 31 2 *"\n'
        '[[disk]]\nname = "budget"\nmax_store_size = "1B"\ncheck_interval = "1s"\n'
        f'[providers.hooks]\ntype = "command"\nlist = "{command} list"\n'
        f'terminate = "{command} terminate {{name}}"\nrestart = "{command} restart {{name}}"\n'
        # The list hook takes longer than the reconcile interval: APScheduler skips a run and says so.
        '[[offhours]]\nname = "nights"\nprovider = "hooks"\nmatch = ["staging-*"]\ndowntime = "never"\n'
        'reconcile_interval = "1s"\n',
    )
    daemon = Daemon(tmp_path, config)
    try:
        _check_daemon_log(daemon)
    finally:
        daemon.close()


def _check_daemon_log(daemon: Daemon) -> None:
    daemon.read_messages(until="READY=1")

    def lines() -> list[str]:
        return [line for line in daemon.logs().splitlines() if line.strip()]

    def events() -> list[dict]:
        return [json.loads(line) for line in lines() if line.startswith("{")]

    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        seen = events()
        if (sum(1 for event in seen if event.get("event") == "policy.never_acts") >= 3
                and any(event.get("event") == "disk.evaluated" for event in seen)
                and any(str(event.get("logger", "")).startswith("apscheduler") for event in seen)):
            break
        time.sleep(0.3)
    daemon.stop()
    not_json = [line for line in lines() if not line.startswith("{")]
    assert not_json == [], not_json
    seen = events()
    never = {event["policy"]: event["warning"] for event in seen if event.get("event") == "policy.never_acts"}
    assert set(never) == {"typo", "nights"}, seen
    assert "selects none of the 1 deployments that provider 'hooks' lists (prod-web)" in never["nights"]
    assert sum(1 for event in seen if event.get("event") == "policy.never_acts") == 3  # typo: schedule and match
    scheduler = [event for event in seen if str(event.get("logger", "")).startswith("apscheduler")]
    assert scheduler and all(event["level"] in ("warning", "error") for event in scheduler)
    assert any("maximum number of running instances" in event["event"] for event in scheduler)
    unreachable = [event for event in seen if event.get("event") == "disk.evaluated"]
    assert unreachable and all(event["level"] == "warning" and "target not reachable" in event["report"] for event in unreachable)


@pytest.mark.parametrize("command", ["check-config", "plan"])
def test_a_store_that_cannot_be_listed_or_a_provider_that_fails_never_fails_the_checks(
    command: str, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    config = write_config('[[retention]]\nname = "ci"\nmatch = ["x"]\nkeep_last = 2\n')
    text = config.read_text().replace(str(tmp_path / "bentoml"), str(tmp_path / "nowhere"))
    config.write_text(text)
    result = cli(command, "--config", str(config))
    assert "Traceback" not in result.stderr
    assert result.returncode == (EXIT_OK if command == "check-config" else EXIT_CONFIG)
