"""What earlier scans learned about each version directory, so the next scan need not read it again.

BentoML never changes a saved version, so a version directory whose identity is
unchanged still has the metadata, size and newest mtime measured last time. The
identity (``VersionKey``) is the directory's device, inode, mtime and ctime plus
the metadata file's inode, size, mtime and ctime: replacing the directory, adding
or removing an entry in it, or rewriting model.yaml in place (even with its mtime
put back, since ctime cannot be set) changes it. A version whose newest mtime is
within ``SETTLE_SECONDS`` of now may still be being written and is always walked
again. Content changed deeper inside an old version, without touching the
directory or its metadata file, is not noticed: versions are immutable.

The cache is one JSON file per store in ``daemon.state_dir``, replaced atomically.
It is best effort: a missing, unreadable or foreign file is an empty cache, and a
file that cannot be written is logged once and the scan goes on without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("retentiond")

FORMAT = 1
SETTLE_SECONDS = 600.0
VersionKey = tuple[int, int, int, int, int, int, int, int]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_KEY_LENGTH = 8
_warned: set[str] = set()
_active_state_dir: ContextVar[Path | None] = ContextVar("retentiond_scan_cache_dir", default=None)


@dataclass(frozen=True, slots=True)
class VersionFacts:
    """What a scan learns from one version directory, apart from where it is."""

    size_bytes: int
    newest_mtime: float
    created_at: datetime | None
    labels: dict[str, str]
    model_references: tuple[str, ...]
    problem: str | None


@contextlib.contextmanager
def scan_cache_in(state_dir: Path | None) -> Iterator[None]:
    """Within the block, ``scan_store`` calls without an explicit cache directory use ``state_dir``."""
    token = _active_state_dir.set(state_dir)
    try:
        yield
    finally:
        _active_state_dir.reset(token)


def active_state_dir() -> Path | None:
    """Return the state directory set by the innermost ``scan_cache_in`` block, if any."""
    return _active_state_dir.get()


def cache_path(state_dir: Path, home: Path) -> Path:
    """Return the cache file of the store at ``home`` inside ``state_dir`` (one file per store)."""
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    return state_dir / f"scancache-{digest}.json"


class ScanCache:
    """The facts of one store's version directories, read from and written back to one file."""

    def __init__(self, path: Path, home: Path, entries: dict[str, dict[str, list[Any]]]) -> None:
        self.path = path
        self.home = str(home)
        self._previous = entries
        self._current: dict[str, dict[str, list[Any]]] = {}
        self._kept = 0
        self._added = 0
        self.hits = 0

    @classmethod
    def load(cls, state_dir: Path, home: Path) -> ScanCache:
        """Given the state directory and the store, return its cache (empty if absent, unreadable or foreign)."""
        path = cache_path(state_dir, home)
        entries: dict[str, dict[str, list[Any]]] = {}
        try:
            with open(path, "rb") as handle:
                data = json.load(handle)
            if isinstance(data, dict) and data.get("format") == FORMAT and data.get("home") == str(home):
                loaded = data.get("entries")
                entries = loaded if isinstance(loaded, dict) else {}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as error:
            _warn_once(path, "scan_cache.unreadable", error)
        return cls(path, home, entries)

    def lookup(self, group: str, version: str, key: VersionKey, now: float) -> VersionFacts | None:
        """Return the remembered facts if the directory is the one measured then and has settled, else None."""
        record = self._previous.get(group, {}).get(version)
        if record is None or record[:_KEY_LENGTH] != list(key):
            return None
        try:
            facts = _facts_from_record(record)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if facts.newest_mtime >= now - SETTLE_SECONDS:
            return None
        self._current.setdefault(group, {})[version] = record
        self._kept += 1
        self.hits += 1
        return facts

    def remember(self, group: str, version: str, key: VersionKey, facts: VersionFacts, now: float) -> None:
        """Keep the facts of a directory that was just read, unless it may still be being written."""
        if facts.newest_mtime >= now - SETTLE_SECONDS:
            return
        self._current.setdefault(group, {})[version] = _record_from_facts(key, facts)
        self._added += 1

    @property
    def changed(self) -> bool:
        """True if this scan learned something new or no longer saw a remembered directory."""
        return self._added > 0 or self._kept != sum(len(versions) for versions in self._previous.values())

    def save(self) -> None:
        """Write what this scan saw back to the file, atomically, if it changed. Failures are logged once."""
        if not self.changed:
            return
        document = {"format": FORMAT, "home": self.home, "entries": self._current}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            _replace_file(self.path, json.dumps(document, separators=(",", ":")).encode())
        except OSError as error:
            _warn_once(self.path, "scan_cache.write_failed", error)


def _record_from_facts(key: VersionKey, facts: VersionFacts) -> list[Any]:
    created = None if facts.created_at is None else (facts.created_at - _EPOCH) // _MICROSECOND
    return [*key, facts.size_bytes, facts.newest_mtime, created, facts.labels, list(facts.model_references), facts.problem]


def _facts_from_record(record: list[Any]) -> VersionFacts:
    size_bytes, newest_mtime, created, labels, references, problem = record[_KEY_LENGTH:]
    if not isinstance(labels, dict) or not isinstance(references, list):
        raise TypeError("malformed cache record")
    return VersionFacts(
        size_bytes=int(size_bytes),
        newest_mtime=float(newest_mtime),
        created_at=None if created is None else _EPOCH + int(created) * _MICROSECOND,
        labels={str(k): str(v) for k, v in labels.items()},
        model_references=tuple(str(tag) for tag in references),
        problem=None if problem is None else str(problem),
    )


def _replace_file(path: Path, content: bytes) -> None:
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def _warn_once(path: Path, event: str, error: Exception) -> None:
    if str(path) in _warned:
        return
    _warned.add(str(path))
    log.warning(event, path=str(path), error=getattr(error, "strerror", None) or str(error))
