"""The locked store: the one place that changes a BentoML home.

Delete = re-check identity under the lock → rename the version directory into
``<home>/.retentiond/trash/`` (one atomic rename on the same filesystem, so the
store never shows a half-deleted version) → repair ``latest`` if it named the
deleted version → remove an emptied name directory → remove the trash. A run
that dies half-way leaves only trash, which the next run empties first.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path

import structlog
from filelock import FileLock, Timeout

from daemon.errors import ConfigError, RunInterrupted, StoreBusyError
from daemon.files import write_file_atomically
from daemon.instants import utc_now
from daemon.inventory import read_version
from daemon.layout import KIND_DIRS, STATE_DIR_NAME, TRASHED_AT_FILE, read_latest, stat_identity
from daemon.metadata import read_metadata
from daemon.tags import is_valid_tag_part
from policies.model import Artifact, ArtifactKind

if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - every supported Linux has it
    raise ImportError("retentiond needs a shutil.rmtree that resists symlink attacks")


LOCK_POLL_SECONDS = 0.1
log = structlog.get_logger("retentiond")


class SkipAction(Exception):
    """The store no longer looks as the plan saw it; the action is skipped, not failed."""


def check_store_root(home: Path) -> Path:
    """Given ``store.home``, return it resolved. Raise ConfigError if it is not a BentoML home or cannot be looked at."""
    try:
        return _check_store_root(home)
    except (OSError, RuntimeError) as error:  # a parent we may not search, a name too long, a symlink loop
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"store.home {home}: cannot look at it: {reason}") from None


def _check_store_root(home: Path) -> Path:
    if not home.exists():
        raise ConfigError(f"store.home {home} does not exist")
    if home.is_symlink():
        home = home.resolve()
    resolved = home.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise ConfigError(f"store.home {home} is {resolved}; refusing to treat it as a BentoML home")
    if not resolved.is_dir():
        raise ConfigError(f"store.home {home} is not a directory")
    markers = [resolved / subdir for subdir, _ in KIND_DIRS.values()]
    if not any(marker.is_dir() and not marker.is_symlink() for marker in markers):
        raise ConfigError(f"store.home {home} is not a BentoML home: it has no models/ or bentos/ directory")
    # The lock and the trash must live inside the store they guard, never behind a link.
    for ours in (resolved / STATE_DIR_NAME, resolved / STATE_DIR_NAME / "trash"):
        if ours.is_symlink() or (ours.exists() and not ours.is_dir()):
            raise ConfigError(f"{ours} is a symlink or not a directory; refusing to lock or delete through it")
    return resolved


class Store:
    """A BentoML home that retentiond may change, only while holding its lock."""

    def __init__(self, home: Path, clock: Callable[[], datetime] = utc_now) -> None:
        self.home = home
        self.clock = clock
        # The run's instant: read once from ``clock`` when the lock is taken (None until then).
        self.locked_at: datetime | None = None
        self.state_dir = home / STATE_DIR_NAME
        self.trash_dir = self.state_dir / "trash"
        self.lock_path = self.state_dir / "lock"
        self.holder_path = self.state_dir / "lock.holder"
        self._trash_parents: set[Path] = set()  # made in this process: no mkdir per deletion

    @contextmanager
    def locked(self, wait_seconds: float = 0, stop: threading.Event | None = None) -> Iterator[datetime]:
        """Hold the store's exclusive lock for the block, waiting up to ``wait_seconds`` for it; yield the
        instant it was taken (read once from the clock: the run decides and records as of it).

        Raise StoreBusyError if another run keeps it that long, RunInterrupted if ``stop`` is set first.
        """
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        lock = FileLock(self.lock_path, thread_local=False)
        self._acquire(lock, wait_seconds, stop)
        try:
            self.locked_at = self.clock()
            self._write_holder(self.locked_at)
            yield self.locked_at
        finally:
            self.locked_at = None
            # Before the release, while no other run can have written its own note: a note left behind would name
            # this process to whoever next finds the store busy, whatever holds the lock then.
            with suppress(OSError):
                self.holder_path.unlink()
            lock.release()

    def _acquire(self, lock: FileLock, wait_seconds: float, stop: threading.Event | None) -> None:
        # In slices, so that a stop request (SIGTERM of a timer unit waiting with --wait) ends the wait at once.
        deadline = time.monotonic() + wait_seconds
        said_waiting = False
        while True:
            if stop is not None and stop.is_set():
                raise RunInterrupted("stopped before the store was locked; nothing was done", "lock")
            try:
                lock.acquire(timeout=min(LOCK_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
                return
            except Timeout:
                if time.monotonic() >= deadline:
                    raise StoreBusyError(f"store {self.home} is busy: locked by {self._describe_holder()}") from None
            if not said_waiting:
                said_waiting = True
                log.info("store.lock_waiting", store=str(self.home), holder=self._describe_holder(), wait_seconds=wait_seconds)

    def _write_holder(self, since: datetime) -> None:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv[:2]),
            "since": since.isoformat(timespec="seconds"),
        }
        write_file_atomically(self.holder_path, json.dumps(holder).encode())

    def _describe_holder(self) -> str:
        try:
            holder = json.loads(self.holder_path.read_text())
            described = f"pid {holder['pid']} on {holder['host']} ({holder['command']}, since {holder['since']})"
            if holder["host"] == socket.gethostname() and not _process_exists(int(holder["pid"])):
                # A run killed with SIGKILL leaves its note; the lock is held by someone else now.
                return f"another process (holder unknown: the last note names {described}, which has ended)"
            return described
        except (OSError, ValueError, KeyError, TypeError, OverflowError):
            return "another process (holder unknown)"

    def version_path(self, kind: ArtifactKind, name: str, version: str) -> Path:
        """Return the directory of a version, refusing any name that could leave the store."""
        if not (is_valid_tag_part(name) and is_valid_tag_part(version)):
            raise SkipAction(f"{name}:{version} is not a valid BentoML tag")
        return self.home / KIND_DIRS[kind][0] / name / version

    def recheck(self, artifact: Artifact) -> Path:
        """Given a planned deletion, return its directory if it is still what the plan saw.

        Raise SkipAction when it vanished, became a symlink, changed, or turned into latest.
        """
        path = self.version_path(artifact.kind, artifact.name, artifact.version)
        version_dir = str(path)
        name_dir = os.path.dirname(version_dir)
        for directory in (os.path.dirname(name_dir), name_dir, version_dir):
            try:
                info = os.lstat(directory)
            except FileNotFoundError:
                raise SkipAction(f"{directory} is gone (someone else deleted it)") from None
            if not stat.S_ISDIR(info.st_mode):
                raise SkipAction(f"{directory} is no longer a plain directory")
        if artifact.identity and stat_identity(info) != artifact.identity:
            raise SkipAction("the version directory changed since it was planned")
        if read_latest(name_dir) == artifact.version:
            raise SkipAction("it became the latest version")
        # Only the metadata file is read again (no size walk): identity above already ties the directory to the plan.
        metadata_name = KIND_DIRS[artifact.kind][1]
        fields, _, _ = read_metadata(f"{version_dir}/{metadata_name}", metadata_name, artifact.name, artifact.version, 4096)
        if fields.get("created_at") != artifact.created_at or fields.get("labels") != dict(artifact.labels):
            raise SkipAction("its metadata changed since it was planned")
        return path

    def move_to_trash(self, path: Path, run_id: str) -> Path:
        """Rename a version directory into the trash (atomic); return where it went."""
        kind_dir, name, version = path.parts[-3:]
        parent = self.trash_dir / run_id / kind_dir / name
        if parent not in self._trash_parents:
            self._make_trash_parent(parent)
        destination = parent / version
        try:
            os.rename(path, destination)
        except FileNotFoundError:
            if not path.is_dir() or parent.is_dir():
                raise
            # Someone removed the trash directory under us: make it again, once.
            self._make_trash_parent(parent)
            os.rename(path, destination)
        return destination

    def _make_trash_parent(self, parent: Path) -> None:
        self.make_trash_run(parent.parent.parent.name)
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._trash_parents.add(parent)

    def make_trash_run(self, run_id: str) -> Path:
        """Return this run's directory in the trash, made (with its ``trashed_at`` marker: the run's instant,
        or the clock's when no lock is held) if it is not there yet."""
        run_dir = self.trash_dir / run_id
        if not run_dir.is_dir():
            stamp = self.locked_at if self.locked_at is not None else self.clock()
            run_dir.mkdir(parents=True, mode=0o700)
            write_file_atomically(run_dir / TRASHED_AT_FILE, stamp.isoformat(timespec="seconds").encode())
        return run_dir

    def repair_latest(self, kind: ArtifactKind, name: str, deleted_version: str, *, maybe_emptied: bool = True) -> str | None:
        """After a deletion, point ``latest`` at the newest remaining version if it named the deleted one.

        A ``latest`` naming another version is left alone. An emptied name directory is removed; with
        ``maybe_emptied=False`` (the caller saw versions of the name that it is not deleting) the name
        directory is not listed, and the caller runs remove_emptied_name_dir() once at the end instead.
        Return what ``latest`` now names, or None.
        """
        name_dir = self.home / KIND_DIRS[kind][0] / name
        if maybe_emptied and remove_name_dir_if_emptied(name_dir):
            return None
        current = read_latest(name_dir)
        if current != deleted_version:
            # Nothing to repair: the remaining versions are not read (that would be O(n²) over a run).
            return current
        remaining = self._remaining_versions(kind, name_dir)
        valid = [artifact for artifact in remaining if artifact.created_at is not None and artifact.problem is None]
        if not valid:
            return current
        newest = max(valid, key=lambda artifact: artifact.created_at)  # type: ignore[arg-type, return-value]
        write_file_atomically(name_dir / "latest", newest.version.encode())
        return newest.version

    def remove_emptied_name_dir(self, kind: ArtifactKind, name: str) -> bool:
        """Remove ``<kind>s/<name>`` if no version is left in it (someone else may have deleted the rest)."""
        return remove_name_dir_if_emptied(self.home / KIND_DIRS[kind][0] / name)

    def _remaining_versions(self, kind: ArtifactKind, name_dir: Path) -> list[Artifact]:
        remaining = []
        with os.scandir(name_dir) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    remaining.append(read_version(kind, name_dir.name, entry.name, Path(entry.path), None))
        return remaining


def remove_name_dir_if_emptied(name_dir: Path) -> bool:
    """Remove ``models/<name>`` once no version is left in it, as BentoML does. Return True if it went."""
    try:
        with os.scandir(name_dir) as entries:
            if any(entry.is_dir(follow_symlinks=False) or entry.is_symlink() for entry in entries):
                return False
    except FileNotFoundError:
        return True
    _remove_name_dir(name_dir)
    return not name_dir.exists()


def _remove_name_dir(name_dir: Path) -> None:
    # Only plain files (latest, our own temp files) can be left here; BentoML does the same.
    with os.scandir(name_dir) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
    with suppress(OSError):
        name_dir.rmdir()




def _process_exists(pid: int) -> bool:
    """Return whether a process ``pid`` runs on this machine (one of another user counts: EPERM)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
