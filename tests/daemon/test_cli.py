from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.errors import EXIT_CONFIG, EXIT_OK, EXIT_USAGE


def test_plan_json_prints_exactly_one_object(
    five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--config", str(write_config()), "--json"]) == EXIT_OK
    out = capsys.readouterr().out
    data = json.loads(out)
    assert out.count("\n") == 1
    assert set(data) == {"at", "actions", "kept", "refusals", "totals", "warnings"}
    assert [action["version"] for action in data["actions"]] == ["v4", "v3", "v2"]
    assert data["refusals"] == []
    sizes = sum(action["size_bytes"] for action in data["actions"])
    assert data["totals"] == {"delete": 3, "bytes": sizes, "terminate": 0, "restart": 0, "delete_deployment": 0, "kept": 2}
    assert {kept["version"]: kept["reasons"] for kept in data["kept"]} == {"v0": ["latest", "last 2"], "v1": ["last 2"]}


def test_plan_at_evaluates_another_instant(
    five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config('[[retention]]\nname = "ci"\nkeep_newer_than = "3d12h"\n')
    main(["plan", "--config", str(config), "--json"])
    now_plan = json.loads(capsys.readouterr().out)
    main(["plan", "--config", str(config), "--json", "--at", "2000-01-01T00:00:00Z"])
    past_plan = json.loads(capsys.readouterr().out)
    assert {a["version"] for a in now_plan["actions"]} == {"v3", "v4"}
    assert past_plan["at"] == "2000-01-01T00:00:00Z"
    # Seen from the year 2000 everything is in the future, so it is all "newer than": nothing goes.
    assert past_plan["actions"] == []


def test_plan_policy_limits_which_policies_act(
    five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        '[[retention]]\nname = "short"\nkeep_last = 1\n[[retention]]\nname = "other"\nmatch = ["x*"]\nkeep_last = 1\n'
    )
    main(["plan", "--config", str(config), "--json", "--policy", "other"])
    assert json.loads(capsys.readouterr().out)["actions"] == []
    main(["plan", "--config", str(config), "--json", "--policy", "short"])
    assert len(json.loads(capsys.readouterr().out)["actions"]) == 4


def test_plan_human_output_is_a_table_per_name_with_totals(
    five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--config", str(write_config())]) == EXIT_OK
    out = capsys.readouterr().out
    assert "model iris (policy ci): delete 3" in out
    assert out.splitlines()[1].split() == ["VERSION", "CREATED", "ON", "DISK", "DECISION", "REASONS"]
    assert "not kept by any rule" in out and "latest" in out
    assert "3 version(s) to delete" in out


@pytest.mark.parametrize("at", ["yesterday", "2026-11-22T10:00:00"])
def test_bad_at_is_a_usage_error(at: str, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["plan", "--config", str(write_config()), "--at", at])
    assert caught.value.code == EXIT_USAGE
    assert "retentiond: error: --at:" in capsys.readouterr().err


def test_invalid_config_exits_78_with_key_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[retention]]\nname = "a"\nkeep_lats = 3\n')
    assert main(["plan", "--config", str(path)]) == EXIT_CONFIG
    error = capsys.readouterr().err
    assert str(path) in error and "retention[0].keep_lats: unknown key" in error


@pytest.mark.parametrize("make", ["missing", "no-markers", "root"])
def test_store_root_that_is_not_a_bentoml_home_is_refused(
    make: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = {"missing": tmp_path / "absent", "no-markers": tmp_path, "root": Path("/")}[make]
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\nhome = "{home}"\n[[retention]]\nname = "a"\nkeep_last = 1\n')
    assert main(["apply", "--config", str(config)]) == EXIT_CONFIG
    assert "store.home" in capsys.readouterr().err


def test_check_config_prints_the_effective_config_as_toml_and_with_json_as_json(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", "--config", str(write_config())]) == EXIT_OK
    captured = capsys.readouterr()
    assert '[[retention]]\nname = "ci"\n' in captured.out and "keep_last = 2\n" in captured.out
    effective = tomllib.loads(captured.out)
    assert effective["retention"][0]["keep_last"] == 2 and effective["retention"][0]["min_age"] == "1h"
    assert "keep_within" not in effective["retention"][0]  # not set: TOML has no null
    assert "valid" in captured.err

    assert main(["check-config", "--config", str(write_config()), "--json"]) == EXIT_OK
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["retention"][0]["keep_within"] is None
    assert {key: value for key, value in as_json["retention"][0].items() if value is not None} == effective["retention"][0]


def test_check_config_warns_that_a_retention_policy_without_schedule_never_runs_in_the_daemon(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        '[[retention]]\nname = "timer-only"\nkeep_last = 2\n'
        '[[retention]]\nname = "hourly"\nkeep_last = 2\nschedule = "0 * * * *"\n'
    )
    assert main(["check-config", "--config", str(config), "--json"]) == EXIT_OK
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("retentiond: warning:")]
    assert warnings == [
        "retentiond: warning: retention policy 'timer-only' has no schedule: it runs only with `retentiond apply`; "
        'add schedule = "..." (cron, e.g. "0 * * * *") to run it from the daemon'
    ]
    assert json.loads(captured.out)["retention"][0]["name"] == "timer-only"  # stdout stays the effective config


def test_audit_show_filters_by_policy_and_since(
    five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config()
    main(["apply", "--config", str(config)])
    capsys.readouterr()
    assert main(["audit", "show", "--config", str(config), "--json", "--policy", "ci", "--since", "1h"]) == EXIT_OK
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 6 and {record["policy"] for record in records} == {"ci"}
    main(["audit", "show", "--config", str(config), "--json", "--since", "2999-01-01"])
    assert capsys.readouterr().out == ""
    main(["audit", "show", "--config", str(config)])
    assert "artifact.deleted" in capsys.readouterr().out


def test_console_script_help_explains_every_command() -> None:
    result = subprocess.run([sys.executable, "-m", "daemon", "--help"], capture_output=True, text=True, check=True)
    for command in ("plan", "apply", "check-config", "audit"):
        assert command in result.stdout
    assert "Exit codes" in result.stdout


def test_version_prints_the_installed_distribution_version() -> None:
    from importlib.metadata import version

    result = subprocess.run([sys.executable, "-m", "daemon", "--version"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (EXIT_OK, f"retentiond {version('retentiond')}\n")


@pytest.mark.parametrize(("command", "shows"), [
    (["plan", "--json"], '"version":"v4"'),
    (["audit", "show", "--json"], '"event":"artifact.deleted"'),
    (["check-config", "--json"], '"keep_last": 2'),
    (["apply", "--json"], '"outcome":"ok"'),
])
def test_config_before_the_command_works_like_after(
    command: list[str], shows: str, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config())
    if command[0] == "audit":
        assert main(["apply", "--config", config]) == EXIT_OK
        capsys.readouterr()
    assert main(["--config", config, *command]) == EXIT_OK
    before = capsys.readouterr().out
    assert main([*command, "--config", config]) == EXIT_OK
    after = capsys.readouterr().out
    assert shows in before  # the file was read, not the built-in defaults
    if command[0] != "apply":  # the second apply finds nothing left to delete
        assert without_instants(before) == without_instants(after)


def without_instants(output: str) -> str:
    """The output without the instants it was made at: two runs a second apart differ there only."""
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<instant>", output)


@pytest.mark.parametrize("group", [["audit", "--config", "{c}", "show", "--json"], ["deployments", "--config", "{c}", "list", "--json"]])
def test_config_between_a_command_group_and_its_subcommand_is_read(
    group: list[str], five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = str(write_config())
    assert main(["apply", "--config", config]) == EXIT_OK
    capsys.readouterr()
    assert main([part.format(c=config) for part in group]) == EXIT_OK  # was: invalid choice: '<the file>'
    assert capsys.readouterr().out.strip()  # records of the apply above / an empty list, from this config
    invalid = tmp_path / "invalid.toml"
    invalid.write_text("[store]\nnot_a_key = 1\n")
    nearest = [*group[:-1], "--config", config, "--json"]  # the subcommand's own --config wins
    assert main(["--config", str(invalid), *[part.format(c=str(invalid)) for part in nearest]]) == EXIT_OK
    assert main([part.format(c=config) for part in [*group[:-1], "--config", str(invalid)]]) == EXIT_CONFIG


def test_config_after_the_command_wins_over_one_before(
    five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    invalid = tmp_path / "invalid.toml"
    invalid.write_text("[store]\nnot_a_key = 1\n")
    assert main(["--config", str(invalid), "plan", "--config", str(write_config()), "--json"]) == EXIT_OK
    assert len(json.loads(capsys.readouterr().out)["actions"]) == 3
    assert main(["--config", str(write_config()), "plan", "--config", str(invalid), "--json"]) == EXIT_CONFIG


@pytest.mark.parametrize(("at", "shows"), [
    ("9999-12-31T22:00:00Z", "9999-12-31T22:00:00+00:00: inside; changes at 9999-12-31T23:00:00+00:00"),
    ("9999-12-31T23:00:00Z", "9999-12-31T23:00:00+00:00: outside; never changes"),  # Monday 20:00 is in year 10000
    ("9999-12-31T22:00:00+05:00", "changes at 9999-12-31T19:00:00+00:00"),  # 10000-01-01 at +05:00: said in UTC
    ("9999-12-31T23:59:59.999999Z", "outside; never changes"),
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:00: inside; changes at 0001-01-01T06:06:32+00:00"),  # Berlin LMT
])
def test_window_answers_at_the_ends_of_the_calendar(at: str, shows: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["window", "Mon-Fri 20:00-07:00 Europe/Berlin", "--at", at]) == EXIT_OK
    assert shows in capsys.readouterr().out


@pytest.mark.parametrize("command", [["window", "Mon-Fri 20:00-07:00 Europe/Berlin"], ["plan"]])
@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"])
def test_an_instant_with_no_utc_equivalent_is_a_usage_error(
    command: list[str], at: str, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*command, "--config", str(write_config()), "--at", at] if command == ["plan"] else [*command, "--at", at])
    assert caught.value.code == EXIT_USAGE
    assert "is outside the years 1 to 9999 in UTC" in capsys.readouterr().err


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:00:00Z"])
def test_plan_at_the_ends_of_the_calendar_answers(
    at: str, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        '[[retention]]\nname = "ci"\nkeep_last = 1\nkeep_daily = 1\nkeep_within = "2d"\nkeep_newer_than = "9000y"\n'
        '[[disk]]\nname = "pressure"\nhigh_watermark = "99%"\nlow_watermark = "98%"\nmax_store_size = "1GiB"\npredict_full_within = "1d"\n',
        timezone_name="Europe/Berlin",
    )
    assert main(["plan", "--config", str(config), "--json", "--at", at]) == EXIT_OK
    planned = json.loads(capsys.readouterr().out)
    assert planned["at"] == at[:19] + "Z"
    # keep_newer_than 9000y reaches back past year 1: every version is newer than that, nothing goes.
    assert planned["actions"] == [] and len(planned["kept"]) == 5
