"""Plain values that flow into and out of the decision core.

The daemon builds an ``Inventory`` from the world; ``policies.evaluate`` turns it
into a ``Plan``; the executor carries the plan out. None of these types do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any, Literal

from policies.durations import format_bytes

ArtifactKind = Literal["model", "bento"]
ActionName = Literal["delete", "terminate", "restart", "delete_deployment"]
MODEL_DELETIONS_BLOCKED = "model deletions blocked"


@dataclass(frozen=True, slots=True)
class Artifact:
    """One version directory of the store (``models/<name>/<version>``).

    ``problem`` is set when the entry is not a complete, valid store item; such an
    artifact is reported and never deleted, and ``created_at`` may then be None.
    ``last_read_at`` is the newest access time of its files other than the metadata file, among
    those read since they were written (None: none was, or not measured because no policy asks).
    ``references_unknown`` (bentos only) says why the bento's model references could
    not be read; None means ``model_references`` is all of them.
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
    references_unknown: str | None = None
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
class UnknownReferences:
    """A bento whose model references cannot be read, or a place under ``bentos/`` that could not be read
    (so bentos there may reference any model). ``subject`` names it for people: "bento svc:v1", "bentos/svc"."""

    subject: str
    reason: str

    def describe(self) -> str:
        return f"references of {self.subject} unknown ({self.reason})"


@dataclass(frozen=True)
class BentoReferences:
    """Which local bentos reference each model tag, and whose references cannot be read.

    While ``unknown`` is not empty no model version may be deleted (fail closed): any of them
    could be the one an unreadable bento needs.
    """

    by_model: dict[str, list[str]]
    unknown: tuple[UnknownReferences, ...] = ()

    @cached_property
    def blocked(self) -> str | None:
        """Return why model deletions are blocked (naming the first unreadable bento), or None."""
        if not self.unknown:
            return None
        more = len(self.unknown) - 1
        return f"{MODEL_DELETIONS_BLOCKED}: {self.unknown[0].describe()}" + (f" and of {more} more" if more else "")


@dataclass(frozen=True)
class TrashRun:
    """One run's directory in the trash (``<store>/.retentiond/trash/<run>``): when it was trashed, its
    bytes, and how many of them an earlier purge could not remove (they stay on disk until one can).
    Both are disk usage, as ``du`` counts it: what purging it frees."""

    name: str
    trashed_at: datetime
    size_bytes: int
    stuck_bytes: int = 0


@dataclass(frozen=True)
class StoreHistory:
    """What the last run saw of this store, for ``store.max_shrink``: its version count (None: none
    recorded), or why that could not be read (then the limit cannot be checked and refuses)."""

    versions: int | None = None
    unreadable: str | None = None


@dataclass(frozen=True)
class StoreLimits:
    """The store-wide settings a run decides with (config ``[store]``), as plain values.

    ``trash_retention`` None: no undo window, the trash holds only what an interrupted run left.
    ``max_shrink_percent`` None: no shrink limit; ``accept_shrink`` lets one run pass it.
    """

    trash_retention: timedelta | None = None
    max_shrink_percent: float | None = None
    accept_shrink: bool = False


@dataclass(frozen=True)
class Inventory:
    """What the store holds at one instant: artifacts, scan warnings, and the disk under it.

    ``in_use`` names, for each version a running process holds, who holds it
    ("pid 4242 (bentoml serve …)"); such a version is never deleted.
    ``unreadable_bentos`` are places under ``bentos/`` the scan could not read (a symlink, a
    directory it could not list); bentos it did read carry their own ``references_unknown``.
    """

    artifacts: tuple[Artifact, ...]
    warnings: tuple[str, ...] = ()
    disk: DiskUsage | None = None
    disk_samples: tuple[DiskSample, ...] = ()
    deployments: tuple[Deployment, ...] = ()
    ownership: tuple[Ownership, ...] = ()
    hand_starts: tuple[HandStart, ...] = ()
    in_use: Mapping[VersionKey, str] = field(default_factory=dict)
    unreadable_bentos: tuple[UnknownReferences, ...] = ()
    # Opaque to the policies: what ``bentos/`` looked like when the scan began (None: not taken). The
    # executor compares it before deleting models, since BentoML may save a bento at any time.
    bentos_fingerprint: tuple[object, ...] | None = None
    # The trash's runs, the last run's view of the store (None: a run that does not scan the store),
    # and the providers that could not list their deployments at all (name, why).
    trash: tuple[TrashRun, ...] = ()
    history: StoreHistory | None = None
    unlisted_providers: tuple[tuple[str, str], ...] = ()

    def referencing_bentos(self) -> dict[str, list[str]]:
        """Return, for every model tag that some local bento references, the bento tags."""
        return self.bento_references().by_model

    def bento_references(self) -> BentoReferences:
        """Return the model references of all bentos, with every bento or place whose references are unknown."""
        by_model: dict[str, list[str]] = {}
        unknown = list(self.unreadable_bentos)
        for artifact in self.artifacts:
            for model_tag in artifact.model_references:
                by_model.setdefault(model_tag, []).append(artifact.tag)
            if artifact.references_unknown is not None:
                unknown.append(UnknownReferences(f"bento {artifact.tag}", artifact.references_unknown))
        return BentoReferences(by_model, tuple(unknown))


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
class Refusal:
    """Actions a safety limit refused this run: those of ``policy`` (None: every deletion of the run)."""

    policy: str | None
    reason: str

    def describe(self) -> str:
        return f"policy {self.policy}: {self.reason}" if self.policy is not None else self.reason

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "reason": self.reason}


@dataclass(frozen=True)
class TrashPurge:
    """Trash runs to purge before any action: their undo window is over, or disk pressure needs the space."""

    runs: tuple[str, ...]
    size_bytes: int
    reason: str


@dataclass(frozen=True)
class Plan:
    """The decision for one instant: actions to take, items kept, warnings, and what was refused."""

    at: datetime
    actions: tuple[Action, ...] = ()
    kept: tuple[Kept, ...] = ()
    warnings: tuple[str, ...] = ()
    disk_reports: tuple[DiskReport, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    trash_purge: TrashPurge | None = None

    @property
    def bytes_to_free(self) -> int:
        """The disk space the deletions free (disk usage, as ``du`` counts it)."""
        return sum(action.usage_bytes for action in self.actions)

    def totals(self) -> dict[str, int]:
        """Return the counts of the plan's contract (DESIGN.md): actions by kind, bytes, kept items."""
        counts = {"delete": 0, "terminate": 0, "restart": 0, "delete_deployment": 0}
        for action in self.actions:
            counts[action.action] += 1
        kept = len({(item.kind, item.name, item.version) for item in self.kept})
        # "bytes" is the apparent size of what is deleted, as each action's size_bytes (its disk_bytes is beside it).
        deleted = sum(action.size_bytes or 0 for action in self.actions if action.action == "delete")
        return {"delete": counts["delete"], "bytes": deleted, "terminate": counts["terminate"],
                "restart": counts["restart"], "delete_deployment": counts["delete_deployment"], "kept": kept}

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": format_instant(self.at),
            "actions": [action.to_dict() for action in self.actions],
            "kept": [kept.to_dict() for kept in self.kept],
            "refusals": [refusal.to_dict() for refusal in self.refusals],
            "totals": self.totals(),
            "warnings": list(self.warnings),
        }


def format_instant(at: datetime) -> str:
    """Return an aware instant as ISO 8601 UTC with a ``Z`` suffix, to the second."""
    # isoformat, not strftime("%Y"): glibc writes year 1 as "1", which is not ISO 8601.
    return at.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0).isoformat() + "Z"
