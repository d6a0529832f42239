"""Sizes: `size_bytes` is the apparent size BentoML reports, `disk_bytes` the disk usage `du` reports; freeing
space (disk budgets, "to free", "freed") counts disk usage. `du` itself is the judge of the scanner's figure."""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon import inventory, scancache
from daemon.cli import main
from daemon.errors import EXIT_OK
from daemon.inventory import scan_store
from tests.daemon.conftest import NOW
from tests.fakestore import add_model

MIB = 1024 * 1024


def du_bytes(path: Path) -> int:
    """Disk usage of ``path`` as du counts it (allocated blocks, directories included), in bytes."""
    return int(subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def odd_versions(home: Path) -> dict[str, Path]:
    """A plain version, one holding a 64 MiB sparse file, one of 300 one-byte files in sub-directories."""
    plain = add_model(home, "iris", "plain", NOW - timedelta(days=3), files=2, file_bytes=10_000)
    sparse = add_model(home, "iris", "sparse", NOW - timedelta(days=2))
    with open(sparse / "weights.bin", "wb") as handle:
        handle.truncate(64 * MIB)
    tiny = add_model(home, "iris", "tiny", NOW - timedelta(days=4))
    for directory in range(3):
        (tiny / f"part{directory}").mkdir()
        for index in range(100):
            (tiny / f"part{directory}" / f"f{index}").write_bytes(b"x")
    for path in (plain, sparse, tiny):
        stamp = (NOW - timedelta(days=5)).timestamp()
        for file in path.rglob("*"):
            __import__("os").utime(file, (stamp, stamp))
        __import__("os").utime(path, (stamp, stamp))
    return {"plain": plain, "sparse": sparse, "tiny": tiny}


def test_the_scan_measures_disk_usage_as_du_does_fresh_cached_and_in_the_forked_half(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = odd_versions(home)
    expected = {version: du_bytes(path) for version, path in paths.items()}
    assert expected["sparse"] < MIB and expected["tiny"] > 300 * 1024  # the store really is odd
    fresh = {artifact.version: artifact for artifact in scan_store(home, tmp_path / "state").artifacts}
    assert {version: artifact.disk_bytes for version, artifact in fresh.items()} == expected
    assert fresh["sparse"].size_bytes > 64 * MIB and fresh["tiny"].size_bytes < 2000  # apparent, as BentoML counts
    cached = {artifact.version: artifact.disk_bytes for artifact in scan_store(home, tmp_path / "state").artifacts}
    assert cached == expected
    monkeypatch.setattr(inventory, "SPLIT_MIN_VERSIONS", 2)  # the second half is measured in a forked child
    split = {artifact.version: artifact.disk_bytes for artifact in scan_store(home).artifacts}
    assert split == expected


def as_format_3(path: Path) -> None:
    """Rewrite a scan cache file as the version before disk usage wrote it: format 3, records without disk_bytes."""
    _, _, content = path.read_bytes().partition(b"\n")
    header_line, _, records = content.partition(b"\n")
    header = json.loads(header_line)
    new, old = struct.Struct("<8qqdqq"), struct.Struct("<8qqdq")
    rows = [new.unpack_from(records, offset) for offset in range(0, len(records), new.size)]
    header["format"] = 3
    content = json.dumps(header, separators=(",", ":")).encode() + b"\n" + b"".join(old.pack(*row[:-1]) for row in rows)
    path.write_bytes(scancache._checksum(content).encode() + b"\n" + content)


def test_a_scan_cache_of_the_format_before_disk_usage_is_measured_again_without_a_warning(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = odd_versions(home)
    state = tmp_path / "state"
    scan_store(home, state)
    as_format_3(scancache.cache_path(state, home))
    measured: list[str] = []
    real_measure = inventory._measure
    monkeypatch.setattr(inventory, "_measure", lambda path, *rest: measured.append(path) or real_measure(path, *rest))
    with capture_logs() as logs:
        again = {artifact.version: artifact.disk_bytes for artifact in scan_store(home, state).artifacts}
    assert logs == []  # an older format is not "unreadable": it is simply not used
    assert sorted(measured) == sorted(str(path) for path in paths.values())
    assert again == {version: du_bytes(path) for version, path in paths.items()}


def test_a_disk_budget_counts_disk_usage_so_many_tiny_files_are_over_it(
    home: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    paths = odd_versions(home)
    add_model(home, "iris", "newest", NOW - timedelta(days=1))
    # Apparent size: about 65 MiB, nearly all of it the sparse file. On disk: the tiny files' blocks dominate.
    budget = du_bytes(home / "models") - du_bytes(paths["tiny"]) + 100 * 1024
    config = write_config(f'[[disk]]\nname = "budget"\nmax_store_size = "{budget}B"\n')
    assert main(["plan", "--config", str(config), "--json"]) == EXIT_OK
    plan = json.loads(capsys.readouterr().out)
    assert [action["version"] for action in plan["actions"]] == ["tiny"]  # the oldest, and enough on its own
    action = plan["actions"][0]
    assert action["size_bytes"] < 2000 and action["disk_bytes"] == du_bytes(paths["tiny"])
    assert "on disk over max_store_size" in action["reasons"][0]

    assert main(["apply", "--config", str(config), "--json"]) == EXIT_OK
    applied = json.loads(capsys.readouterr().out)
    assert [action["outcome"] for action in applied["actions"]] == ["ok"]
    assert main(["status", "--config", str(config), "--json"]) == EXIT_OK
    status = json.loads(capsys.readouterr().out)
    last = next(policy for policy in status["policies"] if policy["name"] == "budget")["last_run"]
    assert last["bytes_freed"] == action["disk_bytes"]  # "freed" is disk space, not the 300 bytes of content
    assert status["store"]["disk_bytes"] == sum(du_bytes(path) for path in (home / "models" / "iris").iterdir() if path.is_dir())
    assert status["store"]["size_bytes"] > 64 * MIB
