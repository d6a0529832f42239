"""Carry out a plan's deletions in the locked store, auditing each one.

Actions go in batches: the intents of a batch are written and fsynced before the
first action of the batch starts; outcomes follow each action and are fsynced at
the end of the batch. One failing action is recorded and the run goes on.

BentoML saves bentos without any lock, so before each batch that deletes model
versions the bentos are compared with what the scan saw (``_BentoGuard``); if they
changed, their references are read again and a model version that is now
referenced, or whose safety can no longer be decided, is skipped.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from daemon.archive import archive_version
from daemon.audit import AuditLog
from daemon.deployments import DeploymentActor
from daemon.inuse import InUseCheck
from daemon.inventory import bentos_fingerprint, scan_bentos
from daemon.purge import StuckEntry
from daemon.store import SkipAction, Store
from daemon.trash import Trash
from policies.model import Action, Artifact, ArtifactKind, BentoReferences, Inventory, Plan, UnknownReferences

if TYPE_CHECKING:
    from daemon.guards import RunGuards

Outcome = Literal["ok", "failed", "skipped"]
BATCH_SIZE = 64
INTERRUPTED = "interrupted before it started"
NOT_STARTED = "not started: the run was interrupted"


class RunProgress(Protocol):
    """Told about the plan before the first action and about every outcome."""

    def begin(self, plan: Plan) -> None: ...

    def advance(self, result: ActionResult) -> None: ...


@dataclass(frozen=True)
class ActionResult:
    """What became of one action. A deletion whose trashed copy could not be purged completely is still ``ok``
    (the version is out of the store), with ``bytes_left`` in the trash and an ``error`` that says why."""

    action: Action
    outcome: Outcome
    error: str | None = None
    bytes_left: int = 0

    @property
    def bytes_deleted(self) -> int:
        """The disk usage of the version this action took out of the store."""
        return self.action.usage_bytes if self.outcome == "ok" else 0

    @property
    def bytes_freed(self) -> int:
        """The disk space this action actually freed (``bytes_left`` is disk usage stuck in the trash)."""
        return max(self.bytes_deleted - self.bytes_left, 0)

    def to_dict(self) -> dict[str, Any]:
        return {**self.action.to_dict(), "outcome": self.outcome, "error": self.error}


@dataclass
class RunResult:
    run_id: str
    plan: Plan
    inventory: Inventory
    results: list[ActionResult] = field(default_factory=list)
    trash_stuck: list[StuckEntry] = field(default_factory=list)
    # Where a stop request was honoured: "start", "deployments", "scan", "plan", "actions" or "trash".
    interrupted_during: str | None = None

    @property
    def interrupted(self) -> bool:
        return self.interrupted_during is not None

    def count(self, outcome: Outcome) -> int:
        return sum(1 for result in self.results if result.outcome == outcome)

    def not_started(self) -> tuple[Action, ...]:
        """The planned actions an interruption left without an intent (``execute`` acts in plan order)."""
        return self.plan.actions[len(self.results) :]

    @property
    def bytes_freed(self) -> int:
        """Bytes removed from the disk: a deleted version whose trash copy is stuck frees only what did go."""
        return sum(result.bytes_freed for result in self.results)

    @property
    def bytes_deleted(self) -> int:
        """Bytes of the versions taken out of the store, whether or not their trash copy could be purged."""
        return sum(result.bytes_deleted for result in self.results)

    @property
    def failed(self) -> bool:
        """True when an action failed or a safety limit refused a policy's deletions."""
        return self.count("failed") > 0 or bool(self.plan.refusals)

    def counters(self) -> dict[str, int]:
        return {
            "actions_planned": len(self.plan.actions),
            "actions_ok": self.count("ok"),
            "actions_failed": self.count("failed"),
            "actions_skipped": self.count("skipped"),
            "actions_not_started": len(self.not_started()),
            "bytes_freed": self.bytes_freed,
            "kept": len(self.plan.kept),
        }

    def to_dict(self) -> dict[str, Any]:
        data = self.plan.to_dict()
        data["actions"] = [result.to_dict() for result in self.results] + [
            ActionResult(action, "skipped", NOT_STARTED).to_dict() for action in self.not_started()
        ]
        data["warnings"] = [*data["warnings"], *(entry.describe() for entry in self.trash_stuck)]
        data["interrupted"] = self.interrupted
        data["interrupted_during"] = self.interrupted_during
        return data


class _NameDirs:
    """Which name directories a run's deletions may have emptied.

    Listing a name directory after every deletion would cost a ``scandir`` each; the inventory says how
    many versions of each name there were, so it is listed right away only when the run deleted the last
    one it saw. Names whose other versions someone else might have deleted meanwhile are checked once,
    at the end of the run (``sweep``).
    """

    def __init__(self, inventory: Inventory) -> None:
        self._left = Counter((artifact.kind, artifact.name) for artifact in inventory.artifacts)
        self._unsure: set[tuple[ArtifactKind, str]] = set()

    def deleted_last_one(self, artifact: Artifact) -> bool:
        """Count a version of ``artifact``'s name as gone; True if none of those the scan saw is left."""
        key = (artifact.kind, artifact.name)
        self._left[key] -= 1
        if self._left[key] > 0:
            self._unsure.add(key)
            return False
        self._unsure.discard(key)
        return True

    def sweep(self, store: Store) -> list[str]:
        """Remove any of the unsure name directories that are empty now; return what could not be done."""
        failures = []
        for kind, name in sorted(self._unsure):
            try:
                store.remove_emptied_name_dir(kind, name)
            except OSError as error:
                failures.append(f"cannot remove the emptied {kind} directory {name}: {error.strerror or error}")
        return failures


class _BentoGuard:
    """Whether a planned model deletion is still safe, given the bentos as they are now, not as scanned.

    Comparing ``bentos/`` with the scan's fingerprint costs a few stats per bento version; only when it
    differs (a bento saved, removed or changed since; or no fingerprint) are the bentos read again.
    """

    def __init__(self, home: Path, inventory: Inventory) -> None:
        self._home = home
        self._fingerprint = inventory.bentos_fingerprint
        self._current: BentoReferences | None = None  # None: as the plan saw them

    def refresh(self) -> None:
        """Read the bentos again if they changed since the scan (or since the last read)."""
        try:
            if self._fingerprint is not None and bentos_fingerprint(self._home) == self._fingerprint:
                return
            bentos = scan_bentos(self._home)
            # A bento.yaml read while BentoML was still writing it can be valid YAML cut short at a tag.
            steady = bentos_fingerprint(self._home) == bentos.bentos_fingerprint
        except OSError as error:
            self._undecidable(f"cannot read them again: {error.strerror or error}")
            return
        if not steady:
            self._undecidable("they changed while they were read again")
            return
        self._fingerprint = bentos.bentos_fingerprint
        self._current = bentos.bento_references()

    def _undecidable(self, reason: str) -> None:
        self._fingerprint = None  # read again before the next batch
        self._current = BentoReferences({}, (UnknownReferences("bentos", reason),))

    def veto(self, action: Action) -> str | None:
        """Return why a planned deletion must now be skipped, or None."""
        if action.kind != "model" or self._current is None:
            return None
        if self._current.blocked is not None:
            return f"bentos changed since the plan; {self._current.blocked}"
        holders = self._current.by_model.get(f"{action.name}:{action.version}")
        if holders:
            return f"bentos changed since the plan; now referenced by bento {', '.join(holders)}"
        return None


@dataclass(frozen=True)
class Actors:
    """Everything that acts in a locked run: the store and its trash, the audit log, the deployment actor."""

    store: Store
    trash: Trash
    audit: AuditLog
    run_id: str
    deployments: DeploymentActor | None = None
    archive_dir: Path | None = None
    # Leftover collection and push-before-delete (daemon/guards.py).
    guards: RunGuards | None = None


def execute(
    plan: Plan,
    inventory: Inventory,
    actors: Actors,
    progress: RunProgress | None = None,
    stop: threading.Event | None = None,
) -> RunResult:
    """Given a plan made under the store lock, carry out its deletions; return every outcome.

    When ``stop`` is set, the action in progress finishes, the rest of its batch is recorded as skipped,
    no further batch starts, and the trash purge ends after the version in progress.
    Raise AuditError (before acting on the batch) if the audit log cannot be written.
    """
    by_key: dict[tuple[str, str, str], Artifact] = {
        (artifact.kind, artifact.name, artifact.version): artifact for artifact in inventory.artifacts
    }
    audit = actors.audit
    name_dirs = _NameDirs(inventory)
    in_use = InUseCheck(actors.store.home, inventory)
    bento_guard = _BentoGuard(actors.store.home, inventory)
    result = RunResult(run_id=actors.run_id, plan=plan, inventory=inventory)
    trashed_by: dict[Path, int] = {}  # which result a version handed to the purger belongs to
    _purge_trash_first(plan, actors)
    actions = list(plan.actions)
    if progress is not None:
        progress.begin(plan)
    for start in range(0, len(actions), BATCH_SIZE):
        if stop is not None and stop.is_set():
            result.interrupted_during = "actions"
            break
        batch = actions[start : start + BATCH_SIZE]
        for action in batch:
            audit.record(f"{_subject(action)}.{action.action}_intended", **_audit_fields(action))
        audit.sync()
        if any(action.kind == "model" and action.action == "delete" for action in batch):
            bento_guard.refresh()
        for action in batch:
            if stop is not None and stop.is_set():
                result.interrupted_during = "actions"
                outcome = ActionResult(action, "skipped", INTERRUPTED)
                result.results.append(outcome)
                audit.record(_outcome_event(action, "skipped"), **_audit_fields(action), outcome="skipped", error=outcome.error)
                continue
            vetoed = bento_guard.veto(action)
            if vetoed is not None:
                outcome, trashed = ActionResult(action, "skipped", vetoed), None
            else:
                outcome, trashed = _carry_out(action, by_key, actors, name_dirs, in_use)
            if trashed is not None:
                trashed_by[trashed] = len(result.results)
            result.results.append(outcome)
            audit.record(_outcome_event(action, outcome.outcome), **_audit_fields(action), outcome=outcome.outcome, error=outcome.error)
            if progress is not None:
                progress.advance(outcome)
        audit.sync()
    for detail in name_dirs.sweep(actors.store):
        audit.record("store.cleanup_failed", detail=detail)
    # The trash reports each stuck entry to the audit log itself; here the bytes go back to their deletion.
    for entry in actors.trash.drain():
        index = trashed_by.get(entry.path)
        if index is not None:
            done = result.results[index]
            note = f"{done.error}; {entry.note()}" if done.error else entry.note()
            result.results[index] = dataclasses.replace(done, error=note, bytes_left=entry.disk_bytes)
    audit.sync()
    return result


def _purge_trash_first(plan: Plan, actors: Actors) -> None:
    """Purge the trash runs the plan names (undo window over, or disk pressure), and retry the entries an earlier
    run could not purge. What cannot be removed is reported by the trash as stuck and never stops the run."""
    purge = plan.trash_purge
    purged = actors.trash.purge(purge.runs if purge is not None else ())
    if purge is not None:
        actors.audit.record("trash.purged", reason=purge.reason, runs=purged, planned_runs=len(purge.runs),
                            size_bytes=purge.size_bytes, stuck=len(actors.trash.stuck))


def _carry_out(
    action: Action, by_key: dict[tuple[str, str, str], Artifact], actors: Actors, name_dirs: _NameDirs, in_use: InUseCheck
) -> tuple[ActionResult, Path | None]:
    """Carry out one action; return its result and, for a deletion, where the version went in the trash."""
    store = actors.store
    if action.kind == "deployment":
        if actors.deployments is None:
            return ActionResult(action, "skipped", "no deployment providers in this run"), None
        outcome, error = actors.deployments.carry_out(action)
        return ActionResult(action, outcome, error), None
    artifact = by_key.get((action.kind, action.name, action.version or ""))
    if actors.guards is not None and actors.guards.collects(action):
        # A killed save is checked like any version: a process holding it means the save is not dead.
        holder = None if artifact is None else (lambda path, artifact=artifact: in_use.holder(artifact, path))
        outcome, error, trashed = actors.guards.collect(action, store, actors.trash, actors.run_id, holder)
        return ActionResult(action, outcome, error), trashed
    if artifact is None:
        return ActionResult(action, "skipped", "not in the inventory this plan was made from"), None
    try:
        path = store.recheck(artifact)
    except SkipAction as reason:
        return ActionResult(action, "skipped", str(reason)), None
    if actors.guards is not None and (kept := actors.guards.before_delete(artifact, actors.audit)):
        return ActionResult(action, *kept), None
    held = in_use.holder(artifact, path)  # the last check before the version leaves the store
    if held is not None:
        return ActionResult(action, "skipped", held), None
    if actors.archive_dir is not None:
        try:
            archive_version(path, actors.archive_dir, artifact.kind, artifact.name, artifact.version)
        except OSError as error:
            return ActionResult(action, "failed", f"cannot archive to {actors.archive_dir}: {error.strerror or error}"), None
    try:
        trashed = store.move_to_trash(path, actors.run_id)
    except FileNotFoundError:
        return ActionResult(action, "skipped", "already deleted by someone else"), None
    except OSError as error:
        return ActionResult(action, "failed", f"cannot move to trash: {error.strerror or error}"), None
    try:
        store.repair_latest(
            artifact.kind, artifact.name, artifact.version, maybe_emptied=name_dirs.deleted_last_one(artifact)
        )
    except OSError as error:
        # The version is out of the store already; its trash copy is purged all the same.
        actors.trash.finish(trashed, action.policy)
        return ActionResult(action, "ok", f"deleted, but clean-up failed: {error.strerror or error}"), trashed
    actors.trash.finish(trashed, action.policy)
    return ActionResult(action, "ok"), trashed


def _subject(action: Action) -> str:
    return "deployment" if action.kind == "deployment" else "artifact"


def _outcome_event(action: Action, outcome: Outcome) -> str:
    verb = {"delete": "deleted", "terminate": "terminated", "restart": "restarted", "delete_deployment": "deleted"}[
        action.action
    ]
    if outcome == "ok":
        return f"{_subject(action)}.{verb}"
    return f"{_subject(action)}.{action.action}_{outcome}"


def _audit_fields(action: Action) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "action": action.action,
        "policy": action.policy,
        "kind": action.kind,
        "name": action.name,
        "version": action.version,
        "size_bytes": action.size_bytes,
        "disk_bytes": action.disk_bytes,
        "reasons": list(action.reasons),
    }
    if action.provider is not None:
        fields["provider"] = action.provider
    return fields
