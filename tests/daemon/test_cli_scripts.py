"""The CLI for scripts: exit codes that tell a usage error (2) from a bad config (78) and from a failure (1),
and JSON from every command that acts (restore, deployments terminate|restart)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.errors import EXIT_ACTIONS_FAILED, EXIT_OK, EXIT_USAGE

HOOK = """
import json, pathlib, sys
if sys.argv[1] == "list":
    if pathlib.Path(__file__).with_name("down").exists():
        sys.stderr.write("connection refused\\n")
        sys.exit(3)
    print(json.dumps([{"name": "staging-a", "status": "running"}]))
"""


def cli(config: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", *arguments, "--config", str(config)],
                          capture_output=True, text=True, timeout=120, env={"BENTOML_DO_NOT_TRACK": "True", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def with_provider(tmp_path: Path, write_config: Callable[..., Path]) -> Path:
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(hook))}"
    return write_config(
        '[[retention]]\nname = "ci"\nkeep_last = 2\n'
        f'[providers.hooks]\ntype = "command"\nlist = "{command} list"\n'
        f'terminate = "{command} terminate {{name}}"\nrestart = "{command} restart {{name}}"\n'
        '[[offhours]]\nname = "nights"\nprovider = "hooks"\ndowntime = "never"\n'
    )


@pytest.mark.parametrize("command", [["plan"], ["apply"], ["plan", "--json"]])
def test_an_unknown_policy_is_a_usage_error(command: list[str], write_config: Callable[..., Path]) -> None:
    result = cli(write_config(), *command, "--policy", "nope")
    assert result.returncode == EXIT_USAGE
    assert "unknown policy nope (configured: ci)" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("wait", ["-5", "nan", "soon"])
def test_a_wait_that_is_not_zero_or_more_seconds_is_a_usage_error(wait: str, write_config: Callable[..., Path]) -> None:
    result = cli(write_config(), "apply", f"--wait={wait}")
    assert result.returncode == EXIT_USAGE
    assert "--wait" in result.stderr


@pytest.mark.parametrize("tag", ["iris", "iris:", ":v1"])
def test_restore_without_a_name_and_version_is_a_usage_error(tag: str, write_config: Callable[..., Path]) -> None:
    result = cli(write_config(), "restore", tag)
    assert result.returncode == EXIT_USAGE
    assert "restore needs NAME:VERSION" in result.stderr


def test_restore_json_says_what_came_back_or_why_not(
    five_versions: list[str], write_config: Callable[..., Path], home: Path
) -> None:
    config = write_config()
    config.write_text(config.read_text().replace("[daemon]", 'trash_retention = "7d"\n[daemon]', 1))
    assert cli(config, "apply").returncode == EXIT_OK
    restored = cli(config, "restore", "iris:v4", "--json")
    assert restored.returncode == EXIT_OK, restored.stderr
    answer = json.loads(restored.stdout)
    assert {key: answer[key] for key in ("action", "kind", "name", "version", "outcome", "error")} == {
        "action": "restore", "kind": "model", "name": "iris", "version": "v4", "outcome": "ok", "error": None}
    assert answer["size_bytes"] > 0 and answer["trashed_at"].endswith("Z")
    assert (home / "models" / "iris" / "v4" / "model.yaml").is_file()

    again = cli(config, "restore", "iris:v4", "--json")
    assert again.returncode == EXIT_ACTIONS_FAILED
    failed = json.loads(again.stdout)
    assert failed["outcome"] == "failed" and failed["error"] and failed["version"] == "v4"


def test_terminate_of_an_unknown_deployment_or_provider_is_a_usage_error(with_provider: Path) -> None:
    unknown = cli(with_provider, "deployments", "terminate", "nope")
    assert unknown.returncode == EXIT_USAGE
    assert "no deployment named 'nope' (listed by hooks)" in unknown.stderr
    provider = cli(with_provider, "deployments", "terminate", "staging-a", "--provider", "cloud")
    assert provider.returncode == EXIT_USAGE
    assert "unknown provider 'cloud' (configured: hooks)" in provider.stderr


def test_terminate_and_restart_json_carry_the_action_and_its_outcome(with_provider: Path) -> None:
    for verb in ("terminate", "restart"):
        result = cli(with_provider, "deployments", verb, "staging-a", "--json")
        assert result.returncode == EXIT_OK, result.stderr
        answer = json.loads(result.stdout)
        assert [(action["action"], action["name"], action["provider"], action["outcome"]) for action in answer["actions"]] == [
            (verb, "staging-a", "hooks", "ok")]


def test_a_provider_that_cannot_list_makes_list_status_and_terminate_exit_1(with_provider: Path, tmp_path: Path) -> None:
    (tmp_path / "down").touch()
    listing = cli(with_provider, "deployments", "list")
    assert listing.returncode == EXIT_ACTIONS_FAILED
    assert "error: provider hooks: cannot list deployments" in listing.stdout and "connection refused" in listing.stdout
    as_json = cli(with_provider, "deployments", "list", "--json")
    assert as_json.returncode == EXIT_ACTIONS_FAILED and json.loads(as_json.stdout)[0]["status"] == "error"
    status = cli(with_provider, "status")
    assert status.returncode == EXIT_ACTIONS_FAILED and "connection refused" in status.stdout
    # The deployment may exist in the provider that did not answer: not a usage error.
    terminate = cli(with_provider, "deployments", "terminate", "staging-a")
    assert terminate.returncode == EXIT_ACTIONS_FAILED
    assert "deployment 'staging-a' not found, and provider hooks: cannot list deployments" in terminate.stderr
