"""The trash (``<store>/.retentiond/trash/<run_id>/<kind>s/<name>/<version>``) and the undo window.

Without ``store.trash_retention`` a deleted version is purged at once and an
interrupted run's leftovers go at the start of the next run. With it, deleted
versions stay restorable for that long (``retentiond restore NAME:VERSION``); a
disk policy that has to act purges the trash first. Which runs go is the plan's
decision (policies/store_limits.py, from ``runs()``); ``purge`` carries it out.

A purge never stops a run: what cannot be removed (an immutable file, an NFS
``.nfsXXXX`` file still open elsewhere, a directory of another owner) stays as a
*stuck* entry, is reported once per run, and is tried again by every later run,
whatever the retention says (a half-purged version is not restorable anyway).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from daemon.files import RemovalFailure, remove_tree, write_file_atomically
from daemon.inventory import read_version, tree_usage
from daemon.layout import KIND_DIRS, TRASHED_AT_FILE, read_latest
from daemon.purge import Purger, StuckEntries, StuckEntry
from daemon.store import SkipAction, Store, remove_name_dir_if_emptied
from policies.model import ArtifactKind, TrashRun


@dataclass(frozen=True)
class TrashedVersion:
    kind: ArtifactKind
    name: str
    version: str
    path: Path
    trashed_at: datetime
    size_bytes: int


class Trash:
    """The trash of one store, with an optional retention period.

    ``retry`` names entries that an earlier run could not purge: they are purged again at once.
    ``report`` is called once per run for each stuck entry, on the thread that purges or drains.
    """

    def __init__(
        self,
        store: Store,
        retention: timedelta | None = None,
        purging_policies: frozenset[str] = frozenset(),
        *,
        retry: Iterable[Path] = (),
        report: Callable[[StuckEntry], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.retention = retention
        # Disk policies delete to free space now; keeping their versions in the trash would free nothing.
        self.purging_policies = purging_policies
        # Set by a stop request: purging ends after the entry in progress; the rest is trash for the next run.
        self.stop = stop if stop is not None else threading.Event()
        self._purger: Purger | None = None
        self._stuck = StuckEntries(store.trash_dir, report)
        self._retry = {path for path in retry if self._stuck.is_entry(path)}

    @property
    def stuck(self) -> list[StuckEntry]:
        """Every entry this run could not purge (and did not purge later in the run), in the order met."""
        return list(self._stuck)

    def finish(self, trashed: Path, policy: str = "") -> None:
        """After a deletion: purge the trashed version (on a worker thread), unless the undo window keeps it."""
        if self.retention is None or policy in self.purging_policies:
            # The version is out of the store already; unlink and rmdir release the GIL, so removing it
            # overlaps with the next deletions. Its emptied parents stay until close().
            if self._purger is None:
                self._purger = Purger(self.stop)
            self._purger.put(trashed)

    def drain(self) -> list[StuckEntry]:
        """Wait until every version handed to finish() is removed, or only for the one in progress once ``stop``
        is set; return those that could not be removed (they stay trash)."""
        purger, self._purger = self._purger, None
        failures = purger.join() if purger is not None else []
        return self._stuck.note(failures)

    def close(self, run_id: str) -> None:
        """At the end of a run: finish purging, then remove the run's trash directory once no version is in it."""
        self.drain()
        run_dir = self.store.trash_dir / run_id
        kind_dirs = _children(run_dir)
        for kind_dir in kind_dirs:
            for name_dir in _children(kind_dir):
                if _children(name_dir):
                    return
        if kind_dirs or run_dir.is_dir():
            self._stuck.note(remove_tree(run_dir))

    def runs(self) -> list[TrashRun]:
        """Return every run directory in the trash with when it was trashed, its disk usage, and that of the
        entries an earlier run could not purge (for the plan: what a purge would free). Never raises."""
        stuck_bytes = {entry.path: entry.disk_bytes for entry in self._stuck}
        stuck_bytes.update((entry, tree_usage(entry)[1]) for entry in self._retry if entry not in stuck_bytes)
        found = []
        for run_dir in _children(self.store.trash_dir):
            stuck = sum(size for entry, size in stuck_bytes.items() if entry.is_relative_to(run_dir))
            found.append(TrashRun(run_dir.name, _trashed_at(run_dir), tree_usage(run_dir)[1], stuck))
        return found

    def purge(self, runs: Collection[str]) -> int:
        """Remove the named trash runs (the plan's trash purge), then retry the entries an earlier run could
        not purge. What cannot be removed is noted as stuck, never raised.

        Once ``stop`` is set no further trash run is started. Return how many trash runs went completely.
        """
        removed = 0
        attempted = set()
        try:
            run_dirs = _children(self.store.trash_dir, strict=True)
        except OSError as error:
            self._stuck.note([RemovalFailure(str(self.store.trash_dir), error.strerror or str(error))])
            run_dirs = []
        wanted = set(runs)
        for run_dir in run_dirs:
            if self.stop.is_set():
                break
            if run_dir.name in wanted:
                attempted.add(run_dir.name)
                removed += self._purge_run(run_dir)
        retry, self._retry = self._retry, set()
        for entry in sorted(retry):
            if entry.relative_to(self.store.trash_dir).parts[0] in attempted:
                continue
            if not self._stuck.note(remove_tree(entry), tried=[entry]):
                self._prune_empty_parents(entry)
        return removed

    def _purge_run(self, run_dir: Path) -> int:
        # Its marker goes last: a run that could not be purged completely keeps its trashed_at.
        failures: list[RemovalFailure] = []
        try:
            with os.scandir(run_dir) as entries:
                children = [Path(entry.path) for entry in entries if entry.name != TRASHED_AT_FILE]
        except FileNotFoundError:
            return 0
        except OSError as error:
            children, failures = [], [RemovalFailure(str(run_dir), error.strerror or str(error))]
        for child in children:
            failures.extend(remove_tree(child))
        if not failures:
            failures = remove_tree(run_dir)
        self._stuck.note(failures, tried=[run_dir])
        return 0 if failures else 1

    def recover(self) -> list[str]:
        """After an interrupted run: remove name directories that run emptied but did not get to remove.

        Only names that are in the trash are looked at, so a name BentoML is saving right now is never touched.
        Return the names removed.
        """
        recovered = []
        for run_dir in _children(self.store.trash_dir) if self.store.trash_dir.is_dir() else []:
            for kind, (subdir, _) in KIND_DIRS.items():
                for trashed_name in _children(run_dir / subdir):
                    name_dir = self.store.home / subdir / trashed_name.name
                    if not name_dir.is_dir() or name_dir.is_symlink():
                        continue
                    if remove_name_dir_if_emptied(name_dir):
                        recovered.append(f"{kind} {trashed_name.name}: removed the emptied name directory")
                    elif _repair_dangling_latest(name_dir, kind):
                        recovered.append(f"{kind} {trashed_name.name}: latest pointed at a trashed version")
        return recovered

    def versions(self) -> list[TrashedVersion]:
        """Return every version in the trash, most recently trashed first."""
        found = []
        for run_dir in _children(self.store.trash_dir) if self.store.trash_dir.is_dir() else []:
            trashed_at = _trashed_at(run_dir)
            for kind, (subdir, _) in KIND_DIRS.items():
                for name_dir in _children(run_dir / subdir):
                    for version_dir in _children(name_dir):
                        size = read_version(kind, name_dir.name, version_dir.name, version_dir, None).size_bytes
                        found.append(TrashedVersion(kind, name_dir.name, version_dir.name, version_dir, trashed_at, size))
        return sorted(found, key=lambda item: item.trashed_at, reverse=True)

    def restore(self, kind: ArtifactKind | None, name: str, version: str) -> TrashedVersion:
        """Put the most recently trashed copy of ``name:version`` back and repair ``latest``.

        Raise SkipAction if it is not in the trash, is ambiguous, or the version exists in the store.
        """
        matches = [t for t in self.versions() if t.name == name and t.version == version and kind in (None, t.kind)]
        if not matches:
            raise SkipAction(f"{name}:{version} is not in the trash of {self.store.home}")
        if len({t.kind for t in matches}) > 1:
            raise SkipAction(f"{name}:{version} is in the trash as a model and as a bento; say which with --kind")
        chosen = matches[0]
        stuck = self._stuck.get(chosen.path)
        if stuck is not None:
            raise SkipAction(
                f"{name}:{version} cannot be restored: a purge of its copy in the trash failed part-way "
                f"({stuck.error}), so what is left of it is not the version any more"
            )
        problem = read_version(chosen.kind, name, version, chosen.path, None).problem
        if problem is not None:
            raise SkipAction(f"{name}:{version} cannot be restored: its copy in the trash is not a complete version ({problem})")
        destination = self.store.version_path(chosen.kind, name, version)
        if destination.exists() or destination.is_symlink():
            raise SkipAction(f"{destination} exists; refusing to restore over it")
        destination.parent.mkdir(mode=0o755, exist_ok=True)
        os.rename(chosen.path, destination)
        self._prune_empty_parents(chosen.path)
        latest_after_restore(destination.parent, chosen.kind, version)
        return chosen

    def _prune_empty_parents(self, trashed: Path) -> None:
        for parent in trashed.parents:
            if parent == self.store.trash_dir:
                break
            remaining = [entry for entry in _children(parent) if entry.name != TRASHED_AT_FILE]
            if remaining:
                break
            # An empty directory that will not go is removed with its trash run later; it holds no bytes.
            remove_tree(parent)


def latest_after_restore(name_dir: Path, kind: ArtifactKind, restored: str) -> str | None:
    """Point ``latest`` at the restored version when it names nothing valid or an older version,
    as a fresh BentoML save would; a ``latest`` naming a newer version stays. Return what it names."""
    versions = {
        entry.name: read_version(kind, name_dir.name, entry.name, entry, None)
        for entry in _children(name_dir)
        if not entry.is_symlink()
    }
    current = versions.get(read_latest(name_dir) or "")
    candidate = versions[restored]
    if candidate.created_at is None:
        return current.version if current else None
    if current is None or current.created_at is None or current.created_at < candidate.created_at:
        write_file_atomically(name_dir / "latest", restored.encode())
        return restored
    return current.version


def _repair_dangling_latest(name_dir: Path, kind: ArtifactKind) -> bool:
    """Point a ``latest`` that names a missing version at the newest remaining one. Return True if it did."""
    latest = read_latest(name_dir)
    if latest is None or (name_dir / latest).is_dir():
        return False
    versions = [read_version(kind, name_dir.name, entry.name, entry, None) for entry in _children(name_dir)]
    valid = [artifact for artifact in versions if artifact.problem is None and artifact.created_at is not None]
    if not valid:
        return False
    newest = max(valid, key=lambda artifact: artifact.created_at)  # type: ignore[arg-type, return-value]
    write_file_atomically(name_dir / "latest", newest.version.encode())
    return True


def _children(directory: Path, strict: bool = False) -> list[Path]:
    """Return the sub-directories of ``directory`` (none if it is gone; with ``strict``, raise OSError if it cannot be listed)."""
    try:
        with os.scandir(directory) as entries:
            return [Path(entry.path) for entry in entries if entry.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError:
        # An entry a purge could not get into must not hide the rest of the trash from restore and status.
        if strict:
            raise
        return []


def _trashed_at(run_dir: Path) -> datetime:
    try:
        return datetime.fromisoformat((run_dir / TRASHED_AT_FILE).read_text().strip())
    except (OSError, ValueError):
        # No marker (an older layout, or a crash right after mkdir): the directory's mtime will do.
        return datetime.fromtimestamp(run_dir.lstat().st_mtime, timezone.utc)
