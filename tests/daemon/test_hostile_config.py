"""A table of bad configs: each exits 78 with a message naming the key path, and nothing is deleted."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.cli import main
from daemon.errors import EXIT_CONFIG

GOOD = '[[retention]]\nname = "ci"\nkeep_last = 1\n'
CLOUD = '[providers.cloud]\ntype = "bentocloud"\nendpoint = "http://127.0.0.1:9"\n'

BAD_CONFIGS = [
    ("typo in a key", '[[retention]]\nname = "ci"\nkeep_lats = 1\n', "retention[0].keep_lats: unknown key"),
    ("typo in a section", GOOD + "[deamon]\ntimezone = 'UTC'\n", "deamon: unknown key"),
    ("wrong type", '[[retention]]\nname = "ci"\nkeep_last = "five"\n', "retention[0].keep_last:"),
    ("float count", '[[retention]]\nname = "ci"\nkeep_daily = 1.5\n', "retention[0].keep_daily:"),
    ("negative count", '[[retention]]\nname = "ci"\nkeep_last = -3\n',
     "retention[0].keep_last: Input should be greater than or equal to 0"),
    ("no keep rule", '[[retention]]\nname = "ci"\nmin_age = "1h"\n', "has no keep rule"),
    ("missing name", "[[retention]]\nkeep_last = 1\n", "retention[0].name: Field required"),
    ("empty name", '[[retention]]\nname = ""\nkeep_last = 1\n', "retention[0].name:"),
    ("duplicate policy name", GOOD + GOOD, "retention[1].name: policy name 'ci' is used twice"),
    ("bad duration", '[[retention]]\nname = "ci"\nkeep_last = 1\nmin_age = "an hour"\n', "retention[0].min_age: invalid duration"),
    ("minutes vs months", '[[retention]]\nname = "ci"\nkeep_within = "3M"\n', "retention[0].keep_within: invalid duration"),
    ("unknown kind", '[[retention]]\nname = "ci"\nkeep_last = 1\nkinds = ["dataset"]\n', "retention[0].kinds[0]:"),
    ("bad cron", '[[retention]]\nname = "ci"\nkeep_last = 1\nschedule = "every hour"\n', "retention[0].schedule: invalid cron"),
    ("cron out of range", '[[retention]]\nname = "ci"\nkeep_last = 1\nschedule = "0 25 * * *"\n', "retention[0].schedule: invalid cron"),
    ("unknown timezone", GOOD + '[daemon]\ntimezone = "Europe/Atlantis"\n', "daemon.timezone: unknown IANA timezone"),
    ("low >= high watermark", '[[disk]]\nname = "d"\nhigh_watermark = "80%"\nlow_watermark = "90%"\n',
     "must be below high_watermark"),
    ("watermark over 100%", '[[disk]]\nname = "d"\nhigh_watermark = "180%"\n',
     "disk[0].high_watermark: percentage '180%' is outside 0%..100%"),
    ("bad size", '[[disk]]\nname = "d"\nmax_store_size = "lots"\n', "disk[0].max_store_size: invalid size"),
    ("disk policy without a limit", '[[disk]]\nname = "d"\ncheck_interval = "10s"\n', "needs high_watermark or max_store_size"),
    ("check interval too short", '[[disk]]\nname = "d"\nmax_store_size = "1GB"\ncheck_interval = "0s"\n',
     "check_interval must be at least 1s"),
    ("bad time spec", CLOUD + '[[offhours]]\nname = "n"\nprovider = "cloud"\ndowntime = "Mon-Fri 20:00-31:00 UTC"\n',
     "offhours[0].downtime: invalid time spec item 'Mon-Fri 20:00-31:00 UTC'"),
    ("bad day name", CLOUD + '[[offhours]]\nname = "n"\nprovider = "cloud"\ndowntime = "Mon-Fry 20:00-07:00 UTC"\n',
     "offhours[0].downtime: invalid time spec item"),
    ("both downtime and uptime", CLOUD + '[[offhours]]\nname = "n"\nprovider = "cloud"\ndowntime = "always"\nuptime = "never"\n',
     "exactly one of downtime and uptime"),
    ("unknown provider", '[[offhours]]\nname = "n"\nprovider = "cloud"\ndowntime = "always"\n',
     "offhours[0].provider: no provider named 'cloud'"),
    ("unknown provider type", '[providers.cloud]\ntype = "nomad"\n', "providers.cloud:"),
    ("command hook without {name}", '[providers.h]\ntype = "command"\nlist = "ls"\nterminate = "stop-all"\nrestart = "start {name}"\n',
     "providers.h.command.terminate:"),
    ("bad holiday", CLOUD + '[[offhours]]\nname = "n"\nprovider = "cloud"\ndowntime = "always"\nholidays = ["2026-02-30"]\n',
     "offhours[0].holidays: invalid holiday '2026-02-30'"),
    ("max_shrink not a percentage", GOOD + '[store]\nmax_shrink = "5GB"\n', "store.max_shrink: max_shrink is a percentage"),
    ("metrics port out of range", GOOD + "[metrics]\nlisten_port = 70000\n", "metrics.listen_port:"),
    ("not TOML at all", "retention = [ {name = \n", "not valid TOML"),
]


@pytest.mark.parametrize(("case", "text", "expected"), BAD_CONFIGS, ids=[case for case, _, _ in BAD_CONFIGS])
def test_bad_config_exits_78_names_the_key_and_deletes_nothing(
    case: str, text: str, expected: str, home: Path, five_versions: list[str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "bad.toml"
    store = f'[store]\nhome = "{home}"\n'
    config.write_text(text.replace("[store]\n", store) if "[store]\n" in text else store + text)
    for command in ("apply", "plan", "check-config"):
        assert main([command, "--config", str(config)]) == EXIT_CONFIG, (case, command)
        error = capsys.readouterr().err
        assert expected in error, (case, error)
        assert str(config) in error, (case, error)
    assert {p.name for p in (home / "models" / "iris").iterdir() if p.is_dir()} == set(five_versions)


def test_missing_bentocloud_token_exits_78_when_the_provider_is_needed(
    home: Path, five_versions: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\n[daemon]\naudit_log = "{tmp_path / "audit.jsonl"}"\nstate_dir = "{tmp_path / "state"}"\n'
        + CLOUD + '[[offhours]]\nname = "n"\nprovider = "cloud"\ndowntime = "always"\n'
    )
    assert main(["apply", "--config", str(config)]) == EXIT_CONFIG
    assert "providers.cloud:" in capsys.readouterr().err
    assert {p.name for p in (home / "models" / "iris").iterdir() if p.is_dir()} == set(five_versions)


def test_the_table_has_at_least_25_cases() -> None:
    assert len(BAD_CONFIGS) >= 25

