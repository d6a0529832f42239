"""Find and collect killed saves and old leftovers of BentoML's tmp directory (``store.collect_incomplete_after``).

Finding takes the scan's version directories that have a problem and keeps those whose
model.yaml / bento.yaml is missing (one ``lstat`` each), and lists ``$BENTOML_HOME/tmp`` one level
deep. Symlinks are never followed nor collected, and nothing else in the home is looked at.

Collecting runs under the store lock and goes through the trash like any deletion, after a
re-check: the entry is still the same directory or file (device and inode), a version directory
still has no metadata file, and nothing in it was modified after the cutoff the plan used.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from daemon.layout import KIND_DIRS
from daemon.store import SkipAction, Store
from daemon.tags import is_valid_tag_part
from policies.incomplete import Leftover
from policies.model import Inventory

TMP_DIR_NAME = "tmp"


@dataclass(frozen=True)
class FoundLeftover:
    """A leftover and where it is: its path and (device, inode) when it was found."""

    leftover: Leftover
    path: Path
    identity: tuple[int, int]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.leftover.kind, self.leftover.name, self.leftover.version or "")


def find_leftovers(home: Path, inventory: Inventory) -> tuple[list[FoundLeftover], list[str]]:
    """Given the store and its scan, return the version directories without a metadata file and the
    entries of BentoML's tmp directory, with warnings. Raise nothing: what cannot be read is skipped."""
    found: list[FoundLeftover] = []
    for artifact in inventory.artifacts:
        if artifact.problem is None or artifact.kind not in KIND_DIRS:
            continue
        if not (is_valid_tag_part(artifact.name) and is_valid_tag_part(artifact.version)):
            continue  # not something BentoML saved under this name: reported by the scan, never collected
        subdir, metadata_name = KIND_DIRS[artifact.kind]
        path = home / subdir / artifact.name / artifact.version
        try:
            os.lstat(path / metadata_name)
            continue  # it has one, just not a valid one: reported by the scan, never collected
        except FileNotFoundError:
            pass
        except OSError:
            continue
        leftover = Leftover(artifact.kind, artifact.name, artifact.version, artifact.modified_at, artifact.size_bytes, metadata_name)
        found.append(FoundLeftover(leftover, path, (artifact.identity[0], artifact.identity[1]) if artifact.identity else (-1, -1)))
    tmp_found, warnings = _tmp_entries(home / TMP_DIR_NAME)
    return found + tmp_found, warnings


def _tmp_entries(tmp: Path) -> tuple[list[FoundLeftover], list[str]]:
    try:
        info = tmp.lstat()
    except OSError:
        return [], []
    if stat.S_ISLNK(info.st_mode):
        return [], [f"{tmp} is a symlink; not followed, nothing in it is collected"]
    if not stat.S_ISDIR(info.st_mode):
        return [], []
    found = []
    try:
        with os.scandir(tmp) as entries:
            listed = sorted(entries, key=lambda entry: entry.name)
    except OSError as error:
        return [], [f"cannot list {tmp}: {error.strerror or error}; no leftover in it is collected"]
    for entry in listed:
        try:
            entry_info = entry.stat(follow_symlinks=False)
            if not (stat.S_ISDIR(entry_info.st_mode) or stat.S_ISREG(entry_info.st_mode)):
                continue
            newest, size = measure(Path(entry.path))
        except OSError:
            continue  # gone or unreadable: looked at again next run
        modified_at = datetime.fromtimestamp(newest, timezone.utc)
        leftover = Leftover("tmp", entry.name, None, modified_at, size)
        found.append(FoundLeftover(leftover, Path(entry.path), (entry_info.st_dev, entry_info.st_ino)))
    return found, []


def measure(path: Path) -> tuple[float, int]:
    """Given a file or directory, return the newest mtime of it and everything in it, and the size of its
    regular files, without following symlinks. Raise OSError if it cannot be read."""
    info = path.lstat()
    newest, size = info.st_mtime, info.st_size if stat.S_ISREG(info.st_mode) else 0
    if not stat.S_ISDIR(info.st_mode):
        return newest, size
    pending = [str(path)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                entry_info = entry.stat(follow_symlinks=False)
                newest = max(newest, entry_info.st_mtime)
                if stat.S_ISREG(entry_info.st_mode):
                    size += entry_info.st_size
                elif stat.S_ISDIR(entry_info.st_mode):
                    pending.append(entry.path)
    return newest, size


def collect_leftover(
    found: FoundLeftover, cutoff: datetime, store: Store, run_id: str, holder: Callable[[Path], str | None] | None = None
) -> Path:
    """Under the store lock, re-check a planned leftover and move it into the trash; return where it went.
    ``holder`` is asked last whether a process uses it (its answer: why, or None).

    Raise SkipAction if it changed since it was planned or is in use, FileNotFoundError if it is gone, OSError otherwise.
    """
    leftover = found.leftover
    if leftover.kind == "tmp":
        path = store.home / TMP_DIR_NAME / leftover.name
        _require_plain_dirs(store.home / TMP_DIR_NAME)
    else:
        path = store.version_path(leftover.kind, leftover.name, leftover.version or "")
        _require_plain_dirs(path.parent.parent, path.parent)
    info = path.lstat()
    if (info.st_dev, info.st_ino) != found.identity or stat.S_ISLNK(info.st_mode):
        raise SkipAction(f"{path} is not the entry that was planned")
    if leftover.kind != "tmp":
        if not stat.S_ISDIR(info.st_mode):
            raise SkipAction(f"{path} is no longer a directory")
        if os.path.lexists(path / leftover.missing):
            raise SkipAction(f"{path} has its {leftover.missing} now")
    newest, _ = measure(path)
    if datetime.fromtimestamp(newest, timezone.utc) > cutoff:
        raise SkipAction(f"{path} was modified after {cutoff.isoformat(timespec='seconds')}: the save may be going on")
    held = holder(path) if holder is not None else None
    if held is not None:
        raise SkipAction(held)
    if leftover.kind == "tmp":
        return _move_tmp_to_trash(store, path, run_id)
    return store.move_to_trash(path, run_id)


def _require_plain_dirs(*directories: Path) -> None:
    for directory in directories:
        try:
            info = directory.lstat()
        except FileNotFoundError:
            raise SkipAction(f"{directory} is gone") from None
        if not stat.S_ISDIR(info.st_mode):
            raise SkipAction(f"{directory} is no longer a plain directory")


def _move_tmp_to_trash(store: Store, path: Path, run_id: str) -> Path:
    """Rename an entry of BentoML's tmp directory into ``<trash>/<run_id>/tmp/leftovers/``: apart from the
    models/ and bentos/ parts of the trash, so that ``restore`` never takes it for a version, and as deep as
    a version, so that the trash's own bookkeeping (one entry per ``<run>/<x>/<y>/<z>``) counts it as one."""
    parent = store.make_trash_run(run_id) / TMP_DIR_NAME / "leftovers"
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    destination = parent / path.name
    os.rename(path, destination)
    return destination
