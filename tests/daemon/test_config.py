from __future__ import annotations

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
         "providers.x.command.terminate", "{name}"),
        ('[providers.cloud]\ntype = "bentocloud"\ncolor = "blue"\n', "providers.cloud.bentocloud.color", "unknown key"),
    ],
)
def test_provider_and_offhours_errors_name_the_key_path(tmp_path: Path, text: str, key_path: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert f"{key_path}:" in str(caught.value) and message in str(caught.value)
