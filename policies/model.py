"""Plain values that flow into and out of the decision core.

The daemon builds an ``Inventory`` from the world; ``policies.evaluate`` turns it
into a ``Plan``; the executor carries the plan out. None of these types do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

ArtifactKind = Literal["model", "bento"]
ActionName = Literal["delete", "terminate", "restart", "delete_deployment"]


@dataclass(frozen=True)
class Artifact:
    """One version directory of the store (``models/<name>/<version>``).

    ``problem`` is set when the entry is not a complete, valid store item; such an
    artifact is reported and never deleted, and ``created_at`` may then be None.
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

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class Inventory:
    """What the store holds at one instant: artifacts, the models bentos need, and scan warnings."""

    artifacts: tuple[Artifact, ...]
    warnings: tuple[str, ...] = ()

    def referencing_bentos(self) -> dict[str, list[str]]:
        """Return, for every model tag that some local bento references, the bento tags."""
        references: dict[str, list[str]] = {}
        for artifact in self.artifacts:
            for model_tag in artifact.model_references:
                references.setdefault(model_tag, []).append(artifact.tag)
        return references


@dataclass(frozen=True)
class Action:
    """One thing the executor should do, with the policy that asked for it and why."""

    action: ActionName
    kind: str
    name: str
    version: str | None
    policy: str
    reasons: tuple[str, ...]
    size_bytes: int | None = None
    provider: str | None = None

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
class Plan:
    """The decision for one instant: actions to take, items kept, and warnings."""

    at: datetime
    actions: tuple[Action, ...] = ()
    kept: tuple[Kept, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def bytes_to_free(self) -> int:
        return sum(action.size_bytes or 0 for action in self.actions if action.action == "delete")

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": format_instant(self.at),
            "actions": [action.to_dict() for action in self.actions],
            "kept": [kept.to_dict() for kept in self.kept],
            "warnings": list(self.warnings),
        }


def format_instant(at: datetime) -> str:
    """Return an aware instant as ISO 8601 UTC with a ``Z`` suffix, to the second."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
