"""The daemon's disk watcher: decides, cheaply and often, whether a disk policy must run now.

A check costs one ``statfs`` (``read_disk``). The store is walked (``scan``, through the scan
cache) only to know its size for ``max_store_size``: when a version came or went (``fingerprint``
changed), once a minute while saves may still be growing, and after a run that walked it (its own
deletions, and anything saved meanwhile, changed it). A target that could not be reached is tried
again only when the disk grew by 1 % or after a few minutes: each attempt walks the whole store.

It reads no clock: every method takes the instant, so it can be tested with fixed times.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from daemon.executor import RunResult
from policies import DiskPolicy, DiskSample, DiskUsage, Inventory
from policies.disk import DiskTarget, disk_target

UNREACHABLE_RETRY = timedelta(minutes=5)
SAMPLES_KEPT = 720
RESCAN_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class _StoreSize:
    """The store's size from the last walk, and what its directories looked like before that walk."""

    size_bytes: int
    fingerprint: object
    at: datetime


@dataclass(frozen=True)
class _Unreachable:
    at: datetime
    used_bytes: int


class DiskWatcher:
    """Given how to read the disk, walk the store and fingerprint it, say when a disk policy must run."""

    def __init__(
        self,
        read_disk: Callable[[], DiskUsage],
        scan: Callable[[], Inventory],
        fingerprint: Callable[[], object],
    ) -> None:
        self._read_disk = read_disk
        self._scan = scan
        self._fingerprint = fingerprint
        self.samples: deque[DiskSample] = deque(maxlen=SAMPLES_KEPT)
        self._size: _StoreSize | None = None
        self._unreachable: dict[str, _Unreachable] = {}

    def measure(self, now: datetime) -> int:
        """Walk the store now; return its size as a budget counts it, disk usage (and remember it as of ``now``)."""
        fingerprint = self._fingerprint()  # before the walk: a version saved during it shows as a change next time
        size = sum(artifact.usage_bytes for artifact in self._scan().artifacts)
        self._size = _StoreSize(size, fingerprint, now)
        return size

    def check(self, policy: DiskPolicy, now: datetime) -> DiskTarget | None:
        """Given a disk policy and the instant, return its target if it must run now, else None."""
        disk = self._read_disk()
        self.samples.append(DiskSample(now, disk.used_bytes))
        store_bytes = self._store_bytes(now) if policy.max_store_size is not None else 0
        target = disk_target(policy, disk, store_bytes, list(self.samples), now)
        if not target.triggers or self._recently_unreachable(policy, now, disk):
            return None
        return target

    def after_run(self, result: RunResult, now: datetime) -> None:
        """Given a finished run, note which disk targets it could not reach, and that the store changed."""
        if result.inventory.artifacts:  # it walked the store (off-hours runs do not)
            self._size = None
        used_bytes = self._read_disk().used_bytes
        for report in result.plan.disk_reports:
            if report.triggers and not report.reached:
                self._unreachable[report.policy] = _Unreachable(now, used_bytes)
            else:
                self._unreachable.pop(report.policy, None)

    def _store_bytes(self, now: datetime) -> int:
        size = self._size
        if size is None or now - size.at > RESCAN_EVERY or self._fingerprint() != size.fingerprint:
            return self.measure(now)
        return size.size_bytes

    def _recently_unreachable(self, policy: DiskPolicy, now: datetime, disk: DiskUsage) -> bool:
        last = self._unreachable.get(policy.name)
        if last is None:
            return False
        return now - last.at < UNREACHABLE_RETRY and disk.used_bytes <= last.used_bytes + disk.total_bytes // 100
