"""keep_used_within through the CLI: access times of a version's files (not its metadata file, not its
directories), fresh even when the scan cache answers for the version, and the noatime warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon import inventory
from daemon.cli import main
from daemon.errors import EXIT_OK
from daemon.mounts import Mount, access_time_warnings, hidden_processes, mount_of, parse_mountinfo
from policies.durations import format_bytes
from policies.spec import RetentionPolicy
from tests.fakestore import add_model, make_home
from tests.holders import holding

DAY = 86400.0
KEEP_READ = '[[retention]]\nname = "ci"\nkeep_last = 2\nkeep_used_within = "7d"\n'


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", *arguments], capture_output=True, text=True, timeout=120)


def plan(config: Path) -> dict:
    finished = cli("plan", "--config", str(config), "--json")
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout)


def deleted(report: dict) -> set[str]:
    return {action["version"] for action in report["actions"]}


def reasons(report: dict, version: str) -> list[str]:
    return [reason for kept in report["kept"] if kept["version"] == version for reason in kept["reasons"]]


def read_at(path: Path, days_ago: float) -> None:
    """Set the access time only; the modification time stays as the store wrote it."""
    os.utime(path, (time.time() - days_ago * DAY, path.stat().st_mtime))


def test_retention_keeps_a_version_whose_files_were_read_within_the_span(
    home: Path, five_versions: list[str], write_config: Callable[..., Path]
) -> None:
    versions = home / "models" / "iris"
    read_at(versions / "v3" / "weights-1.bin", 1)
    read_at(versions / "v4" / "weights-0.bin", 10)
    report = plan(write_config(KEEP_READ))
    assert deleted(report) == {"v2", "v4"}
    [reason] = reasons(report, "v3")
    assert reason.startswith("read recently (last read ") and reason.endswith(", within keep_used_within 7d)")


def test_the_metadata_file_and_directories_being_read_do_not_count(
    home: Path, five_versions: list[str], write_config: Callable[..., Path]
) -> None:
    # retentiond and `bentoml models list` read model.yaml themselves; anyone listing a directory moves its atime.
    versions = home / "models" / "iris"
    read_at(versions / "v2" / "model.yaml", 0)
    (versions / "v3" / "sub").mkdir()
    (versions / "v3" / "sub" / "vocab.txt").write_text("a")
    for path in (versions / "v3" / "sub" / "vocab.txt", versions / "v3" / "sub", versions / "v3"):
        os.utime(path, (time.time(), (versions / "v3" / "model.yaml").stat().st_mtime))  # read now, written long ago
    read_at(versions / "v3" / "sub" / "vocab.txt", 30)
    assert deleted(plan(write_config(KEEP_READ))) == {"v2", "v3", "v4"}


def test_a_disk_policy_keeps_what_was_read_and_reports_both_protections(
    home: Path, five_versions: list[str], write_config: Callable[..., Path]
) -> None:
    versions = home / "models" / "iris"
    read_at(versions / "v4" / "weights-0.bin", 2)
    config = write_config('[[disk]]\nname = "budget"\nmax_store_size = "1KB"\nkeep_used_within = "7d"\n')
    with holding("mmap", versions / "v3" / "weights-0.bin"):
        report = plan(config)
    assert deleted(report) == {"v2", "v1"}
    assert reasons(report, "v4") == [] and reasons(report, "v3") == []  # a disk policy lists only what it evicts
    [blocked] = [warning for warning in report["warnings"] if warning.startswith("disk policy budget")]
    # What a disk policy counts is disk usage, as du reports it (each version: model.yaml and 2 x 100 B, in blocks).
    du = subprocess.run(["du", "-s", "-B1", str(versions / "v3")], capture_output=True, text=True, check=True)
    size = format_bytes(int(du.stdout.split()[0]))
    assert f"in use by a process {size}" in blocked and f"read recently {size}" in blocked


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The version directories the scanner walks and reads (scan cache misses)."""
    seen: list[str] = []
    real_measure = inventory._measure

    def counting(path: str, *arguments: object) -> object:
        seen.append(path)
        return real_measure(path, *arguments)  # type: ignore[arg-type]

    monkeypatch.setattr(inventory, "_measure", counting)
    return seen


def test_a_read_between_two_runs_is_seen_although_the_scan_cache_answers(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str],
    measured: list[str],
) -> None:
    config = write_config(KEEP_READ)
    assert main(["plan", "--config", str(config), "--json"]) == EXIT_OK
    assert {action["version"] for action in json.loads(capsys.readouterr().out)["actions"]} == {"v2", "v3", "v4"}
    weights = home / "models" / "iris" / "v3" / "weights-0.bin"
    before = weights.stat().st_atime
    weights.read_bytes()  # someone loads the model (relatime moves atime: it was not newer than mtime)
    if weights.stat().st_atime == before:
        pytest.skip("this filesystem does not move access times on read (noatime)")
    measured.clear()
    assert main(["plan", "--config", str(config), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert measured == [], "the cache answered for every version"
    assert deleted(report) == {"v2", "v4"}
    assert reasons(report, "v3")[0].startswith("read recently")


SAMPLE_MOUNTINFO = r"""22 27 0:21 / /proc rw,nosuid,relatime shared:12 - proc proc rw,hidepid=invisible,subset=pid
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 27 0:40 / /srv/ml\040store rw,noatime shared:30 - xfs /dev/vdb rw
41 40 0:41 / /srv/ml\040store/cache rw,relatime - tmpfs tmpfs rw
42 40 0:42 / /srv/ml\040store rw,strictatime - ext4 /dev/vdc rw
broken line
"""


def test_mountinfo_is_parsed_and_the_deepest_last_mount_holds_a_path() -> None:
    mounts = parse_mountinfo(SAMPLE_MOUNTINFO)
    assert [mount.mount_point for mount in mounts] == ["/proc", "/", "/srv/ml store", "/srv/ml store/cache", "/srv/ml store"]
    assert mount_of("/srv/ml store/bentoml", mounts) == mounts[4]  # mounted over the noatime one
    assert mount_of("/srv/ml store/cache/x", mounts) == mounts[3]
    assert mount_of("/srv/ml storex", mounts) == mounts[1]
    assert hidden_processes(mounts) == "hidepid=invisible"
    assert hidden_processes(parse_mountinfo(SAMPLE_MOUNTINFO.replace(",hidepid=invisible", ""))) is None


def test_noatime_and_a_span_shorter_than_relatime_are_warned_only_with_keep_used_within() -> None:
    noatime = [Mount("/", frozenset({"rw", "noatime"}), "ext4")]
    relatime = [Mount("/", frozenset({"rw", "relatime"}), "ext4")]
    reading = [RetentionPolicy(name="ci", keep_last=1, keep_used_within="7d")]
    [warning] = access_time_warnings(Path("/srv/bentoml"), reading, noatime)
    assert warning.startswith("keep_used_within cannot see reads on a noatime mount: store /srv/bentoml is on /")
    assert access_time_warnings(Path("/srv/bentoml"), [RetentionPolicy(name="ci", keep_last=1)], noatime) == []
    assert access_time_warnings(Path("/srv/bentoml"), reading, relatime) == []
    short = [RetentionPolicy(name="ci", keep_last=1, keep_used_within="2h")]
    [warning] = access_time_warnings(Path("/srv/bentoml"), short, relatime)
    assert "keep_used_within 2h is shorter than a day" in warning


@pytest.fixture
def noatime_home(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "noatime"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "noatime,size=8m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield make_home(mount_point)
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_store_on_a_real_noatime_mount_is_warned_in_check_config_and_plan(noatime_home: Path, tmp_path: Path) -> None:
    from tests.daemon.conftest import NOW

    add_model(noatime_home, "iris", "v1", NOW)
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nhome = "{noatime_home}"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                      f'audit_log = "{tmp_path / "audit.jsonl"}"\n' + KEEP_READ)
    checked = cli("check-config", "--config", str(config))
    assert checked.returncode == 0
    assert f"warning: keep_used_within cannot see reads on a noatime mount: store {noatime_home} is on" in checked.stderr
    assert any(warning.startswith("keep_used_within cannot see reads on a noatime mount") for warning in plan(config)["warnings"])
    config.write_text(config.read_text().replace('keep_used_within = "7d"\n', ""))
    assert "noatime mount" not in cli("check-config", "--config", str(config)).stderr
