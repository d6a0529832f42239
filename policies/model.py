"""Plain values that flow into and out of the decision core.

The daemon builds an ``Inventory`` from the world; ``policies.evaluate`` turns it
into a ``Plan``; the executor carries the plan out. None of these types do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from policies.durations import format_bytes

ArtifactKind = Literal["model", "bento"]
ActionName = Literal["delete", "terminate", "restart", "delete_deployment"]


@dataclass(frozen=True, slots=True)
class Artifact:
    """One version directory of the store (``models/<name>/<version>``).

    ``problem`` is set when the entry is not a complete, valid store item; such an
    artifact is reported and never deleted, and ``created_at`` may then be None.
    ``last_read_at`` is the newest access time of its files other than the metadata file, among
    those read since they were written (None: none was, or not measured because no policy asks).
    ``size_bytes`` is the apparent size of its files (what BentoML reports); ``disk_bytes`` the disk
    space it takes, as ``du`` counts it (allocated blocks, its directories included), which is what
    deleting it frees (None when not measured: :attr:`usage_bytes` then falls back to the apparent size).
    """

    kind: ArtifactKind
    name: str
    version: str
    created_at: datetime | None
    modified_at: datetime
    size_bytes: int
    labels: Mapping[str, str] = field(default_factory=dict)
    is_latest: bool = False
    model_references: tuple[str, ...] = ()
    problem: str | None = None
    # Opaque to the policies: how the executor recognises the very directory it planned for.
    identity: tuple[int, ...] = ()
    last_read_at: datetime | None = None
    disk_bytes: int | None = None

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def usage_bytes(self) -> int:
        """The disk space deleting this version frees: its disk usage, or its apparent size if that was not measured."""
        return self.disk_bytes if self.disk_bytes is not None else self.size_bytes


@dataclass(frozen=True)
class DiskUsage:
    """The filesystem that holds the store, at one instant."""

    total_bytes: int
    used_bytes: int

    @property
    def used_ratio(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes else 0.0


@dataclass(frozen=True)
class DiskSample:
    """Used bytes of the store's filesystem at one instant."""

    at: datetime
    used_bytes: int


@dataclass(frozen=True)
class Deployment:
    """A deployment as a provider reports it (BentoCloud, a local process, a command hook).

    ``identity`` tells a replaced deployment of the same name apart (BentoCloud's uid, a
    process's pid and start time); ``inactive_since`` is when this daemon first saw it
    terminated or failed (None if it never did). ``left_alone`` is set by a provider for a
    deployment that something else scales (a KEDA ScaledObject): off-hours never acts on it,
    and keeps it with this text as the reason.
    """

    provider: str
    name: str
    status: str
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    identity: str = ""
    inactive_since: datetime | None = None
    left_alone: str = ""


@dataclass(frozen=True)
class Ownership:
    """This daemon's record that it (or a person, through it: ``manual``) terminated a deployment.

    ``window_ends_at`` is when the downtime it was terminated in ends; a deployment that
    runs again before then was started by hand. ``identity`` ties the record to the very
    deployment, so a deleted-and-recreated one of the same name is not ours.
    """

    provider: str
    name: str
    policy: str
    terminated_at: datetime
    window_ends_at: datetime | None
    identity: str = ""
    manual: bool = False


@dataclass(frozen=True)
class HandStart:
    """A person started this deployment through retentiond (``deployments restart``) while downtime was on.

    It keeps the deployment up until the downtime window it was started in ends, so until
    the next window begins; ``identity`` ties it to the very deployment, as for ``Ownership``.
    """

    provider: str
    name: str
    started_at: datetime
    identity: str = ""


VersionKey = tuple[str, str, str]  # (kind, name, version)
IN_USE_BY = "in use by"


@dataclass(frozen=True)
class Inventory:
    """What the store holds at one instant: artifacts, scan warnings, and the disk under it.

    ``in_use`` names, for each version a running process holds, who holds it
    ("pid 4242 (bentoml serve …)"); such a version is never deleted.
    """

    artifacts: tuple[Artifact, ...]
    warnings: tuple[str, ...] = ()
    disk: DiskUsage | None = None
    disk_samples: tuple[DiskSample, ...] = ()
    deployments: tuple[Deployment, ...] = ()
    ownership: tuple[Ownership, ...] = ()
    hand_starts: tuple[HandStart, ...] = ()
    in_use: Mapping[VersionKey, str] = field(default_factory=dict)

    def referencing_bentos(self) -> dict[str, list[str]]:
        """Return, for every model tag that some local bento references, the bento tags."""
        references: dict[str, list[str]] = {}
        for artifact in self.artifacts:
            for model_tag in artifact.model_references:
                references.setdefault(model_tag, []).append(artifact.tag)
        return references


@dataclass(frozen=True)
class Action:
    """One thing the executor should do, with the policy that asked for it and why.

    A deletion carries the version's apparent ``size_bytes`` and its ``disk_bytes`` (what it frees).
    """

    action: ActionName
    kind: str
    name: str
    version: str | None
    policy: str
    reasons: tuple[str, ...]
    size_bytes: int | None = None
    provider: str | None = None
    disk_bytes: int | None = None

    @property
    def usage_bytes(self) -> int:
        """The disk space this deletion frees (its apparent size if its disk usage is unknown); 0 for others."""
        if self.action != "delete":
            return 0
        return self.disk_bytes if self.disk_bytes is not None else self.size_bytes or 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "policy": self.policy,
            "reasons": list(self.reasons),
        }
        if self.kind == "deployment":
            data["provider"] = self.provider
        else:
            data["size_bytes"] = self.size_bytes
            data["disk_bytes"] = self.disk_bytes
        return data


@dataclass(frozen=True)
class Kept:
    """An item a policy looked at and keeps, with every reason it is kept."""

    kind: str
    name: str
    version: str | None
    policy: str
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "policy": self.policy,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class DiskReport:
    """What one disk policy saw and decided; ``blocked_by`` maps a protection to blocked bytes."""

    policy: str
    triggers: tuple[str, ...]
    needed_bytes: int
    planned_bytes: int
    blocked_by: dict[str, int] = field(default_factory=dict)

    @property
    def reached(self) -> bool:
        return self.planned_bytes >= self.needed_bytes

    @property
    def blocked_bytes(self) -> int:
        return sum(self.blocked_by.values())

    def describe(self) -> str:
        """Return one human line: the trigger, and what blocked the target if it was missed."""
        head = f"disk policy {self.policy}: {'; '.join(self.triggers)}"
        if self.reached:
            return f"{head}; evicting {format_bytes(self.planned_bytes)}"
        blocked = ", ".join(f"{reason} {format_bytes(size)}" for reason, size in sorted(self.blocked_by.items()))
        return (
            f"{head}; target not reachable: needs {format_bytes(self.needed_bytes)}, "
            f"can free {format_bytes(self.planned_bytes)}; blocked: {blocked or 'nothing left to evict'}"
        )


@dataclass(frozen=True)
class Plan:
    """The decision for one instant: actions to take, items kept, and warnings."""

    at: datetime
    actions: tuple[Action, ...] = ()
    kept: tuple[Kept, ...] = ()
    warnings: tuple[str, ...] = ()
    disk_reports: tuple[DiskReport, ...] = ()
    refusals: tuple[str, ...] = ()

    @property
    def bytes_to_free(self) -> int:
        """The disk space the deletions free (disk usage, as ``du`` counts it)."""
        return sum(action.usage_bytes for action in self.actions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": format_instant(self.at),
            "actions": [action.to_dict() for action in self.actions],
            "kept": [kept.to_dict() for kept in self.kept],
            "warnings": list(self.warnings),
        }


def format_instant(at: datetime) -> str:
    """Return an aware instant as ISO 8601 UTC with a ``Z`` suffix, to the second."""
    # isoformat, not strftime("%Y"): glibc writes year 1 as "1", which is not ISO 8601.
    return at.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0).isoformat() + "Z"
