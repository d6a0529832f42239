"""The /proc reader, the lease probe and the cadence of the re-check under the lock, with real processes."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from daemon import procscan
from daemon.cli import main
from daemon.errors import EXIT_OK
from daemon.inuse import RESCAN_EVERY_DELETIONS, RESCAN_EVERY_SECONDS, InUseCheck, probe_files
from daemon.inventory import scan_store
from daemon.procscan import ProcessScan, _Reader, scan_processes, version_key
from tests.daemon.conftest import NOW
from tests.fakestore import add_model
from tests.holders import holding, release, start_holder


def test_version_key_takes_whole_path_components_and_drops_the_deleted_mark() -> None:
    prefix = "/srv/bentoml/"
    assert version_key(prefix, "/srv/bentoml/models/iris/v3/weights.bin") == ("model", "iris", "v3")
    assert version_key(prefix, "/srv/bentoml/bentos/svc/b1") == ("bento", "svc", "b1")
    assert version_key(prefix, "/srv/bentoml/models/iris/v3/w.bin (deleted)") == ("model", "iris", "v3")
    assert version_key(prefix, "/srv/bentoml/models/iris/v3 (deleted)") == ("model", "iris", "v3")
    for outside in ("/srv/bentoml/models/iris", "/srv/bentoml/.retentiond/trash/r/models/iris/v3/w", "/srv/bentomlx/models/a/b",
                    "/srv/bentoml/envs/x/y/z", "/srv/bentoml/models//v3"):
        assert version_key(prefix, outside) is None, outside


def test_a_process_that_exits_before_it_is_read_is_counted_as_vanished_not_unreadable(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    scan = ProcessScan()
    _Reader(str(tmp_path), {}, True).read_process(str(child.pid), scan)
    assert (scan.vanished, scan.unreadable, scan.held) == (1, [], {})


@pytest.mark.parametrize("opened", [False, True], ids=["before its maps are opened (ENOENT)", "after (ESRCH on read)"])
def test_a_process_that_exits_in_the_middle_of_being_read_holds_nothing_and_breaks_nothing(
    opened: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = tmp_path / "models" / "iris" / "v1"
    version.mkdir(parents=True)
    (version / "weights.bin").write_bytes(b"w" * 100)
    child = start_holder("mmap", version / "weights.bin")
    maps = f"/proc/{child.pid}/maps"

    def open_then_exit(path: str, mode: str = "r", *arguments: object) -> object:
        # Its working directory and descriptors were read; it exits (and is reaped) around the maps read.
        if path != maps:
            return builtins.open(path, mode, *arguments)  # type: ignore[call-overload]
        handle = builtins.open(path, mode) if opened else None  # noqa: SIM115 - handed to the caller's with-block
        child.kill()
        child.wait()
        return handle if handle is not None else builtins.open(path, mode)

    monkeypatch.setattr(procscan, "open", open_then_exit, raising=False)
    try:
        scan = scan_processes(str(tmp_path))
    finally:
        release(child)
    assert scan.held == {} and scan.vanished >= 1
    assert child.pid not in {process.pid for process in scan.unreadable}


def test_without_a_readable_proc_no_version_is_deleted(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(procscan, "_PROC", str(home / "no-proc-here"))
    assert main(["plan", "--config", str(write_config()), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["actions"] == []
    assert {reason for kept in report["kept"] for reason in kept["reasons"] if reason.startswith("in use")} == {
        f"in use by any process (cannot list {home / 'no-proc-here'}: No such file or directory)"
    }
    assert any(warning.startswith("in-use check: cannot list") for warning in report["warnings"])


def test_a_mapped_path_with_a_newline_is_matched_as_the_kernel_escapes_it(tmp_path: Path) -> None:
    root = tmp_path / "odd\nstore"
    version = root / "models" / "iris" / "v1"
    version.mkdir(parents=True)
    (version / "weights.bin").write_bytes(b"w" * 100)
    with holding("mmap", version / "weights.bin") as child:
        scan = scan_processes(str(root))
    assert scan.held == {("model", "iris", "v1"): [child.pid]}


def test_the_lease_probe_sees_a_file_another_process_has_open_or_mapped_and_follows_no_link(tmp_path: Path) -> None:
    version = tmp_path / "v1"
    (version / "sub").mkdir(parents=True)
    (version / "sub" / "weights.bin").write_bytes(b"w" * 100)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x")
    (version / "link.bin").symlink_to(outside)
    assert probe_files(str(version)) == (None, None)
    for mode in ("open", "mmap"):
        with holding(mode, version / "sub" / "weights.bin"):
            assert probe_files(str(version)) == ("sub/weights.bin", None)
    with holding("open", outside):
        assert probe_files(str(version)) == (None, None)
    assert probe_files(str(version)) == (None, None)


def test_working_directories_are_read_again_after_a_batch_or_a_second(home: Path, five_versions: list[str]) -> None:
    inventory = scan_store(home)
    by_version = {artifact.version: artifact for artifact in inventory.artifacts}
    now = [0.0]
    check = InUseCheck(home, inventory, clock=lambda: now[0])
    assert check.holder(by_version["v2"], home / "models" / "iris" / "v2") is None
    child = start_holder("cwd", home / "models" / "iris" / "v3")
    try:
        # Within the same second and batch the working directories are not read again (no file is open: the probe says free).
        assert check.holder(by_version["v3"], home / "models" / "iris" / "v3") is None
        now[0] += RESCAN_EVERY_SECONDS
        reason = check.holder(by_version["v3"], home / "models" / "iris" / "v3")
        assert reason is not None and reason.startswith(f"in use by pid {child.pid} (")
    finally:
        release(child)


def test_working_directories_are_read_again_after_a_batch_of_deletions(home: Path, five_versions: list[str]) -> None:
    by_version = {artifact.version: artifact for artifact in scan_store(home).artifacts}
    check = InUseCheck(home, scan_store(home), clock=lambda: 0.0)
    assert check.holder(by_version["v2"], home / "models" / "iris" / "v2") is None
    with holding("cwd", home / "models" / "iris" / "v3") as child:
        for _ in range(RESCAN_EVERY_DELETIONS):
            assert check.holder(by_version["v3"], home / "models" / "iris" / "v3") is None
        reason = check.holder(by_version["v3"], home / "models" / "iris" / "v3")
    assert reason is not None and reason.startswith(f"in use by pid {child.pid} (")


def test_a_run_writes_the_versions_in_use_gauge(
    home: Path, five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    textfile = tmp_path / "retentiond.prom"
    config = write_config(f'[[retention]]\nname = "ci"\nkeep_last = 2\n[metrics]\ntextfile = "{textfile}"\n')
    add_model(home, "mnist", "m1", NOW - timedelta(days=3))
    with holding("open", home / "models" / "iris" / "v4" / "weights-0.bin"), holding("cwd", home / "models" / "mnist" / "m1"):
        finished = subprocess.run([sys.executable, "-m", "daemon", "apply", "--config", str(config)], capture_output=True, text=True,
                                  timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert "retentiond_versions_in_use 2.0" in textfile.read_text().splitlines()
    assert os.path.isdir(home / "models" / "iris" / "v4")
