"""remove_tree and write_file_atomically (daemon/files.py) on real files: what goes, what is reported, what is never touched."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.files import RemovalFailure, _root_causes, remove_tree, write_file_atomically
from tests.helpers.effective_user import NOBODY, effective_user


def test_remove_tree_of_a_plain_file_removes_it(tmp_path: Path) -> None:
    # The purge hands over trash entries; a stray file at that level is removed like a directory would be.
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 10)
    assert remove_tree(path) == []
    assert not path.exists()


def test_remove_tree_of_a_path_it_cannot_look_at_reports_the_path_and_the_reason(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    below_a_file = tmp_path / "file" / "entry"
    assert remove_tree(below_a_file) == [RemovalFailure(str(below_a_file), "Not a directory")]


def test_remove_tree_of_an_immutable_file_reports_it_and_leaves_it(tmp_path: Path, immutable: Callable[[Path], None]) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x")
    immutable(path)
    assert remove_tree(path) == [RemovalFailure(str(path), "Operation not permitted")]
    assert path.exists()


def test_remove_tree_meeting_an_immutable_directory_reports_it_instead_of_raising(
    tmp_path: Path, immutable: Callable[[Path], None]
) -> None:
    # The retry after a refusal makes the tree owner-writable; chmod of an immutable directory fails too,
    # and that must not escape: a purge reports, it never raises.
    root = tmp_path / "entry"
    stuck = root / "stuck"
    stuck.mkdir(parents=True)
    (stuck / "weights.bin").write_bytes(b"x")
    (root / "free.bin").write_bytes(b"x")
    immutable(stuck)
    failures = remove_tree(root)
    assert sorted(failure.path for failure in failures) == [str(stuck), str(stuck / "weights.bin")]
    assert not (root / "free.bin").exists()


def test_remove_tree_retry_makes_read_only_directories_writable_but_never_follows_a_link_out(
    tmp_path: Path, immutable: Callable[[Path], None]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    os.chmod(outside, 0o755)
    root = tmp_path / "entry"
    read_only = root / "read-only"
    read_only.mkdir(parents=True)
    stuck_file = read_only / "weights.bin"
    stuck_file.write_bytes(b"x")
    (root / "link").symlink_to(outside, target_is_directory=True)
    os.chmod(read_only, 0o500)
    immutable(stuck_file)  # the refusal that makes remove_tree retry with owner-writable directories

    assert remove_tree(root) == [RemovalFailure(str(stuck_file), "Operation not permitted")]
    assert stat.S_IMODE(read_only.stat().st_mode) == 0o700
    assert stat.S_IMODE(outside.stat().st_mode) == 0o755
    assert outside.is_dir() and not (root / "link").exists()


def test_a_removal_error_without_a_system_reason_is_reported_with_its_message() -> None:
    # shutil.rmtree raises OSError("Cannot call rmtree on a symbolic link") when a directory became a link.
    error = OSError("Cannot call rmtree on a symbolic link")
    assert _root_causes([("/trash/run/models/iris/v1", error)]) == [
        RemovalFailure("/trash/run/models/iris/v1", "Cannot call rmtree on a symbolic link")
    ]


def test_write_file_atomically_replaces_the_file_readable_by_all_and_leaves_no_temp_file(tmp_path: Path, umask_zero: None) -> None:
    path = tmp_path / "latest"
    path.write_bytes(b"old")
    write_file_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [entry.name for entry in tmp_path.iterdir()] == ["latest"]


def test_write_file_atomically_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "latest"
    path.mkdir()  # os.replace of a file over a directory fails
    with pytest.raises(IsADirectoryError):
        write_file_atomically(path, b"new")
    assert [entry.name for entry in tmp_path.iterdir()] == ["latest"]


def test_a_file_that_vanishes_while_its_tree_is_removed_is_what_we_wanted_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process (or NFS finishing a silly-rename) removes a file first: a stand-in for os.unlink does that.
    root = tmp_path / "entry"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "weights.bin").write_bytes(b"x")
    real_unlink = os.unlink

    def beaten_to_it(path: str, *, dir_fd: int | None = None) -> None:
        real_unlink(path, dir_fd=dir_fd)
        if path == "weights.bin":
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)

    monkeypatch.setattr(os, "unlink", beaten_to_it)
    assert remove_tree(root) == []
    assert not root.exists()


def test_a_directory_left_non_empty_is_a_failure_of_its_own_only_when_nothing_below_it_failed() -> None:
    not_empty = OSError(errno.ENOTEMPTY, "Directory not empty")
    refused = OSError(errno.EPERM, "Operation not permitted")
    # a/ is not empty because a/x refused: only a/x is a cause; b/ is not empty with nothing below it failing
    # (something was written into it meanwhile): it is a cause; z/ sorts last.
    errors = [("/t/a/x", refused), ("/t/a", not_empty), ("/t/b", not_empty), ("/t/c", refused), ("/t/z", not_empty)]
    assert [failure.path for failure in _root_causes(errors)] == ["/t/a/x", "/t/b", "/t/c", "/t/z"]


def test_a_directory_whose_name_ends_in_a_space_is_matched_to_the_failures_below_it() -> None:
    not_empty = OSError(errno.ENOTEMPTY, "Directory not empty")
    refused = OSError(errno.EPERM, "Operation not permitted")
    errors = [("/t/weights /x", refused), ("/t/weights ", not_empty)]
    assert [failure.path for failure in _root_causes(errors)] == ["/t/weights /x"]


def test_remove_tree_retry_never_follows_a_link_it_could_not_remove(tmp_path: Path, immutable: Callable[[Path], None]) -> None:
    # The link sits in a directory that refuses changes, so it is still there when the retry walks the tree.
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(outside, 0o755)
    stuck = tmp_path / "entry" / "stuck"
    stuck.mkdir(parents=True)
    (stuck / "link").symlink_to(outside, target_is_directory=True)
    immutable(stuck)
    remove_tree(tmp_path / "entry")
    assert stat.S_IMODE(outside.stat().st_mode) == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as nobody")
def test_remove_tree_as_a_non_root_owner_gets_into_a_sub_directory_that_denies_even_its_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "nobody"
    locked = workdir / "entry" / "locked"
    locked.mkdir(parents=True)
    (locked / "weights.bin").write_bytes(b"x")
    for path in (workdir, workdir / "entry", locked, locked / "weights.bin"):
        os.chown(path, NOBODY, NOBODY)
    os.chmod(locked, 0)  # os.walk cannot list it: only the chmod of its parent's pass lets the owner in
    monkeypatch.chdir(workdir)  # nobody cannot search the parents of tmp_path; a relative path needs no search
    with effective_user(NOBODY):
        failures = remove_tree(Path("entry"))
    assert failures == []
    assert not (workdir / "entry").exists()


def test_write_file_atomically_writes_the_whole_content_to_a_hidden_temp_file_beside_the_target_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hidden name beside the target: same filesystem (the rename is atomic), and no tool listing the
    # directory (BentoML, a name directory sweep) mistakes it for a version or for `latest`.
    monkeypatch.setattr(tempfile, "tempdir", str(Path("/dev/shm")))  # TMPDIR elsewhere must not matter
    path = tmp_path / "latest"
    path.write_bytes(b"old")
    seen: list[tuple[list[str], bytes]] = []
    real_fsync = os.fsync

    def watching(descriptor: int) -> None:
        real_fsync(descriptor)
        (temp,) = [entry for entry in tmp_path.iterdir() if entry.name != "latest"]
        seen.append(([entry.name for entry in sorted(tmp_path.iterdir())], temp.read_bytes()))

    monkeypatch.setattr(os, "fsync", watching)
    write_file_atomically(path, b"v2" * 5000)
    monkeypatch.undo()
    ((names, content),) = seen
    assert names[1] == "latest" and names[0].startswith(".latest.") and names[0].endswith(".tmp")
    assert content == b"v2" * 5000 and path.read_bytes() == b"v2" * 5000
    assert [entry.name for entry in tmp_path.iterdir()] == ["latest"]


def test_write_file_atomically_raises_its_own_error_when_its_temp_file_is_already_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cleaned_then_failed(source: str, target: object) -> None:
        os.unlink(source)  # a temp-file cleaner got there first
        raise OSError(errno.EIO, "Input/output error")

    path = tmp_path / "latest"
    path.write_bytes(b"old")
    monkeypatch.setattr(os, "replace", cleaned_then_failed)
    with pytest.raises(OSError) as failed:
        write_file_atomically(path, b"new")
    assert failed.value.errno == errno.EIO
    assert [entry.name for entry in tmp_path.iterdir()] == ["latest"] and path.read_bytes() == b"old"
