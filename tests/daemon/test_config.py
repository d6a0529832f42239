from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from daemon.config import load_config
from daemon.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_example_config_loads_and_sets_every_documented_key() -> None:
    settings = load_config(str(REPO / "config.example.toml")).settings
    assert settings.daemon.timezone == "UTC"
    assert str(settings.store.trash_retention) == "3d" and str(settings.store.max_shrink) == "50%"
    assert settings.store.archive_dir == Path("/srv/retentiond-archive")
    assert str(settings.daemon.audit_rotate_size) == "64MiB"
    assert settings.retention[0].max_delete_per_run == 500
    first = settings.retention[0]
    assert first.name == "ci-models" and first.kinds == ("model",)
    assert (first.keep_last, first.keep_daily, first.keep_weekly, first.keep_monthly, first.keep_yearly) == (5, 7, 4, 6, 1)
    assert str(first.keep_within) == "2d" and str(first.keep_newer_than) == "14d"
    assert first.keep_labels == {"retention": "keep"} and first.schedule == "0 * * * *"
    assert str(first.keep_used_within) == "7d" and str(settings.disk[0].keep_used_within) == "3d"
    assert settings.retention[1].kinds == ("bento",)
    disk = settings.disk[0]
    assert (str(disk.high_watermark), str(disk.low_watermark), str(disk.max_store_size)) == ("85%", "75%", "200GiB")
    assert str(disk.check_interval) == "10s" and str(disk.predict_full_within) == "30m"
    assert settings.metrics.listen_port == 9464 and settings.metrics.listen_address == "127.0.0.1"
    assert {name: provider.type for name, provider in settings.providers.items()} == {
        "cloud": "bentocloud", "agent": "process", "units": "command",
    }
    nights = settings.offhours[0]
    assert nights.provider == "cloud" and str(nights.delete_after) == "30d" and nights.holidays == ("2026-12-24..2027-01-01",)
    assert nights.window.matches(datetime(2026, 12, 25, 12, tzinfo=timezone.utc))
    assert nights.hourly_cost == 1.25
    notify = settings.notify
    assert notify.webhook_url is not None and notify.webhook_url.get_secret_value() == "https://hooks.example.com/retentiond"
    assert notify.webhook_headers["Authorization"].get_secret_value() == "Bearer replace-me"
    assert notify.healthchecks_url is not None and notify.timeout_seconds == 10 and notify.every_run is False


def test_no_file_gives_defaults_with_store_from_bentoml_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("daemon.config.DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bm"))
    loaded = load_config(None)
    assert loaded.path is None
    assert loaded.settings.store.home == tmp_path / "bm"
    assert loaded.settings.retention == ()


def test_store_home_defaults_to_home_bentoml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("daemon.config.DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config(None).settings.store.home == tmp_path / "bentoml"


@pytest.mark.parametrize(("state", "logs", "state_dir", "audit_log"), [
    (None, None, "/var/lib/retentiond", "/var/log/retentiond/audit.jsonl"),  # DESIGN.md's defaults
    ("/srv/state", "/srv/logs", "/srv/state", "/srv/logs/audit.jsonl"),  # a unit's StateDirectory=/LogsDirectory=
    ("/srv/a:/srv/b", "/srv/l:/x", "/srv/a", "/srv/l/audit.jsonl"),  # several directories: the first
    ("relative", "", "/var/lib/retentiond", "/var/log/retentiond/audit.jsonl"),  # not what systemd sets: ignored
])
def test_state_dir_and_audit_log_default_to_systemds_directories_else_to_the_documented_paths(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state: str | None, logs: str | None, state_dir: str, audit_log: str
) -> None:
    for variable, value in (("STATE_DIRECTORY", state), ("LOGS_DIRECTORY", logs)):
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    daemon = load_config(str(write(tmp_path, '[store]\nhome = "/srv/bm"\n'))).settings.daemon
    assert (daemon.state_dir, daemon.audit_log) == (Path(state_dir), Path(audit_log))
    written = write(tmp_path, '[store]\nhome = "/srv/bm"\n[daemon]\nstate_dir = "/etc/x"\naudit_log = "/etc/y.jsonl"\n')
    daemon = load_config(str(written)).settings.daemon
    assert (daemon.state_dir, daemon.audit_log) == (Path("/etc/x"), Path("/etc/y.jsonl")), "the file wins"


def test_config_path_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\nhome = "/srv/bm"\n')
    monkeypatch.setenv("RETENTIOND_CONFIG", str(path))
    loaded = load_config(None)
    assert loaded.path == path and loaded.settings.store.home == Path("/srv/bm")


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\nhome = "/srv/bm"\n[daemon]\ntimezone = "UTC"\n')
    monkeypatch.setenv("RETENTIOND_STORE__HOME", "/other")
    monkeypatch.setenv("RETENTIOND_DAEMON__TIMEZONE", "Europe/Berlin")
    settings = load_config(str(path)).settings
    assert settings.store.home == Path("/other")
    assert settings.daemon.timezone == "Europe/Berlin"


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.toml"))


@pytest.mark.parametrize(
    ("text", "key_path", "message"),
    [
        ('[[retention]]\nname = "a"\nkeep_dayly = 2\nkeep_last = 1\n', "retention[0].keep_dayly", "unknown key"),
        ('[stor]\nhome = "/x"\n', "stor", "unknown key"),
        ('[[retention]]\nname = "a"\nkeep_last = -1\n', "retention[0].keep_last", "greater than or equal to 0"),
        ('[[retention]]\nname = "a"\nkeep_last = "3"\n', "retention[0].keep_last", "integer"),
        ('[[retention]]\nname = "a"\n', "retention[0]", "has no keep rule"),
        ('[[retention]]\nname = "a"\nkeep_last = 1\nmin_age = "1q"\n', "retention[0].min_age", "invalid duration"),
        ('[[retention]]\nname = "a"\nkeep_last = 1\nkinds = ["dataset"]\n', "retention[0].kinds[0]", "'model' or 'bento'"),
        ('[[retention]]\nname = "a"\nkeep_last = 1\nschedule = "61 * * * *"\n', "retention[0].schedule", "invalid cron"),
        ('[[retention]]\nname = "a"\nkeep_last = 1\n[[retention]]\nname = "a"\nkeep_last = 2\n', "retention[1].name", "used twice"),
        ('[daemon]\ntimezone = "Mars/Olympus"\n', "daemon.timezone", "unknown IANA timezone"),
        ('[daemon]\nstate_dir = 5\n', "daemon.state_dir", "path"),
        ('[[retention]]\nkeep_last = 1\n', "retention[0].name", "Field required"),
    ],
)
def test_errors_name_the_key_path_and_the_file(tmp_path: Path, text: str, key_path: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    text_of_error = str(caught.value)
    assert str(path) in text_of_error
    assert f"{key_path}:" in text_of_error or f"{key_path}." in text_of_error
    assert message.lower() in text_of_error.lower()


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[store\nhome = 1\n")
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 1"):
        load_config(str(path))


def test_check_config_redacts_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    from daemon.cli import main

    assert main(["check-config", "--config", str(REPO / "config.example.toml"), "--json"]) == 0
    out = capsys.readouterr().out
    assert "replace-me" not in out and '"api_token": "**********"' in out
    # URLs keep their secret in the path: only scheme://host/… is shown.
    assert "00000000-0000" not in out and "hooks.example.com/retentiond" not in out
    assert '"healthchecks_url": "https://hc-ping.com/\\u2026"' in out
    assert main(["check-config", "--config", str(REPO / "config.example.toml")]) == 0
    toml = capsys.readouterr().out
    assert "replace-me" not in toml and "00000000-0000" not in toml and 'api_token = "**********"' in toml
    assert 'healthchecks_url = "https://hc-ping.com/…"' in toml


@pytest.mark.parametrize(
    ("text", "key_path", "message"),
    [
        ('[providers.cloud]\ntype = "nomad"\n', "providers.cloud", "does not match any of the expected tags"),
        ('[[offhours]]\nname = "n"\nprovider = "cloud"\ndowntime = "always"\n', "offhours[0].provider", "no provider named 'cloud'"),
        ('[providers.cloud]\ntype = "bentocloud"\n[[offhours]]\nname = "n"\nprovider = "cloud"\n'
         'downtime = "Mon-Fri 07:00-20:00 Nowhere/Land"\n',
         "offhours[0].downtime", "unknown timezone"),
        ('[providers.x]\ntype = "command"\nlist = "ls"\nterminate = "stop"\nrestart = "start {name}"\n',
         "providers.x.terminate", "{name}"),
        ('[providers.cloud]\ntype = "bentocloud"\ncolor = "blue"\n', "providers.cloud.color", "unknown key"),
    ],
)
def test_provider_and_offhours_errors_name_the_key_path(tmp_path: Path, text: str, key_path: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert f"{key_path}:" in str(caught.value) and message in str(caught.value)


def run_cli(*arguments: str, env: dict[str, str] | None = None, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (as ``nobody`` when ``user`` says so)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RETENTIOND_")}
    environment.update(PYTHONPATH=str(REPO), **(env or {}))
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if user == "nobody" else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "daemon", *arguments], capture_output=True, text=True, cwd=REPO, env=environment, timeout=60
    )


def test_a_file_that_is_not_utf8_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[daemon]\ntimezone = "Europe/Z\xfcrich"\n')
    with pytest.raises(ConfigError, match=r"config.toml: not valid TOML: the file is not UTF-8 text \(byte 29"):
        load_config(str(path))


def test_arrays_nested_too_deeply_are_an_error_not_a_recursion_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(str(path))


def test_a_config_file_behind_a_directory_we_may_not_search_exits_78(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "config.toml").write_text('[store]\nhome = "/srv/bm"\n')
    tmp_path.chmod(0o755)
    result = run_cli("check-config", "--config", str(private / "config.toml"), user="nobody")
    assert result.returncode == 78 and "Traceback" not in result.stderr, result.stderr
    assert "cannot read config: Permission denied" in result.stderr


@pytest.mark.parametrize("home", ["bentoml", "./bentoml", ".", ""])
def test_a_relative_or_empty_store_home_is_refused(tmp_path: Path, home: str) -> None:
    path = write(tmp_path, f'[store]\nhome = "{home}"\n')
    with pytest.raises(ConfigError, match=r"store\.home: (relative path|the path is empty)"):
        load_config(str(path))


def test_store_home_keeps_tilde_expansion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config(str(write(tmp_path, '[store]\nhome = "~/bm"\n'))).settings.store.home == tmp_path / "bm"


def test_a_relative_bentoml_home_is_refused_as_the_default_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("daemon.config.DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    monkeypatch.setenv("BENTOML_HOME", "bentoml")
    with pytest.raises(ConfigError, match=r"store\.home: relative path 'bentoml'"):
        load_config(None)


@pytest.mark.parametrize("name", ["RETENTIOND_STORE__HOME", "RETENTIOND_DAEMON__TIMEZONE", "RETENTIOND_CONFIG"])
def test_an_empty_environment_override_is_an_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    monkeypatch.setenv(name, "")
    with pytest.raises(ConfigError, match=f"{name}: the variable is empty"):
        load_config(str(write(tmp_path, '[store]\nhome = "/srv/bm"\n')))


def test_an_override_of_an_unknown_section_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RETENTIOND_STOR__HOME", "/srv/other")
    with pytest.raises(ConfigError, match="RETENTIOND_STOR__HOME: unknown key 'stor'"):
        load_config(str(write(tmp_path, "")))


def test_an_override_that_is_not_json_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RETENTIOND_DISK", "[{name = 'd'}]")
    with pytest.raises(ConfigError, match=r"environment \(RETENTIOND_DISK\).*field \"disk\""):
        load_config(str(write(tmp_path, "")))


@pytest.mark.parametrize(
    ("name", "value", "key_path"),
    [
        ("RETENTIOND_DISK", '[{"name": "d", "high_watermark": 0.85}]', "disk[0].high_watermark: a bare number"),
        ("RETENTIOND_DISK", '[{"name": "d", "max_store_size": "0B"}]', "disk[0].max_store_size: 0B as a budget"),
        ("RETENTIOND_STORE__MAX_SHRINK", "0.5", "store.max_shrink: a bare number (0.5)"),
        ("RETENTIOND_DAEMON__STATE_DIR", "state", "daemon.state_dir: relative path"),
        ("RETENTIOND_METRICS__LISTEN_ADDRESS", "localhost", "metrics.listen_address: 'localhost' is not an IP address"),
        ("RETENTIOND_PROVIDERS__CLOUD", '{"type": "bentocloud", "timeout": 10}', "providers.cloud.timeout: a duration must be text"),
    ],
)
def test_environment_values_get_the_same_checks_as_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, key_path: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_config(str(write(tmp_path, "")))
    assert key_path in str(caught.value) and name in str(caught.value)


def test_a_huge_value_does_not_flood_the_message(tmp_path: Path) -> None:
    path = write(tmp_path, f'[[retention]]\nname = "a"\nkeep_last = 1\nmin_age = "{"9" * 100_000}q"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert "retention[0].min_age: invalid duration" in str(caught.value) and len(str(caught.value)) < 1000


def test_a_store_home_too_long_to_look_at_exits_78(tmp_path: Path) -> None:
    path = write(tmp_path, f'[store]\nhome = "/tmp/{"a" * 300}"\n[[retention]]\nname = "a"\nkeep_last = 1\n')
    result = run_cli("plan", "--config", str(path))
    assert result.returncode == 78 and "Traceback" not in result.stderr, result.stderr
    assert "cannot look at it: File name too long" in result.stderr


def test_a_metrics_port_in_use_makes_run_exit_78_naming_the_key(tmp_path: Path) -> None:
    from tests.fakestore import make_home

    home = make_home(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(
            tmp_path,
            f'[store]\nhome = "{home}"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n'
            f"[metrics]\nlisten_port = {port}\n",
        )
        result = run_cli("run", "--config", str(path))
    assert result.returncode == 78 and "Traceback" not in result.stderr, result.stderr
    assert f"metrics.listen_port: cannot listen on 127.0.0.1 port {port}: Address already in use" in result.stderr
