"""What a run does around the policies: BentoCloud as the backup, and collecting killed saves.

``store.require_pushed``: a model or bento version is deleted only when the named BentoCloud
provider's registry holds that exact version. The registry is asked only about versions the
policies would delete: ``decide`` evaluates once with nothing asked yet (every candidate let
through), asks about the versions that plan deletes, and evaluates again with the answers; a
version held back can make a disk policy pick another one, so this repeats, at most
``MAX_ROUNDS`` times, until a plan deletes nothing unasked. Versions still unasked then are kept.
A "held" answer is not checked again under the lock: a pushed version stays pushed.

``store.push_before_delete``: a version the registry lacks (or whose upload failed) is pushed
with BentoML's CLI just before it is deleted, and deleted only once the registry says "success".

``store.collect_incomplete_after``: killed saves and old entries of BentoML's tmp directory are
deleted first, as actions of their own (policy ``store.collect_incomplete_after``).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Collection
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import structlog

from daemon.audit import AuditLog
from daemon.config import Settings
from daemon.files import write_file_atomically
from daemon.incomplete import FoundLeftover, collect_leftover, find_leftovers
from daemon.providers import ProviderError
from daemon.push import Pusher, find_bentoml, room_for_archive
from daemon.store import SkipAction, Store
from daemon.trash import Trash
from policies import Artifact, DiskUsage, Inventory, Plan, evaluate
from policies.backup import NOT_CONFIRMED, BackupAnswer, BackupRequirement, backup_group, unconfirmed, upload_answer
from policies.incomplete import collect_leftovers
from policies.model import Action, Refusal, StoreLimits, format_instant

if TYPE_CHECKING:
    from daemon.cloud_registry import CloudRegistry, HeldCache

log = structlog.get_logger("retentiond")
MAX_ROUNDS = 6
STATE_FILE = "backup.json"
Outcome = Literal["ok", "failed", "skipped"]
VersionKey = tuple[str, str, str]


class RunGuards:
    """One run's backup check, pushes and leftover collection; built by ``open``, used by the runner and the executor."""

    def __init__(
        self, settings: Settings, home: Path, *, registry: CloudRegistry | None = None, cache: HeldCache | None = None,
        pusher: Pusher | None = None, collect: bool = False,
    ) -> None:
        self.settings = settings
        self.home = home
        self.registry = registry
        self.cache = cache
        self.pusher = pusher
        self.collect_leftovers = collect
        self._leftovers: dict[tuple[str, str, str], FoundLeftover] = {}
        self._cutoff = datetime.min.replace(tzinfo=timezone.utc)
        self._pushes: set[VersionKey] = set()
        self._sizes: dict[VersionKey, int] = {}
        self.summary: dict[str, Any] | None = None

    @classmethod
    def open(
        cls, settings: Settings, home: Path, now: datetime, *, store_run: bool = True, stop: threading.Event | None = None
    ) -> RunGuards:
        """Given the config, return the guards of one run (``store_run`` False: a run that does not scan the store;
        ``stop`` set: a push in progress is stopped).

        Raise ConfigError if the registry's provider has no API token.
        """
        store = settings.store
        if not store_run:
            return cls(settings, home)
        registry = cache = pusher = None
        if store.require_pushed:
            # httpx (and what it pulls in) only for a run that asks the registry: start-up is most of a small run.
            from daemon.cloud_registry import HeldCache, open_registry

            registry = open_registry(settings)
            ttl = timedelta(seconds=store.require_pushed_cache.approx_seconds())
            cache = HeldCache.load(settings.daemon.state_dir, registry.endpoint, ttl, now)
            bentoml = find_bentoml() if store.push_before_delete else None
            if bentoml is not None:
                pusher = Pusher(bentoml, home, registry.endpoint, registry.api_token, store.push_timeout.approx_seconds(), stop)
        return cls(settings, home, registry=registry, cache=cache, pusher=pusher, collect=store.collect_incomplete_after is not None)

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close()

    def __enter__(self) -> RunGuards:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    # --- deciding ------------------------------------------------------------------------

    def decide(
        self, inventory: Inventory, now: datetime, acting: Collection[str] | None = None, limits: StoreLimits | None = None
    ) -> Plan:
        """Given the run's inventory, instant and store-wide limits, return its plan: leftovers to collect, then what
        the policies decide, with every version deletion held to the backup requirement. Raise ValueError if ``now``
        is naive."""
        collecting, replaced, extra_warnings, inventory = self._leftovers_first(inventory, now)
        if self.registry is None:
            plan = evaluate(inventory, self.settings.policies, now, zone=self.settings.daemon.zone, acting=acting, limits=limits)
        else:
            plan = self._decide_with_registry(inventory, now, acting, limits)
        warnings = [replaced.get(warning, warning) for warning in plan.warnings] + extra_warnings
        return dataclasses.replace(plan, actions=(*collecting, *plan.actions), warnings=tuple(warnings))

    def _leftovers_first(self, inventory: Inventory, now: datetime) -> tuple[list[Action], dict[str, str], list[str], Inventory]:
        """Plan the leftovers to collect; return them, the scan warnings to reword for younger ones, more
        warnings, and the inventory the policies see (without what is collected, the disk as it will be)."""
        after = self.settings.store.collect_incomplete_after
        if not self.collect_leftovers or after is None:
            return [], {}, [], inventory
        zone = self.settings.daemon.zone
        found, warnings = find_leftovers(self.home, inventory)
        for item in [item for item in found if item.key in inventory.in_use]:
            # A process holds it: whatever it is, it is not a dead save.
            found.remove(item)
            warnings.append(f"{item.leftover.kind} {item.leftover.name}:{item.leftover.version}: no {item.leftover.missing}, "
                            f"but in use by {inventory.in_use[item.key]}; not collected")
        actions, younger = collect_leftovers([item.leftover for item in found], after, now, zone)
        self._cutoff = after.before(now, zone)
        by_key = {item.key: item for item in found}
        self._leftovers = {(a.kind, a.name, a.version or ""): by_key[(a.kind, a.name, a.version or "")] for a in actions}
        # The scan says a directory without model.yaml "is never deleted"; with collection on, say when it will be.
        replaced = {
            f"{leftover.kind} {leftover.name}:{leftover.version}: no {leftover.missing}; it is never deleted":
                f"{leftover.kind} {leftover.name}:{leftover.version}: {note}"
            for leftover, note in younger if leftover.kind != "tmp"
        }
        freed = sum(action.usage_bytes for action in actions)
        remaining = tuple(a for a in inventory.artifacts if (a.kind, a.name, a.version) not in self._leftovers)
        disk = inventory.disk and DiskUsage(inventory.disk.total_bytes, max(inventory.disk.used_bytes - freed, 0))
        return actions, replaced, warnings, dataclasses.replace(inventory, artifacts=remaining, disk=disk)

    def _decide_with_registry(
        self, inventory: Inventory, now: datetime, acting: Collection[str] | None, limits: StoreLimits | None
    ) -> Plan:
        from daemon.cloud_registry import ask_registry

        assert self.registry is not None and self.cache is not None
        settings = self.settings
        self._sizes = {(a.kind, a.name, a.version): a.size_bytes for a in inventory.artifacts}
        answers: dict[VersionKey, BackupAnswer] = {}
        failure: str | None = None
        for asked_rounds in range(MAX_ROUNDS + 1):
            plan = evaluate(inventory, settings.policies, now, zone=settings.daemon.zone, acting=acting,
                            backup=BackupRequirement(dict(answers)), limits=limits)
            wanted = [key for key in _deletions(plan) if key not in answers]
            if not wanted:
                return self._finish(plan, answers, None, None)
            if asked_rounds == MAX_ROUNDS:
                break
            statuses, failure = ask_registry(self.registry, self.cache, wanted, now)
            answers.update((key, self._answer(key, status)) for key, status in statuses.items())
            if failure is not None:
                break
        unasked = unconfirmed("registry could not be asked" if failure else "not asked this run")
        plan = evaluate(inventory, settings.policies, now, zone=settings.daemon.zone, acting=acting,
                        backup=BackupRequirement(dict(answers), unasked), limits=limits)
        return self._finish(plan, answers, failure, len(answers) if failure is None else None)

    def _answer(self, key: VersionKey, status: str | None) -> BackupAnswer:
        answer = upload_answer(status)
        if answer.status == "held" or not self.settings.store.push_before_delete or status not in (None, "failed"):
            return answer  # an upload in progress is left to finish
        if self.pusher is None:
            return dataclasses.replace(answer, reason=f"{answer.reason}; cannot push it: no bentoml CLI found")
        no_room = room_for_archive(self.home, self._sizes.get(key, 0))
        if no_room is not None:
            return dataclasses.replace(answer, reason=f"{answer.reason}; {no_room}")
        return dataclasses.replace(answer, push=True)

    def _finish(self, plan: Plan, answers: dict[VersionKey, BackupAnswer], failure: str | None, gave_up_after: int | None) -> Plan:
        assert self.registry is not None and self.cache is not None
        self.cache.save()
        self._pushes = {key for key in _deletions(plan) if (answer := answers.get(key)) is not None and answer.push}
        held_back: dict[VersionKey, str] = {}
        for kept in plan.kept:
            for reason in kept.reasons:
                group = backup_group(reason)
                if group is not None:
                    held_back.setdefault((kept.kind, kept.name, kept.version or ""), group)
        by_group: dict[str, int] = {}
        for group in held_back.values():
            by_group[group] = by_group.get(group, 0) + 1
        provider = self.registry.provider
        self.summary = {
            "provider": provider, "at": format_instant(plan.at), "asked": len(answers),
            "held_back_versions": len(held_back), "held_back_bytes": sum(self._sizes.get(key, 0) for key in held_back),
            "by_reason": by_group, "pushes_planned": len(self._pushes), "registry_error": failure,
        }
        warnings, refusals = list(plan.warnings), list(plan.refusals)
        if failure is not None:
            unconfirmed_count = by_group.get(NOT_CONFIRMED, 0)
            refusal = Refusal(None, f"require_pushed {provider}: BentoCloud's registry could not be asked ({failure}); "
                                    f"{unconfirmed_count} version(s) that would be deleted are kept")
            refusals.append(refusal)
            warnings.append(refusal.describe())
            log.warning("registry.unavailable", provider=provider, error=failure, kept=unconfirmed_count)
        elif gave_up_after is not None:
            warnings.append(f"require_pushed {provider}: asked BentoCloud about {gave_up_after} versions in "
                            f"{MAX_ROUNDS} rounds and stopped; versions not asked are kept this run")
        return dataclasses.replace(plan, warnings=tuple(warnings), refusals=tuple(refusals))

    # --- acting (under the store lock) ---------------------------------------------------

    def collects(self, action: Action) -> bool:
        """Return True if ``action`` collects a leftover this run planned."""
        return (action.kind, action.name, action.version or "") in self._leftovers

    def collect(
        self, action: Action, store: Store, trash: Trash, run_id: str, holder: Callable[[Path], str | None] | None = None
    ) -> tuple[Outcome, str | None, Path | None]:
        """Collect the leftover ``action`` names (``collects`` is True); return (outcome, error, where it went in the
        trash). ``holder`` says, right before the move, why the directory is in use (None: it is not)."""
        found = self._leftovers[(action.kind, action.name, action.version or "")]
        try:
            trashed = collect_leftover(found, self._cutoff, store, run_id, holder)
        except SkipAction as reason:
            return "skipped", str(reason), None
        except FileNotFoundError:
            return "skipped", "already removed by someone else", None
        except OSError as error:
            return "failed", f"cannot move to trash: {error.strerror or error}", None
        error_text = None
        if found.leftover.kind != "tmp":
            try:
                # A killed first save of a name leaves its name directory empty; BentoML removes emptied ones too.
                store.repair_latest(found.leftover.kind, found.leftover.name, found.leftover.version or "")
            except OSError as error:
                error_text = f"collected, but clean-up failed: {error.strerror or error}"
        trash.finish(trashed, action.policy)
        return "ok", error_text, trashed

    def before_delete(self, artifact: Artifact, audit: AuditLog) -> tuple[Outcome, str] | None:
        """Just before a version is deleted: push it if the plan said so, and confirm BentoCloud holds it.

        Return None to go ahead, else (outcome, error) to keep it. The push is audited (intent, outcome).
        """
        key = (artifact.kind, artifact.name, artifact.version)
        if key not in self._pushes or self.registry is None or self.pusher is None:
            return None
        fields = {"kind": artifact.kind, "name": artifact.name, "version": artifact.version,
                  "size_bytes": artifact.size_bytes, "provider": self.registry.provider}
        audit.record("artifact.push_intended", **fields)
        audit.sync()
        started = time.monotonic()
        error = room_for_archive(self.home, artifact.size_bytes) or self.pusher.push(*key)
        if error is None:
            try:
                status = self.registry.upload_status(*key)
            except ProviderError as failure:
                error = f"pushed, but BentoCloud cannot be asked: {failure}"
            else:
                if status != "success":
                    error = f"pushed, but BentoCloud says: {upload_answer(status).reason}"
        duration = round(time.monotonic() - started, 1)
        if error is None:
            audit.record("artifact.pushed", **fields, outcome="ok", duration_s=duration)
            return None
        audit.record("artifact.push_failed", **fields, outcome="failed", error=error, duration_s=duration)
        return "failed", f"not deleted: {error}"

    def record(self, state_dir: Path, run_id: str) -> None:
        """After a run, keep its backup summary for ``status`` (best effort)."""
        if self.summary is None:
            return
        path = state_dir / STATE_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            write_file_atomically(path, json.dumps({**self.summary, "run_id": run_id}).encode())
        except OSError as error:
            log.warning("state.write_failed", path=str(path), error=error.strerror or str(error))


def _deletions(plan: Plan) -> list[VersionKey]:
    return [(a.kind, a.name, a.version or "") for a in plan.actions if a.action == "delete" and a.kind in ("model", "bento")]


def backup_status(settings: Settings) -> dict[str, Any] | None:
    """Return what ``status`` shows about the backup requirement: the last run's summary (None when it is off)."""
    if settings.store.require_pushed is None:
        return None
    try:
        last = json.loads((settings.daemon.state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        last = None
    if not isinstance(last, dict) or last.get("provider") != settings.store.require_pushed:
        return {"provider": settings.store.require_pushed, "source": "no run yet"}
    return {**last, "source": "last run"}
