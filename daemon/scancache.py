"""What earlier scans learned about each version directory, so the next scan need not read it again.

BentoML never changes a saved version, so a version directory whose identity is
unchanged still has the metadata, size and newest mtime measured last time. The
identity (``VersionKey``) is the directory's device, inode, mtime and ctime plus
the metadata file's inode, size, mtime and ctime: replacing the directory, adding
or removing an entry in it, or rewriting model.yaml in place (even with its mtime
put back, since ctime cannot be set) changes it. A version whose newest mtime is
within ``SETTLE_SECONDS`` of now may still be being written: it is never taken
from the cache nor put into it. Content changed deeper inside an old version,
without touching the directory or its metadata file, is not noticed: versions
are immutable.

One file per store in ``daemon.state_dir``, replaced atomically: a checksum line,
a JSON line (format, store, versions per name, the few labels/references/problems and
why a bento's references are unknown) and then fixed-size binary records, one per
version, so that loading 100k versions costs a tenth of a second, not the half
second JSON numbers would. It is best effort: a missing, damaged or foreign file
is an empty cache, and a file that cannot be written is logged once and the scan
goes on without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import structlog

from daemon.files import write_file_atomically

log = structlog.get_logger("retentiond")

# 3: a bento's references_unknown is remembered (format 2 would read back as "known").
# 4: records carry disk_bytes. A cache of an older format is not read: every version is measured again.
FORMAT = 4
SETTLE_SECONDS = 600.0
VersionKey = tuple[int, int, int, int, int, int, int, int]
# key (8 × int64), size_bytes, newest_mtime, created_at in µs since the epoch (or _NO_TIME), disk_bytes
_RECORD = struct.Struct("<8qqdqq")
_NO_TIME = -(2**63)
_KEY_LENGTH = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_NOTHING: Mapping[str, int] = {}
_warned: set[str] = set()
_active_state_dir: ContextVar[Path | None] = ContextVar("retentiond_scan_cache_dir", default=None)


class VersionFacts(NamedTuple):
    """What a scan learns from one version directory, apart from where it is.

    ``size_bytes`` is the apparent size of its regular files (BentoML's own figure); ``disk_bytes`` the blocks
    allocated to everything in it, the directories included, as ``du`` counts them: what deleting it frees.
    """

    size_bytes: int
    disk_bytes: int
    newest_mtime: float
    created_at: datetime | None
    labels: dict[str, str]
    model_references: tuple[str, ...]
    problem: str | None
    references_unknown: str | None  # bentos: why model_references may not be all of them (None: they are)
    # Newest access time of the files other than the metadata file (0.0: none). Never cached: a read moves
    # it without touching the directory or the metadata file, so a cached value would go stale unseen.
    newest_atime: float | None = None


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
    return state_dir / f"scancache-{digest}.bin"


class ScanCache:
    """The facts of one store's version directories, read from and written back to one file."""

    def __init__(self, path: Path, home: Path, header: dict[str, Any] | None = None, records: bytes = b"") -> None:
        self.path = path
        self.home = str(home)
        self._records = records
        self._groups: list[tuple[str, list[str]]] = []
        self._index: dict[str, dict[str, int]] = {}
        self._extras: dict[str, list[Any]] = {}
        if header is not None:
            position = 0
            for group, versions in header["groups"].items():
                self._groups.append((group, versions))
                self._index[group] = dict(zip(versions, range(position, position + len(versions))))
                position += len(versions)
            self._extras = header["extras"]
        self._kept = bytearray(len(records) // _RECORD.size)
        self._new: dict[str, dict[str, tuple[bytes, list[Any] | None]]] = {}
        self.hits = 0

    @classmethod
    def load(cls, state_dir: Path, home: Path) -> ScanCache:
        """Given the state directory and the store, return its cache (empty if absent, damaged or foreign)."""
        path = cache_path(state_dir, home)
        try:
            with open(path, "rb") as handle:
                checksum, _, content = handle.read().partition(b"\n")
            if checksum.decode("ascii", "replace") != _checksum(content):
                raise ValueError("checksum mismatch")
            header_line, _, records = content.partition(b"\n")
            header = json.loads(header_line)
            if header.get("format") != FORMAT or header.get("home") != str(home):
                return cls(path, home)
            if len(records) != header["count"] * _RECORD.size or not isinstance(header["extras"], dict):
                raise ValueError("records do not match the header")
            return cls(path, home, header, records)
        except (FileNotFoundError, NotADirectoryError):
            return cls(path, home)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            _warn_once(path, "scan_cache.unreadable", error)
            return cls(path, home)

    def remembered(self, group: str) -> Mapping[str, int]:
        """Return the versions of one name directory an earlier scan remembered (valid or not): version → record."""
        return self._index.get(group, _NOTHING)

    def lookup(self, record_number: int, key: VersionKey, now: float) -> VersionFacts | None:
        """Given a record from ``remembered``, return its facts if the directory is the one measured then
        (same ``key``) and has settled, else None."""
        record = _RECORD.unpack_from(self._records, record_number * _RECORD.size)
        if record[:_KEY_LENGTH] != key or record[9] >= now - SETTLE_SECONDS:
            return None
        try:
            facts = _facts(record, self._extras.get(str(record_number)))
        except (TypeError, ValueError, OverflowError, AttributeError):
            return None
        self._kept[record_number] = 1
        self.hits += 1
        return facts

    def remember(self, group: str, version: str, key: VersionKey, facts: VersionFacts, now: float) -> None:
        """Keep the facts of a directory that was just read, unless it may still be being written."""
        if facts.newest_mtime >= now - SETTLE_SECONDS:
            return
        created = _NO_TIME if facts.created_at is None else (facts.created_at - _EPOCH) // _MICROSECOND
        record = _RECORD.pack(*key, facts.size_bytes, facts.newest_mtime, created, facts.disk_bytes)
        extras = None
        if facts.labels or facts.model_references or facts.problem is not None or facts.references_unknown is not None:
            extras = [facts.labels, list(facts.model_references), facts.problem, facts.references_unknown]
        self._new.setdefault(group, {})[version] = (record, extras)

    @property
    def changed(self) -> bool:
        """True if this scan learned something new or no longer saw a remembered directory."""
        return bool(self._new) or self.hits != len(self._kept)

    def save(self) -> None:
        """Write what this scan saw back to the file, atomically, if it changed. Failures are logged once."""
        if not self.changed:
            return
        kept: dict[str, dict[str, tuple[bytes, list[Any] | None]]] = {}
        record_number = 0
        for group, versions in self._groups:
            for version in versions:
                if self._kept[record_number]:
                    start = record_number * _RECORD.size
                    kept.setdefault(group, {})[version] = (
                        self._records[start : start + _RECORD.size], self._extras.get(str(record_number))
                    )
                record_number += 1
        for group, fresh in self._new.items():
            kept.setdefault(group, {}).update(fresh)
        groups: dict[str, list[str]] = {}
        extras: dict[str, list[Any]] = {}
        records: list[bytes] = []
        for group, entries in kept.items():
            groups[group] = list(entries)
            for record, extra in entries.values():
                if extra is not None:
                    extras[str(len(records))] = extra
                records.append(record)
        header = {"format": FORMAT, "home": self.home, "count": len(records), "groups": groups, "extras": extras}
        content = json.dumps(header, separators=(",", ":")).encode() + b"\n" + b"".join(records)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            write_file_atomically(self.path, _checksum(content).encode() + b"\n" + content, mode=0o600)
        except OSError as error:
            _warn_once(self.path, "scan_cache.write_failed", error)


def _facts(record: tuple[Any, ...], extras: list[Any] | None) -> VersionFacts:
    created = record[10]
    labels: dict[str, str] = {}
    references: tuple[str, ...] = ()
    problem = None
    references_unknown = None
    if extras is not None:
        raw_labels, raw_references, raw_problem, raw_unknown = extras
        # A hand-edited file must not smuggle in labels that are not strings: keep_labels compares them.
        labels = {str(name): str(value) for name, value in raw_labels.items()}
        references = tuple(map(str, raw_references))
        problem = None if raw_problem is None else str(raw_problem)
        references_unknown = None if raw_unknown is None else str(raw_unknown)
    created_at = None if created == _NO_TIME else _EPOCH + created * _MICROSECOND
    return VersionFacts(record[8], record[11], record[9], created_at, labels, references, problem, references_unknown)


def _checksum(blob: bytes) -> str:
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _warn_once(path: Path, event: str, error: Exception) -> None:
    if str(path) in _warned:
        return
    _warned.add(str(path))
    log.warning(event, path=str(path), error=getattr(error, "strerror", None) or str(error))
