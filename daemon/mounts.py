"""The mounts this process sees (``/proc/self/mountinfo``): what the store's mount lets access times say, and
whether /proc hides other users' processes.

Access times: ``noatime`` never moves them, so ``keep_used_within`` cannot see reads (warned);
``relatime``, Linux's default, moves a file's access time only when it is older than its
mtime or than a day, so a read within the last day may not show (warned when
``keep_used_within`` is shorter than a day); ``strictatime`` moves it on every read.
This module imports nothing of the store's, so ``check-config`` can use it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from policies.durations import Duration
from policies.spec import ArtifactPolicy, ConfigPolicy

DAY_SECONDS = 86400
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/self/mountinfo``: where, per-mount options (``noatime``, ``relatime``), filesystem
    type, and the filesystem's own options (``hidepid=`` for /proc)."""

    mount_point: str
    options: frozenset[str]
    filesystem: str
    super_options: frozenset[str] = frozenset()


def parse_mountinfo(text: str) -> list[Mount]:
    """Given the text of ``/proc/<pid>/mountinfo``, return its mounts in order (malformed lines are skipped)."""
    mounts = []
    for line in text.splitlines():
        before, separator, after = line.partition(" - ")
        fields = before.split(" ")
        tail = after.split(" ")
        if not separator or len(fields) < 6 or len(tail) < 3:
            continue
        mounts.append(Mount(_unescape(fields[4]), frozenset(fields[5].split(",")), tail[0], frozenset(tail[2].split(","))))
    return mounts


def _unescape(text: str) -> str:
    # The kernel writes space, tab, newline and backslash in paths as \040, \011, \012, \134.
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), text)


def read_mounts() -> list[Mount]:
    """Return this process's mounts; empty if they cannot be read."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
            return parse_mountinfo(handle.read())
    except OSError:
        return []


def mount_of(path: str, mounts: Sequence[Mount]) -> Mount | None:
    """Return the mount that holds the absolute, resolved ``path``: the deepest mount point above it, the last
    one mounted where several share it."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point
        above = path == point or path.startswith(point.rstrip("/") + "/")
        if above and (best is None or len(point) >= len(best.mount_point)):
            best = mount
    return best


def hidden_processes(mounts: Sequence[Mount]) -> str | None:
    """Return the ``hidepid=`` option of the /proc mount if it hides other users' processes, else None."""
    proc = mount_of("/proc", [mount for mount in mounts if mount.filesystem == "proc"])
    if proc is None or proc.mount_point != "/proc":
        return None
    return next(
        (option for option in sorted(proc.super_options) if option.startswith("hidepid=") and option not in ("hidepid=0", "hidepid=off")),
        None,
    )


def access_time_warnings(home: Path, policies: Sequence[ConfigPolicy], mounts: Sequence[Mount] | None = None) -> list[str]:
    """Return what the store's mount means for the ``keep_used_within`` of these policies (empty: nothing to say)."""
    spans = [policy.keep_used_within for policy in policies if isinstance(policy, ArtifactPolicy) and policy.keep_used_within]
    if not spans:
        return []
    mount = mount_of(os.path.realpath(home), read_mounts() if mounts is None else mounts)
    if mount is None:
        return []
    if "noatime" in mount.options:
        return [
            f"keep_used_within cannot see reads on a noatime mount: store {home} is on {mount.mount_point} "
            f"({mount.filesystem}, mounted noatime), where reading a file never moves its access time"
        ]
    short = sorted({str(span) for span in spans if _shorter_than_a_day(span)})
    if "relatime" in mount.options and short:
        return [
            f"keep_used_within {', '.join(short)} is shorter than a day, but store {home} is on {mount.mount_point} "
            "mounted relatime, where a read moves a file's access time at most once a day"
        ]
    return []


def _shorter_than_a_day(span: Duration) -> bool:
    return span.approx_seconds() < DAY_SECONDS
