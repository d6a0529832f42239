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
     "providers.h.terminate:"),
    ("bad holiday", CLOUD + '[[offhours]]\nname = "n"\nprovider = "cloud"\ndowntime = "always"\nholidays = ["2026-02-30"]\n',
     "offhours[0].holidays: invalid holiday '2026-02-30'"),
    ("max_shrink not a percentage", GOOD + '[store]\nmax_shrink = "5GB"\n', "store.max_shrink: max_shrink is a percentage"),
    ("metrics port out of range", GOOD + "[metrics]\nlisten_port = 70000\n", "metrics.listen_port:"),
    ("not TOML at all", "retention = [ {name = \n", "not valid TOML"),
    # Bare numbers and other TOML types where a size, share or duration is expected (issue 10, item 5).
    ("bare float watermark", '[[disk]]\nname = "d"\nhigh_watermark = 0.85\n', "disk[0].high_watermark: a bare number (0.85) is ambiguous"),
    ("bare float budget", '[[disk]]\nname = "d"\nmax_store_size = 1.5\n', "disk[0].max_store_size: a bare number (1.5) is ambiguous"),
    ("bare integer watermark", '[[disk]]\nname = "d"\nhigh_watermark = 85\n', "disk[0].high_watermark: a bare number (85) is ambiguous"),
    ("unitless text watermark", '[[disk]]\nname = "d"\nhigh_watermark = "85"\n',
     "disk[0].high_watermark: invalid size '85'; a share ends in '%'"),
    ("fraction of a byte", '[[disk]]\nname = "d"\nmax_store_size = "1.5B"\n',
     "disk[0].max_store_size: size '1.5B': a byte count is a whole number"),
    ("date as a size", '[[disk]]\nname = "d"\nmax_store_size = 2026-01-01\n', "disk[0].max_store_size: a size must be text"),
    ("array as a size", GOOD + '[store]\nmax_shrink = ["50%"]\n', "store.max_shrink: a size must be text"),
    ("table as a duration", '[[retention]]\nname = "ci"\nkeep_last = 1\nmin_age = {h = 1}\n',
     "retention[0].min_age: a duration must be text"),
    ("bare number as a duration", '[[retention]]\nname = "ci"\nkeep_last = 1\nmin_age = 3600\n',
     "retention[0].min_age: a duration must be text"),
    ("a 400-digit duration", f'[[retention]]\nname = "ci"\nkeep_last = 1\nmin_age = "{"9" * 400}y"\n',
     "retention[0].min_age: duration '999"),
    ("check interval of centuries", '[[disk]]\nname = "d"\nmax_store_size = "1GB"\ncheck_interval = "9000y"\n',
     "disk[0].check_interval: check_interval 9000y must be at most 1y"),
    ("reconcile interval of centuries",
     CLOUD + '[[offhours]]\nname = "n"\nprovider = "cloud"\ndowntime = "always"\nreconcile_interval = "200y"\n',
     "offhours[0].reconcile_interval: reconcile_interval 200y must be at most 1y"),
    ("non-ASCII digits in a duration", '[[retention]]\nname = "ci"\nkeep_last = 1\nmin_age = "\u0661d"\n',
     "retention[0].min_age: invalid duration"),
    # Zero limits that would read as "evict everything" or "never".
    ("zero budget", '[[disk]]\nname = "d"\nmax_store_size = "0B"\n',
     "disk[0].max_store_size: 0B as a budget would evict every unprotected version"),
    ("zero share budget", '[[disk]]\nname = "d"\nmax_store_size = "0%"\n', "disk[0].max_store_size: 0% as a budget"),
    ("zero high watermark", '[[disk]]\nname = "d"\nhigh_watermark = "0%"\n',
     "disk[0].high_watermark: 0% would count any used byte as pressure"),
    ("zero low watermark", '[[disk]]\nname = "d"\nhigh_watermark = "80%"\nlow_watermark = "0.0%"\n',
     "disk[0].low_watermark: 0.0% can never be reached"),
    ("zero prediction horizon", '[[disk]]\nname = "d"\nhigh_watermark = "80%"\npredict_full_within = "0s"\n',
     "disk[0].predict_full_within: 0s predicts nothing"),
    ("zero blast radius in bytes", '[[retention]]\nname = "ci"\nkeep_last = 1\nmax_delete_bytes_per_run = "0GiB"\n',
     "retention[0].max_delete_bytes_per_run: 0GiB would refuse every deletion"),
    ("zero keep_newer_than as the only rule", '[[retention]]\nname = "ci"\nkeep_newer_than = "0s"\n', "has no keep rule"),
    ("zero max_shrink", GOOD + '[store]\nmax_shrink = "0%"\n', "store.max_shrink: 0% would stop every run"),
    ("zero audit rotation", GOOD + '[daemon]\naudit_rotate_size = "0B"\n', "daemon.audit_rotate_size: 0B would never rotate"),
    ("zero cloud timeout", CLOUD + 'timeout = "0s"\n', "providers.cloud.timeout: timeout 0s must be between 1s and 1h"),
    ("zero kubernetes timeout", '[providers.k]\ntype = "kubernetes"\ntimeout = "0s"\n',
     "providers.k.timeout: timeout 0s must be between 1s and 1h"),
    ("relative kubeconfig", '[providers.k]\ntype = "kubernetes"\nkubeconfig = "kube/config"\n',
     "providers.k.kubeconfig: relative path 'kube/config'"),
    ("cloud timeout of years", CLOUD + 'timeout = "300y"\n', "providers.cloud.timeout: timeout 300y must be between 1s and 1h"),
    ("zero delete_after", CLOUD + '[[offhours]]\nname = "n"\nprovider = "cloud"\ndowntime = "always"\ndelete_after = "0d"\n',
     "offhours[0].delete_after: 0d would delete a deployment as soon as it is terminated"),
    ("zero reconcile interval", CLOUD + '[[offhours]]\nname = "n"\nprovider = "cloud"\ndowntime = "always"\nreconcile_interval = "0s"\n',
     "offhours[0].reconcile_interval: reconcile_interval 0s must be at least 1s"),
    ("infinite hook timeout",
     '[providers.h]\ntype = "command"\nlist = "ls"\nterminate = "stop {name}"\nrestart = "start {name}"\ntimeout_seconds = inf\n',
     "providers.h.timeout_seconds: Input should be a finite number"),
    ("stop timeout past a thread's wait", '[providers.p]\ntype = "process"\n[[providers.p.deployments]]\nname = "x"\ncommand = ["true"]\n'
     "stop_timeout_seconds = 1e300\n", "providers.p.deployments[0].stop_timeout_seconds: Input should be less than or equal to 86400"),
    # Paths that would silently mean the working directory, and addresses that are none.
    ("relative state_dir", GOOD + '[daemon]\nstate_dir = "state"\n',
     "daemon.state_dir: relative path 'state' would depend on the directory"),
    ("empty audit_log", GOOD + '[daemon]\naudit_log = ""\n', "daemon.audit_log: the path is empty"),
    ("relative archive_dir", GOOD + '[store]\narchive_dir = "archive"\n', "store.archive_dir: relative path 'archive'"),
    ("relative metrics textfile", GOOD + '[metrics]\ntextfile = "retentiond.prom"\n', "metrics.textfile: relative path 'retentiond.prom'"),
    ("NUL in a path", GOOD + '[daemon]\nstate_dir = "/var/lib/\\u0000x"\n', "daemon.state_dir: a path must not contain a NUL character"),
    ("unknown user in a path", GOOD + '[daemon]\nstate_dir = "~no-such-user-here/x"\n', "daemon.state_dir: cannot expand"),
    ("relative process cwd", '[providers.p]\ntype = "process"\n[[providers.p.deployments]]\nname = "x"\ncommand = ["true"]\ncwd = "srv"\n',
     "providers.p.deployments[0].cwd: relative path 'srv'"),
    ("listen_address not an address", GOOD + '[metrics]\nlisten_address = "metrics.local"\nlisten_port = 9464\n',
     "metrics.listen_address: 'metrics.local' is not an IP address"),
    ("a glob that would stall fnmatch", f'[[retention]]\nname = "ci"\nkeep_last = 1\nmatch = ["{"[" * 100_000}"]\n',
     "retention[0].match[0]: String should have at most 1024 characters"),
    ("timezone longer than a file name", GOOD + f'[daemon]\ntimezone = "{"a" * 3000}"\n', "daemon.timezone: unknown IANA timezone"),
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

