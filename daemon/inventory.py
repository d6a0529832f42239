"""Read the BentoML store into an ``Inventory``, touching nothing.

Layout (REFERENCE.md §1): ``models/<name>/<version>/model.yaml``, ``models/<name>/latest``
(a plain file holding the version), the same for ``bentos/`` with ``bento.yaml``.
Symlinks are never followed. Whatever is not a complete, valid store entry becomes
an artifact with a ``problem`` (never deleted) or a warning. A bento, or a place
under ``bentos/``, whose model references cannot be read is recorded as such
(``Artifact.references_unknown``, ``Inventory.unreadable_bentos``): the policies then
delete no model version.

One ``scandir`` pass over the store; a version's facts come from the scan cache
(``daemon.scancache``) when its directory is unchanged, else from walking it and
reading its metadata with the fast reader (``daemon.metadata_reader``), PyYAML
being the fallback for anything unusual.
"""

from __future__ import annotations

import gc
import marshal
import os
import signal
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple, NoReturn

from daemon.errors import RunInterrupted
from daemon.layout import KIND_DIRS, read_latest, stat_identity
from daemon.metadata import read_metadata
from daemon.scancache import ScanCache, VersionFacts, VersionKey, active_state_dir
from daemon.tags import is_valid_tag_part
from policies.model import Artifact, ArtifactKind, Inventory, UnknownReferences

# A cold scan of at least this many versions is split with a forked child (about 60 µs a version each side).
SPLIT_MIN_VERSIONS = 2000
# A stop request is looked at every so many measured versions (a few milliseconds of a cold scan).
STOP_CHECK_VERSIONS = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_NO_FILE = (-1, -1, -1, -1)
_FILE_TYPE_BITS, _REGULAR, _DIRECTORY = 0o170000, stat.S_IFREG, stat.S_IFDIR  # mode & _FILE_TYPE_BITS is S_IFMT(mode)


def scan_store(
    home: Path, cache_dir: Path | None = None, stop: threading.Event | None = None, now: float | None = None
) -> Inventory:
    """Given a BentoML home, return every model and bento version in it, with warnings.

    ``cache_dir`` (default: the one set by ``scancache.scan_cache_in``, else none) holds the
    scan cache; ``now`` (seconds since the epoch; default: the clock) is the run's instant, which
    tells the cache what is too recent to trust. Raise OSError only if the ``models`` directory exists but cannot be listed
    (an unlistable ``bentos`` is recorded in ``Inventory.unreadable_bentos``), RunInterrupted
    (within a few hundred versions) once ``stop`` is set.
    """
    state_dir = cache_dir if cache_dir is not None else active_state_dir()
    cache = ScanCache.load(state_dir, home) if state_dir is not None else None
    # Taken before the listing: a bento saved while we scan then differs from it when the executor looks.
    fingerprint = bentos_fingerprint(home)
    with _no_cycle_collection():
        artifacts, notes = _scan_kinds(home, cache, time.time() if now is None else now, KIND_DIRS, stop)
    if cache is not None:
        cache.save()
    return Inventory(
        artifacts=tuple(artifacts), warnings=tuple(notes.warnings),
        unreadable_bentos=tuple(notes.unreadable), bentos_fingerprint=fingerprint,
    )


def scan_bentos(home: Path) -> Inventory:
    """Given a BentoML home, return its bentos alone, read afresh (no scan cache), as ``scan_store`` would.

    For the check before model deletions: bentos are few. Raise OSError only if ``home`` cannot be searched.
    """
    fingerprint = bentos_fingerprint(home)
    artifacts, notes = _scan_kinds(home, None, time.time(), ("bento",), None)
    return Inventory(
        artifacts=tuple(artifacts), warnings=tuple(notes.warnings),
        unreadable_bentos=tuple(notes.unreadable), bentos_fingerprint=fingerprint,
    )


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    # A scan allocates a few objects per version and no reference cycles; the cyclic collector would
    # walk the ever-growing heap again and again for nothing (a tenth of a cold scan).
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_Job = tuple[str, os.stat_result, str, str, str]
_Measured = tuple[VersionFacts, VersionKey, bool]


class _Found(NamedTuple):
    """A version directory seen by the listing pass; ``facts`` is None until it is measured."""

    kind: ArtifactKind
    name: str
    version: str
    path: str
    info: os.stat_result
    latest: str | None
    name_problem: str | None
    facts: VersionFacts | None


class _Notes:
    """What a scan reports besides artifacts: warnings, and the places under ``bentos/`` it could not read."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.unreadable: list[UnknownReferences] = []

    def not_read(self, kind: ArtifactKind, warning: str, subject: str, reason: str) -> None:
        """Warn about a place the scan skipped; if bentos may be in it, their references are unknown."""
        self.warnings.append(warning)
        if kind == "bento":
            self.unreadable.append(UnknownReferences(subject, reason))


def _scan_kinds(
    home: Path, cache: ScanCache | None, now: float, kinds: Iterable[ArtifactKind], stop: threading.Event | None
) -> tuple[list[Artifact], _Notes]:
    found: list[_Found] = []
    notes = _Notes()
    for kind in kinds:
        subdir = KIND_DIRS[kind][0]
        kind_root = home / subdir
        if kind_root.is_symlink():
            notes.not_read(kind, f"{subdir} is a symlink; not followed, nothing in it is ever deleted", subdir, "a symlink, not followed")
            continue
        if not kind_root.is_dir():
            continue
        try:
            name_entries = _sorted_entries(str(kind_root))
        except OSError as error:
            if kind != "bento":
                raise
            notes.not_read(kind, f"cannot list {kind_root}: {error.strerror}", subdir, f"cannot list it: {error.strerror}")
            continue
        for name_entry in name_entries:
            _check_stop(stop)
            if name_entry.is_symlink():
                place = f"{subdir}/{name_entry.name}"
                notes.not_read(kind, f"{place} is a symlink; not followed, never deleted", place, "a symlink, not followed")
                continue
            if not name_entry.is_dir(follow_symlinks=False):
                continue
            if not is_valid_tag_part(name_entry.name):
                # Such a directory breaks BentoML's own listing, even when it is empty.
                notes.warnings.append(f"{subdir}/{name_entry.name} is not a valid BentoML name; BentoML cannot list this store")
            found.extend(_scan_name(kind, name_entry.name, name_entry.path, notes, cache, now))
    # Versions the cache did not answer for are measured in one batch, which a large cold scan splits in two.
    unknown = [(item.path, item.info, KIND_DIRS[item.kind][1], item.name, item.version) for item in found if item.facts is None]
    measured = iter(_measure_versions(unknown, stop))
    artifacts = []
    for item in found:
        facts = item.facts
        if facts is None:
            facts, key, cacheable = next(measured)
            if facts.problem is not None and _vanished(item.path):
                continue  # deleted by someone else between the listing and the reading: nothing to report
            if cache is not None and cacheable:
                cache.remember(f"{KIND_DIRS[item.kind][0]}/{item.name}", item.version, key, facts, now)
        identity = (item.info.st_dev, item.info.st_ino, item.info.st_mtime_ns)
        artifacts.append(_artifact(item.kind, item.name, item.version, facts, identity, item.latest, item.name_problem))
    return artifacts, notes


def _vanished(path: str) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def store_fingerprint(home: Path) -> tuple[tuple[str, int], ...]:
    """Return the mtimes of ``models/``, ``bentos/`` and every name directory: a new or removed
    version changes it. Costs one stat per name, not a walk."""
    marks: list[tuple[str, int]] = []
    for subdir, _ in KIND_DIRS.values():
        kind_root = home / subdir
        try:
            marks.append((subdir, kind_root.lstat().st_mtime_ns))
            with os.scandir(kind_root) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        marks.append((f"{subdir}/{entry.name}", entry.stat(follow_symlinks=False).st_mtime_ns))
        except OSError:
            marks.append((subdir, -1))
    return tuple(sorted(marks))


def bentos_fingerprint(home: Path) -> tuple[object, ...]:
    """Return what ``bentos/`` looks like: the lstat of it, of every entry in it and in its name directories,
    and of each version's bento.yaml (or the error that stopped us). A bento saved, removed, replaced or
    rewritten changes it. Costs a few stats per bento version and reads nothing."""
    marks: list[tuple[object, ...]] = []
    root = str(home / KIND_DIRS["bento"][0])
    pending = [(root, 0)]  # depth 0: bentos/, 1: a name, 2: a version, 3: its bento.yaml
    while pending:
        path, depth = pending.pop()
        try:
            info = os.lstat(path)
            marks.append((path, info.st_mode, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
            if depth == 3 or not stat.S_ISDIR(info.st_mode):
                continue
            if depth == 2:
                pending.append((f"{path}/{KIND_DIRS['bento'][1]}", 3))
                continue
            with os.scandir(path) as entries:
                pending.extend((entry.path, depth + 1) for entry in entries)
        except OSError as error:
            marks.append((path, "error", error.errno))
    return tuple(sorted(marks, key=lambda mark: str(mark[0])))


def _sorted_entries(directory: str | int) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as entries:
        return sorted(entries, key=lambda entry: entry.name)


def _scan_name(
    kind: ArtifactKind, name: str, name_dir: str, notes: _Notes, cache: ScanCache | None, now: float
) -> list[_Found]:
    latest = read_latest(name_dir)
    place = f"{KIND_DIRS[kind][0]}/{name}"
    try:
        # Versions are stat'ed relative to the open name directory: shorter lookups, and no symlink swapped in.
        name_fd = os.open(name_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        notes.not_read(kind, f"{kind} {name}: cannot list {name_dir}: {error.strerror}", place, f"cannot list it: {error.strerror}")
        return []
    try:
        entries = _sorted_entries(name_fd)
        found = _scan_versions(kind, name, name_dir, name_fd, entries, latest, notes, cache, now)
    except OSError as error:
        notes.not_read(kind, f"{kind} {name}: cannot list {name_dir}: {error.strerror}", place, f"cannot list it: {error.strerror}")
        return []
    finally:
        os.close(name_fd)
    if latest is not None and not any(item.version == latest for item in found):
        notes.warnings.append(f"{kind} {name}: latest names {latest!r}, which does not exist")
    return found


def _scan_versions(
    kind: ArtifactKind,
    name: str,
    name_dir: str,
    name_fd: int,
    entries: list[os.DirEntry[str]],
    latest: str | None,
    notes: _Notes,
    cache: ScanCache | None,
    now: float,
) -> list[_Found]:
    subdir, metadata_name = KIND_DIRS[kind]
    name_problem = None if is_valid_tag_part(name) else f"invalid name {name!r}"
    remembered = cache.remembered(f"{subdir}/{name}") if cache is not None else {}
    found = []
    for entry in entries:
        version = entry.name
        if entry.is_symlink():
            warning = f"{kind} {name}:{version} is a symlink; not followed, never deleted"
            notes.not_read(kind, warning, f"{subdir}/{name}/{version}", "a symlink, not followed")
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # deleted while we looked: it is no longer part of the store
        facts = None
        record_number = remembered.get(version)
        if record_number is not None and cache is not None:
            # The metadata file is stat'ed too: rewriting it in place leaves the directory's own times alone.
            try:
                metadata_info: os.stat_result | None = os.stat(f"{version}/{metadata_name}", dir_fd=name_fd, follow_symlinks=False)
            except OSError:
                metadata_info = None
            facts = cache.lookup(record_number, _version_key(info, metadata_info), now)
        found.append(_Found(kind, name, version, f"{name_dir}/{version}", info, latest, name_problem, facts))
    return found


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise RunInterrupted("stopped while scanning the store; nothing was deleted", "scan")


def _measure_versions(jobs: list[_Job], stop: threading.Event | None = None) -> list[_Measured]:
    """Given (path, directory lstat, metadata file name, name, version) per version directory, return
    ``_measure`` of each, in order. A large batch is split with one forked child when there are 2 cores.
    Raise RunInterrupted once ``stop`` is set."""
    if len(jobs) < SPLIT_MIN_VERSIONS or not _may_fork():
        return _measure_each(jobs, stop)
    return _measure_split(jobs, stop)


def _measure_each(jobs: list[_Job], stop: threading.Event | None) -> list[_Measured]:
    if stop is None:
        return [_measure(*job) for job in jobs]
    measured: list[_Measured] = []
    for start in range(0, len(jobs), STOP_CHECK_VERSIONS):
        _check_stop(stop)
        measured.extend(_measure(*job) for job in jobs[start : start + STOP_CHECK_VERSIONS])
    return measured


def _may_fork() -> bool:
    # Forking a process that runs other threads (the daemon's scheduler) can leave the child waiting on a
    # lock one of them held; plan and apply scan before they start any.
    if not hasattr(os, "fork") or threading.active_count() != 1:
        return False
    return len(os.sched_getaffinity(0)) > 1 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) > 1


def _measure_split(jobs: list[_Job], stop: threading.Event | None) -> list[_Measured]:
    """Measure the first half here and the second in a forked child, which sends plain values back
    through a pipe. If the child fails in any way, its half is measured here: the answer is the same."""
    half = len(jobs) // 2
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return _measure_each(jobs, stop)
    if pid == 0:
        os.close(read_fd)
        _measure_in_child(jobs[half:], write_fd)
    os.close(write_fd)
    status = -1
    with open(read_fd, "rb") as pipe:
        try:
            first = _measure_each(jobs[:half], stop)
            payload = pipe.read()
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            raise
        finally:
            with suppress(ChildProcessError):
                status = os.waitpid(pid, 0)[1]
    second = _from_rows(payload, len(jobs) - half) if status == 0 else None
    if second is None:
        second = _measure_each(jobs[half:], stop)
    return first + second


def _measure_in_child(jobs: list[_Job], write_fd: int) -> NoReturn:
    # The child must never return into the parent's code (nor flush its buffers, nor run its atexit hooks).
    code = 1
    try:
        # The parent decides when to stop (and kills this child then); a signal meant for it must not
        # run the parent's handlers here too.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        rows = []
        for job in jobs:
            facts, key, cacheable = _measure(*job)
            created = None if facts.created_at is None else (facts.created_at - _EPOCH) // _MICROSECOND
            rows.append((facts.size_bytes, facts.disk_bytes, facts.newest_mtime, created, facts.labels,
                         facts.model_references, facts.problem, facts.references_unknown, key, cacheable, facts.newest_atime))
        with open(write_fd, "wb") as pipe:
            pipe.write(marshal.dumps(rows))
        code = 0
    finally:
        os._exit(code)


def _from_rows(payload: bytes, count: int) -> list[_Measured] | None:
    try:
        rows = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None
    if not isinstance(rows, list) or len(rows) != count:
        return None
    return [
        (VersionFacts(size, disk, newest, None if created is None else _EPOCH + created * _MICROSECOND, labels, references,
                      problem, references_unknown, newest_atime),
         key, cacheable)
        for size, disk, newest, created, labels, references, problem, references_unknown, key, cacheable, newest_atime
        in rows
    ]


def read_version(kind: ArtifactKind, name: str, version: str, path: Path, latest: str | None) -> Artifact:
    """Given one version directory, return its Artifact read afresh (no cache); problems are recorded, never raised.

    Raise FileNotFoundError if the directory does not exist.
    """
    directory_info = path.lstat()
    facts, _, _ = _measure(str(path), directory_info, KIND_DIRS[kind][1], name, version)
    name_problem = None if is_valid_tag_part(name) else f"invalid name {name!r}"
    return _artifact(kind, name, version, facts, stat_identity(directory_info), latest, name_problem)


def read_access_time(kind: ArtifactKind, path: str) -> tuple[float, str | None]:
    """Given a version directory, return the newest access time of its files other than the metadata
    file that were read after they were written (0.0: none) and the first problem listing it (None: every
    directory was read).

    Raise OSError if the directory itself cannot be stat'ed.
    """
    _, _, _, newest_atime, _, problem = _walk(path, os.lstat(path), KIND_DIRS[kind][1])
    return newest_atime, problem


def _artifact(
    kind: ArtifactKind,
    name: str,
    version: str,
    facts: VersionFacts,
    identity: tuple[int, int, int],
    latest: str | None,
    name_problem: str | None,
) -> Artifact:
    problem = facts.problem
    if name_problem is not None:
        problem = name_problem
    elif not is_valid_tag_part(version):
        problem = f"invalid version {version!r}"
    return Artifact(
        kind=kind,
        name=name,
        version=version,
        created_at=facts.created_at,
        modified_at=datetime.fromtimestamp(facts.newest_mtime, timezone.utc),
        size_bytes=facts.size_bytes,
        disk_bytes=facts.disk_bytes,
        labels=facts.labels,
        is_latest=latest == version,
        model_references=facts.model_references,
        problem=problem,
        identity=identity,
        last_read_at=datetime.fromtimestamp(facts.newest_atime, timezone.utc) if facts.newest_atime else None,
        references_unknown=facts.references_unknown if kind == "bento" else None,
    )


def _measure(
    path: str, directory_info: os.stat_result, metadata_name: str, name: str, version: str
) -> tuple[VersionFacts, VersionKey, bool]:
    """Walk a version directory and read its metadata file: (facts, cache key, whether the facts may be cached).

    Facts that an I/O error shaped (an unlistable sub-directory, an unreadable metadata file) are not
    cached: the error may be gone next time.
    """
    size_bytes, disk_bytes, newest_mtime, newest_atime, metadata_info, walk_problem = _walk(path, directory_info, metadata_name)
    size_hint = metadata_info.st_size if metadata_info is not None else 4096
    regular_file = metadata_info is not None and metadata_info.st_mode & _FILE_TYPE_BITS == _REGULAR
    fields, problem, io_failed = read_metadata(
        f"{path}/{metadata_name}", metadata_name, name, version, size_hint, regular_file=regular_file
    )
    facts = VersionFacts(
        size_bytes=size_bytes,
        disk_bytes=disk_bytes,
        newest_mtime=newest_mtime,
        created_at=fields.get("created_at"),
        labels=fields.get("labels", {}),
        model_references=fields.get("model_references", ()),
        problem=problem or walk_problem,
        newest_atime=newest_atime,
        references_unknown=fields["references_unknown"],
    )
    return facts, _version_key(directory_info, metadata_info), walk_problem is None and not io_failed


def _walk(
    root: str, root_info: os.stat_result, metadata_name: str
) -> tuple[int, int, float, float, os.stat_result | None, str | None]:
    """Sum the apparent size of regular files and the disk usage of everything (as ``du``: allocated blocks of
    every entry and of ``root`` itself), and find the newest mtime, without following links.

    Also return the newest access time of the regular files other than the metadata file, counting a file
    only once it was read after it was last written (0.0: none; directories' access times move when anyone
    lists them, retentiond included), the metadata
    file's lstat (taken before it is read) and the first listing problem.
    """
    size_bytes = 0
    blocks = root_info.st_blocks
    newest = root_info.st_mtime
    newest_atime = 0.0
    metadata_info = None
    problem = None
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    info = entry.stat(follow_symlinks=False)
                    blocks += info.st_blocks
                    if info.st_mtime > newest:
                        newest = info.st_mtime
                    # The hottest loop of a cold scan: the mode test inlined instead of S_ISREG/S_ISDIR calls.
                    file_type = info.st_mode & _FILE_TYPE_BITS
                    if file_type == _REGULAR:
                        size_bytes += info.st_size
                        # Writing a file sets its atime too: only an atime past the mtime is a read.
                        atime = info.st_atime
                        if atime > newest_atime and atime > info.st_mtime and not (directory is root and entry.name == metadata_name):
                            newest_atime = atime
                    elif file_type == _DIRECTORY:
                        pending.append(entry.path)
                    if directory is root and entry.name == metadata_name:
                        metadata_info = info
        except OSError as error:
            problem = problem or f"cannot read {directory}: {error.strerror}"
    # st_blocks counts 512-byte units whatever the filesystem's block size (POSIX, and what du -B1 reports).
    return size_bytes, blocks * 512, newest, newest_atime, metadata_info, problem


def tree_size(path: Path) -> int:
    """Given a file or a directory, return the apparent size of the regular files in it (0 if it is gone).

    Never follows links; what cannot be listed is not counted.
    """
    return tree_usage(path)[0]


def tree_usage(path: Path) -> tuple[int, int]:
    """Given a file or a directory, return (apparent size of its regular files, disk usage as ``du`` counts it);
    (0, 0) if it is gone. Never follows links; what cannot be listed is not counted."""
    try:
        info = os.lstat(path)
    except OSError:
        return 0, 0
    if not stat.S_ISDIR(info.st_mode):
        return (info.st_size if stat.S_ISREG(info.st_mode) else 0), info.st_blocks * 512
    size_bytes, disk_bytes, *_ = _walk(str(path), info, "")
    return size_bytes, disk_bytes


def _version_key(directory_info: os.stat_result, metadata_info: os.stat_result | None) -> VersionKey:
    file_part = _NO_FILE if metadata_info is None else (
        metadata_info.st_ino, metadata_info.st_size, metadata_info.st_mtime_ns, metadata_info.st_ctime_ns
    )
    return (directory_info.st_dev, directory_info.st_ino, directory_info.st_mtime_ns, directory_info.st_ctime_ns, *file_part)
