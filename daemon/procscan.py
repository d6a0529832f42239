"""Which version directories of a store the running processes hold, read straight from ``/proc``.

A process holds a version when it has a file under the version directory open
(``/proc/<pid>/fd``), a file under it memory-mapped (``/proc/<pid>/maps``: loaded
weights stay mapped after their descriptor is closed) or its working directory
inside it (``/proc/<pid>/cwd``). Paths are compared with the store root resolved
once; the kernel appends `` (deleted)`` to a path whose file was removed, which is
stripped. A path outside the root (a bind mount, a process in another mount
namespace) is matched by device and inode instead: when the file lies on a
device that holds versions, its directories are looked up one by one, through
``/proc/<pid>/root``, against the version directories' (device, inode), with
each answer remembered for the rest of the scan.

``/proc`` is read directly rather than through psutil: psutil's ``memory_maps``
parses ``smaps`` (the kernel walks every page table to write it) and
``open_files`` reads ``fdinfo`` per descriptor; ``bench/inuse.py`` measures both.

A process that exits while it is read holds nothing (``vanished``). One that
cannot be read (another user's, one that is not dumpable) is listed in
``unreadable`` with its user ids, for the caller to decide (``daemon.inuse``).
Kernel threads and zombies hold no files and are skipped. If ``/proc`` itself
cannot be listed, ``failure`` says why: nothing can be known.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

VersionKey = tuple[str, str, str]  # (kind, name, version)
Identity = tuple[int, int]  # (st_dev, st_ino) of a version directory

KINDS = {"models": "model", "bentos": "bento"}
DELETED = " (deleted)"
COMMAND_LENGTH = 60
_OWN_PID = str(os.getpid())
_PROC = "/proc"


@dataclass(frozen=True)
class Unreadable:
    """A process whose descriptors, maps or working directory could not be read."""

    pid: int
    user_ids: frozenset[int]  # real, effective, saved and filesystem uid; empty when unknown
    command: str


@dataclass
class ProcessScan:
    """What one pass over ``/proc`` found: the pids holding each version key, and what it could not read."""

    held: dict[VersionKey, list[int]] = field(default_factory=dict)
    unreadable: list[Unreadable] = field(default_factory=list)
    processes: int = 0
    vanished: int = 0
    seconds: float = 0.0
    failure: str | None = None

    def hold(self, key: VersionKey, pid: int) -> None:
        pids = self.held.setdefault(key, [])
        if pid not in pids:
            pids.append(pid)


def scan_processes(
    root: str, identities: Mapping[Identity, VersionKey] | None = None, *, working_directories_only: bool = False
) -> ProcessScan:
    """Given the resolved store root, return which version keys running processes hold.

    ``identities`` maps the (device, inode) of version directories to their keys; with it,
    paths outside the root on a device of the store are matched by inode (bind mounts,
    other mount namespaces). ``working_directories_only`` reads only where each process
    stands (a tenth of the cost: maps are most of it).
    """
    started = time.perf_counter()
    scan = ProcessScan()
    reader = _Reader(root, identities or {}, not working_directories_only)
    try:
        entries = os.listdir(_PROC)
    except OSError as error:
        scan.failure = f"cannot list {_PROC}: {error.strerror or error}"
        return scan
    for entry in entries:
        if not entry.isdigit() or entry == _OWN_PID:
            continue
        scan.processes += 1
        reader.read_process(entry, scan)
    scan.seconds = time.perf_counter() - started
    return scan


def version_key(root_prefix: str, path: str) -> VersionKey | None:
    """Given ``<root>/`` and an absolute path, return the (kind, name, version) it lies in, or None."""
    if not path.startswith(root_prefix):
        return None
    if path.endswith(DELETED):
        path = path[: -len(DELETED)]
    parts = path[len(root_prefix):].split("/", 3)
    if len(parts) < 3 or parts[0] not in KINDS or not parts[1] or not parts[2]:
        return None
    return (KINDS[parts[0]], parts[1], parts[2])


def command_line(pid: int | str) -> str:
    """Return a process's command line, arguments joined by spaces and shortened; ``[comm]`` if it has none."""
    try:
        with open(f"{_PROC}/{pid}/cmdline", "rb") as handle:
            raw = handle.read(4096)
    except OSError:
        return "?"
    text = os.fsdecode(raw.rstrip(b"\0").replace(b"\0", b" "))
    if not text:
        try:
            with open(f"{_PROC}/{pid}/comm", "rb") as handle:
                text = f"[{os.fsdecode(handle.read().strip())}]"
        except OSError:
            return "?"
    return text if len(text) <= COMMAND_LENGTH else text[: COMMAND_LENGTH - 1] + "…"


class _Vanished(Exception):
    """The process exited while it was read."""


class _Reader:
    """Reads processes for one scan; remembers device/inode answers across processes."""

    def __init__(self, root: str, identities: Mapping[Identity, VersionKey], files: bool) -> None:
        self.files = files
        self.prefix = root.rstrip("/") + "/"
        # The kernel writes a newline in a maps path as \012; the root is searched for as the kernel writes it.
        self.maps_prefix = os.fsencode(self.prefix).replace(b"\n", b"\\012")
        self.identities = identities
        self.devices = {device for device, _ in identities}
        self.maps_by_device = _maps_pattern(self.devices)
        self.own_namespace = _namespace("self")
        self.namespaces: dict[str, object] = {}
        self.enclosing: dict[tuple[object, str], VersionKey | None] = {}
        # The same library is mapped by most processes: its answer is remembered by (device, inode).
        self.by_file: dict[tuple[object, object], VersionKey | None] = {}

    def read_process(self, pid: str, scan: ProcessScan) -> None:
        base = f"{_PROC}/{pid}"
        try:
            try:
                cwd = os.readlink(f"{base}/cwd")
                keys = list(self._from_cwd(pid, cwd))
                if self.files:
                    keys.extend(self._from_descriptors(pid))
                    keys.extend(self._from_maps(pid))
            except (FileNotFoundError, ProcessLookupError):
                raise _Vanished from None  # ENOENT, or ESRCH from maps once its memory is gone
            except OSError:
                if os.path.isdir(base):
                    unreadable = _unreadable(pid)
                    if unreadable is not None:
                        scan.unreadable.append(unreadable)
                    return
                raise _Vanished from None
        except _Vanished:
            scan.vanished += 1
            return
        for key in keys:
            scan.hold(key, int(pid))

    def _from_cwd(self, pid: str, cwd: str) -> Iterable[VersionKey]:
        key = version_key(self.prefix, cwd)
        if key is not None:
            yield key
        elif self.devices and cwd.startswith("/"):
            key = self._by_inode(pid, f"{_PROC}/{pid}/cwd", cwd)
            if key is not None:
                yield key

    def _from_descriptors(self, pid: str) -> Iterable[VersionKey]:
        directory = f"{_PROC}/{pid}/fd"
        found = []
        for name in os.listdir(directory):
            try:
                target = os.readlink(f"{directory}/{name}")
            except FileNotFoundError:
                continue  # closed while we looked
            key = version_key(self.prefix, target)
            if key is None and self.devices and target.startswith("/"):
                key = self._by_inode(pid, f"{directory}/{name}", target)
            if key is not None:
                found.append(key)
        return found

    def _from_maps(self, pid: str) -> Iterable[VersionKey]:
        with open(f"{_PROC}/{pid}/maps", "rb") as handle:
            data = handle.read()
        found = []
        if self.maps_prefix in data:
            for line in data.splitlines():
                start = line.find(b" /")
                if start >= 0 and line.find(self.maps_prefix, start) == start + 1:
                    key = version_key(self.prefix, os.fsdecode(line[start + 1:]).replace("\\012", "\n"))
                    if key is not None:
                        found.append(key)
        if self.maps_by_device is not None:
            for match in self.maps_by_device.finditer(data):
                file_identity = (match.group(1), match.group(2))
                key = self.by_file.get(file_identity, False)  # type: ignore[arg-type]
                if key is False:
                    path = os.fsdecode(match.group(3)).replace("\\012", "\n")
                    key = None
                    if not path.startswith(self.prefix):
                        key = self._enclosing_version(pid, os.path.dirname(path.removesuffix(DELETED)))
                    self.by_file[file_identity] = key
                if key is not None:
                    found.append(key)
        return found

    def _by_inode(self, pid: str, link: str, path: str) -> VersionKey | None:
        """A descriptor or working directory outside the root: its own inode, then its directories."""
        try:
            info = os.stat(link)
        except FileNotFoundError:
            return None
        if info.st_dev not in self.devices:
            return None
        file_identity = (info.st_dev, info.st_ino)
        key = self.identities.get(file_identity) or self.by_file.get(file_identity)
        if key is None and file_identity not in self.by_file:
            key = self.by_file[file_identity] = self._enclosing_version(pid, os.path.dirname(path.removesuffix(DELETED)))
        return key

    def _enclosing_version(self, pid: str, directory: str) -> VersionKey | None:
        """Return the version whose directory is ``directory`` or one of its parents, as process ``pid`` sees them."""
        namespace: object = self._namespace_of(pid)
        chain: list[str] = []
        answer: VersionKey | None = None
        while True:
            remembered = self.enclosing.get((namespace, directory), False)
            if remembered is not False:
                answer = remembered  # type: ignore[assignment]
                break
            chain.append(directory)
            try:
                where = directory if namespace == self.own_namespace else f"{_PROC}/{pid}/root{directory}"
                info = os.stat(where)
                answer = self.identities.get((info.st_dev, info.st_ino))
            except OSError:
                answer = None
            if answer is not None or directory in ("/", ""):
                chain.pop()
                self.enclosing[(namespace, directory)] = answer
                break
            directory = os.path.dirname(directory)
        for seen in chain:
            self.enclosing[(namespace, seen)] = answer
        return answer

    def _namespace_of(self, pid: str) -> object:
        namespace = self.namespaces.get(pid)
        if namespace is None:
            # Unknown (not readable): the process's own paths, looked up through its /proc/<pid>/root.
            namespace = self.namespaces[pid] = _namespace(pid) or pid
        return namespace


def _namespace(pid: str) -> tuple[int, int, int] | None:
    """Return (mount namespace inode, root device, root inode): processes that see the same paths share it."""
    try:
        mount_namespace = os.stat(f"{_PROC}/{pid}/ns/mnt").st_ino
        root = os.stat(f"{_PROC}/{pid}/root")
    except OSError:
        return None
    return (mount_namespace, root.st_dev, root.st_ino)


def _maps_pattern(devices: set[int]) -> re.Pattern[bytes] | None:
    """Return a pattern for the maps lines of files on ``devices`` (the kernel writes them as %02x:%02x)."""
    if not devices:
        return None
    tokens = b"|".join(f"{os.major(device):02x}:{os.minor(device):02x}".encode() for device in sorted(devices))
    return re.compile(rb"^\S+ \S+ \S+ (" + tokens + rb") (\d+) +(/[^\n]*)$", re.MULTILINE)


def _unreadable(pid: str) -> Unreadable | None:
    """Return who runs a process we may not read; None for a kernel thread or a zombie (they hold no files)."""
    try:
        with open(f"{_PROC}/{pid}/cmdline", "rb") as handle:
            if not handle.read(1):
                return None
        with open(f"{_PROC}/{pid}/status", "rb") as handle:
            status = handle.read()
    except FileNotFoundError:
        return None
    except OSError:
        return Unreadable(int(pid), frozenset(), command_line(pid))
    match = re.search(rb"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status, re.MULTILINE)
    user_ids = frozenset(int(value) for value in match.groups()) if match else frozenset()
    return Unreadable(int(pid), user_ids, command_line(pid))
