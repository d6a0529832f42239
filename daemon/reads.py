"""When a version's files were last read, for ``keep_used_within``.

The scanner records the newest access time of the files it walks, but a version whose
facts come from the scan cache was not walked: a read moves a file's access time
without touching its directory or metadata file, so the cache cannot know. Such
versions are walked again (``lstat`` only, no metadata read) when a policy with
``keep_used_within`` selects them. A version that cannot be walked now is reported and
never deleted (fail closed). What the mount lets access times say: ``daemon.mounts``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from daemon.inventory import read_access_time
from daemon.layout import KIND_DIRS
from daemon.mounts import access_time_warnings
from policies.model import Artifact, Inventory
from policies.spec import ArtifactPolicy, ConfigPolicy


def refresh_read_times(inventory: Inventory, home: Path, policies: Sequence[ConfigPolicy]) -> Inventory:
    """Given a scanned store, return it with the access times of the versions a ``keep_used_within`` policy
    selects read afresh where the scan took them from the cache, and the mount's warnings added.
    """
    reading = [policy for policy in policies if isinstance(policy, ArtifactPolicy) and policy.keep_used_within]
    if not reading:
        return inventory
    selected: dict[tuple[str, str], bool] = {}
    artifacts = list(inventory.artifacts)
    for index, artifact in enumerate(artifacts):
        if artifact.last_read_at is not None or artifact.problem is not None or artifact.is_latest:
            continue  # measured by this very scan, or never deleted anyway
        group = (artifact.kind, artifact.name)
        if group not in selected:
            selected[group] = any(policy.selects_name(*group) for policy in reading)
        if selected[group] and any(policy.selects(artifact) for policy in reading):
            artifacts[index] = _with_read_time(artifact, home)
    warnings = (*inventory.warnings, *access_time_warnings(home, policies))
    return dataclasses.replace(inventory, artifacts=tuple(artifacts), warnings=warnings)


def _with_read_time(artifact: Artifact, home: Path) -> Artifact:
    path = f"{home}/{KIND_DIRS[artifact.kind][0]}/{artifact.name}/{artifact.version}"
    try:
        newest, problem = read_access_time(artifact.kind, path)
    except FileNotFoundError:
        return artifact  # deleted by someone else meanwhile: the executor's re-check skips it
    except OSError as error:
        newest, problem = 0.0, f"cannot read {path}: {error.strerror}"
    if problem is not None:
        return dataclasses.replace(artifact, problem=f"cannot tell when it was last read: {problem}")
    if not newest:
        return artifact
    return dataclasses.replace(artifact, last_read_at=datetime.fromtimestamp(newest, timezone.utc))
