"""Observe: everything a run decides from, read once, as plain values (an ``Inventory``).

The store (one scan, through the scan cache), the filesystem under it, the processes that hold
versions and when versions were last read, the trash's runs, what the last run saw of the store
(for ``store.max_shrink``), and the deployments with our ownership records. ``plan`` and ``apply``
observe the same way; ``apply`` does it under the store lock. Nothing here decides or changes
anything (the scan cache aside, which only remembers what a scan found).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path

import psutil

from daemon.config import Settings
from daemon.deployments import DeploymentContext, with_deployments
from daemon.errors import ConfigError
from daemon.inventory import scan_store
from daemon.scancache import scan_cache_in
from daemon.state import StateFile
from daemon.trash import Trash
from daemon.usage import observe_usage
from policies import DiskSample, DiskUsage, Inventory
from policies.model import StoreHistory


def read_disk_usage(home: Path) -> DiskUsage:
    """Return the usage of the filesystem holding ``home`` as ``df`` shows it (used / (used + available))."""
    usage = psutil.disk_usage(str(home))
    return DiskUsage(total_bytes=usage.used + usage.free, used_bytes=usage.used)


def offhours_only(settings: Settings, acting: Collection[str] | None) -> bool:
    """Return True when only off-hours policies act: such a run (every few minutes) never walks the store."""
    return acting is not None and set(acting) <= {policy.name for policy in settings.offhours}


def take_inventory(
    home: Path,
    disk_samples: Sequence[DiskSample] = (),
    state_dir: Path | None = None,
    stop: threading.Event | None = None,
    now: datetime | None = None,
) -> Inventory:
    """Scan the store (through the scan cache in ``state_dir``, if given) and read the disk under it, once.

    Raise ConfigError if the store cannot be listed, RunInterrupted once ``stop`` is set.
    """
    try:
        with scan_cache_in(state_dir):
            inventory = scan_store(home, stop=stop, now=now.timestamp() if now is not None else None)
    except OSError as error:
        raise ConfigError(f"cannot list {error.filename or home}: {error.strerror or error}; nothing was deleted") from None
    return dataclasses.replace(inventory, disk=read_disk_usage(home), disk_samples=tuple(disk_samples))


def observe(
    settings: Settings,
    home: Path,
    now: datetime,
    acting: Collection[str] | None,
    context: DeploymentContext | None,
    trash: Trash,
    *,
    stop: threading.Event | None = None,
    disk_samples: Sequence[DiskSample] = (),
) -> Inventory:
    """Given the config, the store's home, the run's instant and what acts, return what the run decides from.

    Raise ConfigError if the store cannot be listed, RunInterrupted once ``stop`` is set during the scan.
    """
    if offhours_only(settings, acting):
        return with_deployments(Inventory(()), context)
    inventory = take_inventory(home, disk_samples, settings.daemon.state_dir, stop, now)
    inventory = observe_usage(inventory, home, settings.policies)
    inventory = dataclasses.replace(inventory, trash=tuple(trash.runs()), history=_history(settings, home))
    return with_deployments(inventory, context)


def _history(settings: Settings, home: Path) -> StoreHistory | None:
    """Return what the last run recorded of this store, for ``store.max_shrink`` (None: the limit is off)."""
    if settings.store.max_shrink is None:
        return None
    state = StateFile(settings.daemon.state_dir)
    try:
        return StoreHistory(versions=state.last_store_versions(str(home)))
    except (OSError, ValueError) as error:
        # Fail closed: without the last run's count the limit cannot be checked (the plan refuses).
        return StoreHistory(unreadable=f"{state.path}: {getattr(error, 'strerror', None) or error}")
