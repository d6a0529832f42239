"""The disk watcher decides when a disk policy runs, from an injected disk reader, scanner and instants."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from daemon.diskwatch import RESCAN_EVERY, UNREACHABLE_RETRY, DiskWatcher
from daemon.executor import RunResult
from policies import Artifact, DiskPolicy, DiskUsage, Inventory, Plan
from policies.model import DiskReport

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
GIB = 1024**3


class World:
    """A disk, a store and its fingerprint that a test changes at will, counting the walks."""

    def __init__(self, used_gib: float, store_bytes: int) -> None:
        self.disk = DiskUsage(total_bytes=100 * GIB, used_bytes=int(used_gib * GIB))
        self.store_bytes = store_bytes
        self.fingerprint = 1
        self.scans = 0

    def scan(self) -> Inventory:
        self.scans += 1
        artifact = Artifact("model", "iris", "v1", NOW, NOW, self.store_bytes)
        return Inventory((artifact,))

    def watcher(self) -> DiskWatcher:
        return DiskWatcher(read_disk=lambda: self.disk, scan=self.scan, fingerprint=lambda: self.fingerprint)


def watermark(high: str = "85%") -> DiskPolicy:
    return DiskPolicy(name="pressure", high_watermark=high, low_watermark="75%")


def budget(size: str = "10GiB") -> DiskPolicy:
    return DiskPolicy(name="budget", max_store_size=size)


def run_result(*reports: DiskReport, walked: bool = True) -> RunResult:
    inventory = World(0, 1).scan() if walked else Inventory(())
    return RunResult("run1", Plan(NOW, disk_reports=reports), inventory)


def test_a_watermark_triggers_only_above_it_and_never_walks_the_store() -> None:
    world = World(used_gib=80, store_bytes=GIB)
    watcher = world.watcher()
    assert watcher.check(watermark(), NOW) is None
    world.disk = DiskUsage(100 * GIB, 90 * GIB)
    target = watcher.check(watermark(), NOW + timedelta(seconds=10))
    assert target is not None and target.needed_bytes == 15 * GIB
    assert world.scans == 0 and [sample.at for sample in watcher.samples] == [NOW, NOW + timedelta(seconds=10)]


def test_the_store_is_walked_again_only_when_it_changed_or_a_minute_passed() -> None:
    world = World(used_gib=10, store_bytes=11 * GIB)
    watcher = world.watcher()
    assert watcher.check(budget(), NOW) is not None and world.scans == 1
    assert watcher.check(budget(), NOW + timedelta(seconds=10)) is not None and world.scans == 1
    world.fingerprint = 2  # a version came or went
    world.store_bytes = 9 * GIB
    assert watcher.check(budget(), NOW + timedelta(seconds=20)) is None and world.scans == 2
    world.store_bytes = 12 * GIB  # a save still growing: no fingerprint change, seen within a minute
    assert watcher.check(budget(), NOW + timedelta(seconds=30)) is None and world.scans == 2
    assert watcher.check(budget(), NOW + timedelta(seconds=21) + RESCAN_EVERY) is not None and world.scans == 3


def test_a_run_that_walked_the_store_makes_the_next_check_walk_it_again() -> None:
    world = World(used_gib=10, store_bytes=11 * GIB)
    watcher = world.watcher()
    watcher.check(budget(), NOW)
    watcher.after_run(run_result(walked=False), NOW)
    watcher.check(budget(), NOW + timedelta(seconds=1))
    assert world.scans == 1  # an off-hours run did not touch the store
    watcher.after_run(run_result(walked=True), NOW + timedelta(seconds=2))
    watcher.check(budget(), NOW + timedelta(seconds=3))
    assert world.scans == 2  # deletions (and saves during the run) changed it


def test_an_unreachable_target_is_retried_after_a_while_or_when_the_disk_grew() -> None:
    world = World(used_gib=90, store_bytes=GIB)
    watcher = world.watcher()
    policy = watermark()
    missed = DiskReport("pressure", ("filesystem 90% used",), needed_bytes=15 * GIB, planned_bytes=GIB)
    watcher.after_run(run_result(missed), NOW)
    assert watcher.check(policy, NOW + timedelta(seconds=10)) is None
    world.disk = DiskUsage(100 * GIB, 91 * GIB + 1)  # grew by more than 1 % of the filesystem
    assert watcher.check(policy, NOW + timedelta(seconds=20)) is not None
    world.disk = DiskUsage(100 * GIB, 90 * GIB)
    assert watcher.check(policy, NOW + UNREACHABLE_RETRY - timedelta(seconds=1)) is None
    assert watcher.check(policy, NOW + UNREACHABLE_RETRY) is not None
    reached = DiskReport("pressure", ("filesystem 90% used",), needed_bytes=GIB, planned_bytes=GIB)
    watcher.after_run(run_result(reached), NOW)
    assert watcher.check(policy, NOW + timedelta(seconds=1)) is not None
