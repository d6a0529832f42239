"""Purging the trash: remove what can be removed, remember and report what cannot.

A trash entry is one trashed version, ``<trash>/<run>/<kind>s/<name>/<version>``. When a purge cannot
remove all of it (an immutable file, an NFS ``.nfsXXXX`` file another client holds open, a directory of
another owner), it becomes a *stuck* entry: its remaining bytes are counted, it is reported once per run,
and the next run tries again. Nothing here raises for an OSError.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from daemon.files import RemovalFailure, remove_tree
from daemon.inventory import tree_usage
from daemon.layout import KIND_DIRS
from policies.model import ArtifactKind

_KIND_OF_SUBDIR: dict[str, ArtifactKind] = {subdir: kind for kind, (subdir, _) in KIND_DIRS.items()}


@dataclass(frozen=True)
class StuckEntry:
    """A trash entry that a purge could not remove completely.

    ``size_bytes`` is what is left of it (apparent size), ``disk_bytes`` the disk space that still takes;
    ``error`` names the first path that refused and why.
    """

    path: Path
    error: str
    size_bytes: int
    kind: ArtifactKind | None = None
    name: str | None = None
    version: str | None = None
    disk_bytes: int = 0

    def note(self) -> str:
        """Return what the deletion of this version reports: its bytes were not freed."""
        return f"{self.disk_bytes} bytes on disk remain in the trash: {self.error}; retried next run"

    def describe(self) -> str:
        what = f"{self.kind} {self.name}:{self.version}" if self.version else str(self.path)
        return f"trash entry {what} cannot be purged: {self.note()}"

    def audit_fields(self) -> dict[str, object]:
        return {
            "path": str(self.path), "error": self.error, "size_bytes": self.size_bytes, "disk_bytes": self.disk_bytes,
            "kind": self.kind, "name": self.name, "version": self.version,
        }


class StuckEntries:
    """The entries of one trash that a run could not purge; each is reported once per run."""

    def __init__(self, trash_dir: Path, report: Callable[[StuckEntry], None] | None = None) -> None:
        self.trash_dir = trash_dir
        self._report = report
        self._entries: dict[Path, StuckEntry] = {}
        self._reported: set[Path] = set()

    def __iter__(self) -> Iterator[StuckEntry]:
        return iter(list(self._entries.values()))

    def get(self, path: Path) -> StuckEntry | None:
        return self._entries.get(path)

    def note(self, failures: list[RemovalFailure], tried: Iterable[Path] = ()) -> list[StuckEntry]:
        """Given what a purge of ``tried`` could not remove, group it by trash entry, remember and report it.

        Entries under ``tried`` that are not among the failures went: they are forgotten. Return the stuck entries.
        """
        for path in tried:
            for known in [known for known in self._entries if known == path or path in known.parents]:
                del self._entries[known]
        grouped: dict[Path, list[RemovalFailure]] = {}
        for failure in failures:
            grouped.setdefault(self._entry_of(Path(failure.path)), []).append(failure)
        entries = []
        for path, group in grouped.items():
            more = f" (and {len(group) - 1} more)" if len(group) > 1 else ""
            size_bytes, disk_bytes = tree_usage(path)
            entry = StuckEntry(path, group[0].describe() + more, size_bytes, *self._tag_of(path), disk_bytes=disk_bytes)
            entries.append(entry)
            self._entries[path] = entry
            if path not in self._reported:
                self._reported.add(path)
                if self._report is not None:
                    self._report(entry)
        return entries

    def is_entry(self, path: Path) -> bool:
        """Return True if ``path`` lies inside the trash, with no link on the way (paths to retry come from a file)."""
        if ".." in path.parts or not path.is_relative_to(self.trash_dir) or path == self.trash_dir:
            return False
        current = self.trash_dir
        for part in path.relative_to(self.trash_dir).parts:
            current = current / part
            if current.is_symlink():
                return False
        return True

    def _entry_of(self, path: Path) -> Path:
        """Return the trash entry ``<run>/<kind>s/<name>/<version>`` a path belongs to (or the path itself)."""
        if not path.is_relative_to(self.trash_dir) or path == self.trash_dir:
            return path
        return self.trash_dir.joinpath(*path.relative_to(self.trash_dir).parts[:4])

    def _tag_of(self, entry: Path) -> tuple[ArtifactKind | None, str | None, str | None]:
        parts = entry.relative_to(self.trash_dir).parts if entry.is_relative_to(self.trash_dir) else ()
        if len(parts) == 4 and parts[1] in _KIND_OF_SUBDIR:
            return _KIND_OF_SUBDIR[parts[1]], parts[2], parts[3]
        return None, None, None


class Purger:
    """One worker thread that removes trashed versions in the order they were handed over."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self._stop = stop if stop is not None else threading.Event()
        self._queue: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._failures: list[RemovalFailure] = []
        # A daemon thread: if the process dies, what it did not get to is trash that the next run empties.
        self._thread = threading.Thread(target=self._work, name="retentiond-trash", daemon=True)
        self._thread.start()

    def put(self, trashed: Path) -> None:
        self._queue.put(trashed)

    def join(self) -> list[RemovalFailure]:
        """Wait for the queue to empty; return every path that could not be removed."""
        self._queue.put(None)
        self._thread.join()
        return self._failures

    def _work(self) -> None:
        while (trashed := self._queue.get()) is not None:
            if self._stop.is_set():
                continue  # left in the trash: the next run empties it
            # The list is read only after join(). remove_tree reports instead of raising; anything else it
            # raised would end this thread silently, so it is reported as well.
            try:
                self._failures.extend(remove_tree(trashed))
            except Exception as error:  # noqa: BLE001
                self._failures.append(RemovalFailure(str(trashed), f"{type(error).__name__}: {error}"))
