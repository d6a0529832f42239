"""Never delete a version a running process holds: who holds what before deciding, and again right before each deletion.

Before deciding, one full pass over ``/proc`` (``daemon.procscan``) names the holders of
each version; they enter the inventory as ``in_use`` and the version is kept with
"in use by pid 4242 (bentoml serve …)".

Under the lock, right before each deletion (``InUseCheck``), a full pass per deletion would
cost tens of milliseconds each. Instead:

- every regular file of the version is probed for a write lease (``fcntl(F_SETLEASE)``):
  the kernel grants it only when no other open file description of the file exists, so
  it sees a file open or memory-mapped (descriptor closed or not) by ANY process, of any
  user, in any namespace, including those ``/proc`` does not let us read (µs per file);
- the working directories of all processes are read once per batch of deletions or per
  second, whichever comes first (a few ms);
- a full pass, to name the holder, is made only when a probe finds a file in use or cannot
  probe (a file we do not own, a filesystem without leases), at most once per batch.

Processes that cannot be read. Root sees every process. Another user sees only its own
(dumpable) processes: /proc hides the rest (``hidepid``, ``ProtectProc=invisible``) or lets
them be listed but not read. For those we fail closed only where they could hold a
version: a process of another non-root user can open or enter a version only if every
directory from ``/`` down to the version lets that user through (BentoML makes version
directories 0700), so such versions are kept ("may enter this version"). Processes of
root, and our own processes that are not dumpable (ssh-agent, setuid programs), could
enter any version; failing closed on them would mean a non-root retentiond never deletes
anything (PID 1 is always there). They are reported once per run as a logged warning
(``inuse.unreadable``) with a count, and their open and mapped files are still caught by
the lease probe; only their working directory is not seen.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from daemon.layout import KIND_DIRS
from daemon.mounts import hidden_processes, read_mounts
from daemon.procscan import ProcessScan, Unreadable, VersionKey, command_line, scan_processes
from policies.model import Artifact, Inventory

log = structlog.get_logger("retentiond")
# A batch of the executor (daemon.executor.BATCH_SIZE): the working directories are read again at least this often.
RESCAN_EVERY_DELETIONS = 64
RESCAN_EVERY_SECONDS = 1.0
HOLDERS_NAMED = 2


def version_identities(artifacts: Iterable[Artifact]) -> dict[tuple[int, int], VersionKey]:
    """Return (device, inode) of each version directory → its key, for matching paths outside the store root."""
    return {
        (artifact.identity[0], artifact.identity[1]): (artifact.kind, artifact.name, artifact.version)
        for artifact in artifacts
        if len(artifact.identity) >= 2
    }


def find_holders(inventory: Inventory, home: Path) -> tuple[dict[VersionKey, str], list[str]]:
    """Given the scanned store at ``home`` (resolved), return who holds each version and the warnings of the pass.

    Versions that processes we cannot read could enter are held too (fail closed), see the module docstring.
    """
    scan = scan_processes(str(home), version_identities(inventory.artifacts))
    if scan.failure is not None:
        # Nothing can be known about any process: every version is held (fail closed).
        unknown = describe_unknown(scan.failure)
        held: dict[VersionKey, str] = {(artifact.kind, artifact.name, artifact.version): unknown for artifact in inventory.artifacts}
        return held, [f"in-use check: {scan.failure}; no version is deleted"]
    known = {(artifact.kind, artifact.name, artifact.version) for artifact in inventory.artifacts}
    holders: dict[VersionKey, str] = {key: describe_holders(pids) for key, pids in scan.held.items() if key in known}
    others = _other_users(scan.unreadable)
    if others:
        passage = Passage(home)
        for artifact in inventory.artifacts:
            key: VersionKey = (artifact.kind, artifact.name, artifact.version)
            if key not in holders:
                entering = passage.who_may_enter(artifact, others)
                if entering:
                    holders[key] = describe_unreadable(entering)
    for warning in unreadable_warnings(scan):
        # A log line, not a plan warning: it changes no decision (the fail-closed ones show as kept reasons),
        # and a non-root retentiond would carry it in every plan.
        log.warning("inuse.unreadable", detail=warning, processes=scan.processes, unreadable=len(scan.unreadable))
    return holders, []


def describe_holders(pids: list[int]) -> str:
    """Return "pid 4242 (bentoml serve …)", naming at most two processes and counting the rest."""
    named = ", ".join(f"pid {pid} ({command_line(pid)})" for pid in pids[:HOLDERS_NAMED])
    rest = len(pids) - HOLDERS_NAMED
    return named + (f" and {rest} more process{'es' if rest > 1 else ''}" if rest > 0 else "")


def describe_unknown(failure: str) -> str:
    """Return the holder text for every version when no process can be read at all."""
    return f"any process ({failure})"


def describe_unreadable(entering: list[Unreadable]) -> str:
    """Return the holder text for a version that processes we cannot read may enter."""
    first = entering[0]
    user_ids = "/".join(str(uid) for uid in sorted(first.user_ids))
    rest = len(entering) - 1
    more = f" and {rest} more process{'es' if rest > 1 else ''} of other users" if rest else ""
    return f"pid {first.pid} ({first.command}) of uid {user_ids}{more}, which cannot be read and may enter this version"


def unreadable_warnings(scan: ProcessScan) -> list[str]:
    """Return what to say once per run about processes we could not read or see (empty: nothing)."""
    hidden = hidden_processes(read_mounts()) if os.geteuid() != 0 else None  # root sees every process
    warnings = []
    if hidden is not None:
        warnings.append(
            f"in-use check: /proc hides other users' processes from this user ({hidden}); "
            "a version only they hold is caught right before deletion if they have a file of it open or mapped, "
            "not if it is only their working directory"
        )
    if scan.unreadable:
        euid = os.geteuid()
        kinds: Counter[str] = Counter(_category(process, euid) for process in scan.unreadable)
        counts = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        remedy = (
            "even root cannot read them here (a container without CAP_SYS_PTRACE, or a hardened /proc)"
            if euid == 0
            else "run retentiond as root to read every process"
        )
        count = len(scan.unreadable)
        warnings.append(
            f"in-use check: {count} running process{'es' if count > 1 else ''} cannot be read ({counts}); "
            "their open and mapped files are still caught right before each deletion, their working directories "
            f"are not; versions other users may enter are kept; {remedy}"
        )
    return warnings


def _category(process: Unreadable, euid: int) -> str:
    if not process.user_ids:
        return "of unknown users"
    if 0 in process.user_ids:
        return "of root"
    if euid in process.user_ids:
        return "of this user, not dumpable"
    return "of other users"


def _other_users(unreadable: list[Unreadable]) -> list[Unreadable]:
    """The unreadable processes whose users permissions may keep out of a version: not root, not ours."""
    euid = os.geteuid()
    return [process for process in unreadable if process.user_ids and not process.user_ids & {0, euid}]


class Passage:
    """Which users' processes could enter a version directory, by the permissions on the way to it.

    A directory stops a user who does not own it when it grants no search bit to group or others
    (ACLs included: their mask is the group bits). Root and the owner pass everything.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self._chains: dict[str, list[os.stat_result]] = {}

    def who_may_enter(self, artifact: Artifact, processes: list[Unreadable]) -> list[Unreadable]:
        """Return the processes among ``processes`` whose users may reach this version's directory."""
        kind_dir = KIND_DIRS[artifact.kind][0]
        chain = [
            *self._chain(str(self.home), with_ancestors=True),
            *self._chain(f"{self.home}/{kind_dir}"),
            *self._chain(f"{self.home}/{kind_dir}/{artifact.name}"),
            *self._chain(f"{self.home}/{kind_dir}/{artifact.name}/{artifact.version}", remember=False),
        ]
        return [process for process in processes if not any(_stops(info, process.user_ids) for info in chain)]

    def _chain(self, path: str, *, with_ancestors: bool = False, remember: bool = True) -> list[os.stat_result]:
        cached = self._chains.get(path)
        if cached is not None:
            return cached
        paths = [path]
        if with_ancestors:
            paths = [str(parent) for parent in reversed(Path(path).parents)] + paths
        infos = []
        for each in paths:
            try:
                infos.append(os.lstat(each))
            except OSError:
                continue  # unknown: it stops no one (fail closed)
        if remember:
            self._chains[path] = infos
        return infos


def _stops(info: os.stat_result, user_ids: frozenset[int]) -> bool:
    return stat.S_ISDIR(info.st_mode) and info.st_uid not in user_ids and not info.st_mode & 0o011


class InUseCheck:
    """The re-check under the lock right before each deletion (see the module docstring for how it stays cheap).

    ``clock`` is a monotonic clock in seconds.
    """

    def __init__(self, home: Path, inventory: Inventory, clock: Callable[[], float] = time.monotonic) -> None:
        self.home = home
        self.identities = version_identities(inventory.artifacts)
        self.clock = clock
        self._scans: dict[bool, tuple[ProcessScan, float, int]] = {}
        self._deletions = 0
        self._passage = Passage(home)

    def holder(self, artifact: Artifact, path: Path) -> str | None:
        """Return why the version at ``path`` must not be deleted now ("in use by …"), or None."""
        self._deletions += 1
        key = (artifact.kind, artifact.name, artifact.version)
        standing = self._scan(working_directories_only=True)
        if standing.failure is not None:
            return f"in use by {describe_unknown(standing.failure)}"
        if key in standing.held:
            return f"in use by {describe_holders(standing.held[key])}"
        busy_file, cannot_probe = probe_files(str(path))
        if busy_file is not None or cannot_probe is not None:
            full = self._scan(working_directories_only=False)
            if full.failure is not None:
                return f"in use by {describe_unknown(full.failure)}"
            if key in full.held:
                return f"in use by {describe_holders(full.held[key])}"
            if busy_file is not None:
                return f"in use by a process this user cannot read ({busy_file} is open or mapped)"
        others = _other_users(standing.unreadable)
        entering = self._passage.who_may_enter(artifact, others) if others else []
        return f"in use by {describe_unreadable(entering)}" if entering else None

    def _scan(self, *, working_directories_only: bool) -> ProcessScan:
        now = self.clock()
        remembered = self._scans.get(working_directories_only)
        if remembered is not None:
            scan, at, deletions = remembered
            if now - at < RESCAN_EVERY_SECONDS and self._deletions - deletions <= RESCAN_EVERY_DELETIONS:
                return scan
        scan = scan_processes(str(self.home), self.identities, working_directories_only=working_directories_only)
        self._scans[working_directories_only] = (scan, now, self._deletions)
        return scan


def probe_files(directory: str) -> tuple[str | None, str | None]:
    """Given a version directory, return (a file some process has open or mapped, why some file could not be
    probed); (None, None) when no file of it is in use. Symlinks are not followed.
    """
    cannot_probe = None
    pending = [directory]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        problem = _probe(entry.path)
                        if problem is _BUSY:
                            return os.path.relpath(entry.path, directory), None
                        cannot_probe = cannot_probe or problem
        except FileNotFoundError:
            continue
        except OSError as error:
            cannot_probe = cannot_probe or f"cannot list {current}: {error.strerror}"
    return None, cannot_probe


_BUSY = "busy"


def _probe(path: str) -> str | None:
    """Return None if no other open file description of ``path`` exists, ``_BUSY`` if one does, else why it is unknown."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except BlockingIOError:
        return _BUSY  # another process holds a lease on it
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"cannot open {path}: {error.strerror}"
    try:
        # Someone opening the file while we hold the lease breaks it and the kernel signals us; SIGIO, the
        # default, would end the process. SIGURG is ignored unless handled. Closing the file drops the lease.
        fcntl.fcntl(descriptor, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(descriptor, fcntl.F_SETLEASE, fcntl.F_WRLCK)
    except BlockingIOError:
        return _BUSY
    except OSError as error:
        return f"cannot probe {path} for other users of it: {error.strerror}"
    finally:
        os.close(descriptor)
    return None
