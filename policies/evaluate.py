"""Turn an inventory and the configured policies into a plan.

Every retention policy decides for the artifacts it selects; an artifact is deleted
only when no policy keeps it and no protection holds it. Protections (latest, in
use by a running process, referenced by a bento, pinned by label, younger than
``min_age``, invalid entry) always win; while any bento's model references cannot
be read, every model version is protected (fail closed), for retention and disk
policies alike; ``keep_used_within`` keeps what was read recently, for the policy
that sets it. ``acting`` limits which policies may produce actions; the keeps of all
policies still protect, so running one policy never deletes what another keeps.
With a ``backup`` requirement a version that would be deleted is kept instead unless
the registry holds it (policies/backup.py); that gate comes last, after every other reason.
"""

from __future__ import annotations

import dataclasses
import gc
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo

from policies.backup import BackupRequirement
from policies.disk import BackupGate, plan_eviction
from policies.model import (
    IN_USE_BY,
    MODEL_DELETIONS_BLOCKED,
    Action,
    Artifact,
    BentoReferences,
    Deployment,
    DiskReport,
    Inventory,
    Kept,
    Plan,
    Refusal,
    StoreLimits,
    VersionKey,
    format_instant,
)
from policies.offhours import decide_offhours, deciding_policy, ownership_by_key
from policies.retention import apply_rules
from policies.spec import ArtifactPolicy, ConfigPolicy, DiskPolicy, OffhoursPolicy, RetentionPolicy
from policies.store_limits import plan_trash_purge, shrink_refusal

NOT_KEPT = "not kept by any rule"


@dataclass(slots=True)
class _Verdict:
    """What the policies said about one artifact."""

    artifact: Artifact
    keeps: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    deleted_by: list[RetentionPolicy] = field(default_factory=list)


def evaluate(
    inventory: Inventory,
    config_policies: Sequence[ConfigPolicy],
    now: datetime,
    *,
    zone: tzinfo = timezone.utc,
    acting: Collection[str] | None = None,
    backup: BackupRequirement | None = None,
    limits: StoreLimits | None = None,
) -> Plan:
    """Given the store's inventory, the policies and the instant, return the plan.

    ``zone`` is the timezone of calendar buckets; ``acting`` names the policies
    allowed to produce actions (None: all); ``backup`` (None: no requirement) holds the
    registry's answers for versions that would be deleted; ``limits`` the store-wide
    settings (trash retention, max_shrink; None: none). Raise ValueError if ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    with _no_cycle_collection():
        return _evaluate(inventory, config_policies, now, zone, acting, backup, limits or StoreLimits())


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    # Deciding allocates a few objects per version and no reference cycles; the cyclic collector
    # would walk the inventory's large heap again and again for nothing (half the time at 100k).
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _evaluate(
    inventory: Inventory,
    config_policies: Sequence[ConfigPolicy],
    now: datetime,
    zone: tzinfo,
    acting: Collection[str] | None,
    backup: BackupRequirement | None,
    limits: StoreLimits,
) -> Plan:
    trash_purge, disk_after_purge, warnings = plan_trash_purge(inventory, config_policies, limits, now, acting)
    if disk_after_purge != inventory.disk:
        inventory = dataclasses.replace(inventory, disk=disk_after_purge)
    referencing = inventory.bento_references()
    by_name = _group_by_name(inventory.artifacts)
    verdicts: dict[tuple[str, str, str], _Verdict] = {}
    for policy in config_policies:
        if isinstance(policy, RetentionPolicy):
            _decide_retention(policy, inventory, by_name, referencing, now, zone, verdicts)
    warnings = [*inventory.warnings, *warnings]
    warnings.extend(
        f"{artifact.kind} {artifact.tag}: {artifact.problem}; it is never deleted"
        for artifact in inventory.artifacts
        if artifact.problem is not None
    )
    warnings.extend(
        f"{MODEL_DELETIONS_BLOCKED}: {unknown.describe()}; no model version is deleted" for unknown in referencing.unknown
    )
    actions, kept = _merge(verdicts, by_name, acting, warnings, backup)
    reports = _evict_for_disk(config_policies, inventory, referencing, actions, kept, now, zone, acting, warnings, backup)
    _decide_deployments(config_policies, inventory, now, acting, actions, kept)
    refusals = _unlisted(config_policies, inventory, acting)
    actions = _within_limits(config_policies, actions, kept, refusals)
    shrunk = shrink_refusal(inventory.history, len(inventory.artifacts), limits)
    if shrunk is not None:
        actions = _refuse_deletions(actions, kept, shrunk)
        refusals.append(Refusal(None, f"store.max_shrink: {shrunk}"))
    warnings.extend(refusal.describe() for refusal in refusals)
    return Plan(
        at=now.astimezone(timezone.utc),
        actions=tuple(actions),
        kept=tuple(kept),
        warnings=tuple(warnings),
        disk_reports=tuple(reports),
        refusals=tuple(refusals),
        trash_purge=trash_purge,
    )


def _unlisted(config_policies: Sequence[ConfigPolicy], inventory: Inventory, acting: Collection[str] | None) -> list[Refusal]:
    """Refuse each acting off-hours policy whose provider could not list its deployments: nothing of it is decided."""
    failed = dict(inventory.unlisted_providers)
    return [
        Refusal(policy.name, f"provider {policy.provider} could not list its deployments ({failed[policy.provider]}); "
                             "nothing of this policy is decided this run")
        for policy in config_policies
        if isinstance(policy, OffhoursPolicy) and policy.provider in failed and (acting is None or policy.name in acting)
    ]


def _refuse_deletions(actions: list[Action], kept: list[Kept], reason: str) -> list[Action]:
    """Turn every version deletion into a kept item that says why (the store-wide limit refused them)."""
    refused = f"refused: store.max_shrink: {reason}"
    kept.extend(Kept(a.kind, a.name, a.version, a.policy, (refused,)) for a in actions if a.action == "delete")
    return [action for action in actions if action.action != "delete"]


def _evict_for_disk(
    config_policies: Sequence[ConfigPolicy],
    inventory: Inventory,
    referencing: BentoReferences,
    actions: list[Action],
    kept: list[Kept],
    now: datetime,
    zone: tzinfo,
    acting: Collection[str] | None,
    warnings: list[str],
    backup: BackupRequirement | None,
) -> list[DiskReport]:
    """Append disk-policy evictions to ``actions``; every policy's keep_labels still pin.

    While model deletions are blocked, a triggered policy lists each model version it selects in ``kept``,
    so that the block shows up on every version it holds back. A version the backup requirement holds back
    is appended to ``kept`` with that reason.
    """
    pinning = [policy for policy in config_policies if isinstance(policy, ArtifactPolicy) and policy.keep_labels]
    reports = []
    for policy in config_policies:
        if not isinstance(policy, DiskPolicy) or (acting is not None and policy.name not in acting):
            continue
        if inventory.disk is None:
            warnings.append(f"disk policy {policy.name}: filesystem usage unknown; nothing evicted")
            continue
        cutoff = policy.min_age.before(now, zone)
        read_cutoff = policy.keep_used_within.before(now, zone) if policy.keep_used_within else None

        def held(
            artifact: Artifact, policy: DiskPolicy = policy, cutoff: datetime = cutoff, read_cutoff: datetime | None = read_cutoff
        ) -> list[str]:
            reasons = protections(artifact, referencing, policy, cutoff, inventory.in_use)
            reasons.extend(pin for pinner in pinning for pin in pinner.pinning_labels(artifact))
            reasons.extend(policy.read_recently(artifact, read_cutoff))
            return reasons

        deleted = {(action.kind, action.name, action.version or "") for action in actions if action.action == "delete"}
        gate = _backup_gate(backup, policy.name, kept) if backup is not None else None
        evictions, report = plan_eviction(policy, inventory, inventory.disk, deleted, held, now, gate)
        actions.extend(evictions)
        reports.append(report)
        if referencing.blocked is not None and report.triggers:
            held_models = [artifact for artifact in inventory.artifacts if artifact.kind == "model" and policy.selects(artifact)]
            held_models.sort(key=lambda artifact: (artifact.name, artifact.version))
            kept.extend(Kept("model", a.name, a.version, policy.name, tuple(held(a))) for a in held_models)
        if report.triggers and not report.reached:
            warnings.append(report.describe())
    return reports


def _backup_gate(backup: BackupRequirement, policy_name: str, kept: list[Kept]) -> BackupGate:
    """Return the gate a disk policy asks about each version it would evict; held-back ones go to ``kept``."""

    def gate(artifact: Artifact) -> tuple[str | None, str | None]:
        blocking = backup.blocking(artifact)
        if blocking is not None:
            kept.append(Kept(artifact.kind, artifact.name, artifact.version, policy_name, (blocking,)))
            return blocking, None
        return None, backup.push_reason(artifact)

    return gate


def _within_limits(
    config_policies: Sequence[ConfigPolicy], actions: list[Action], kept: list[Kept], refusals: list[Refusal]
) -> list[Action]:
    """Refuse every deletion of a policy whose deletions exceed its per-run limits (blast radius)."""
    limited = {p.name: p for p in config_policies if isinstance(p, ArtifactPolicy)}
    allowed: list[Action] = []
    by_policy: dict[str, list[Action]] = defaultdict(list)
    for action in actions:
        if action.action == "delete" and action.policy in limited:
            by_policy[action.policy].append(action)
        else:
            allowed.append(action)
    refused = False
    for name, deletions in by_policy.items():
        excess = limited[name].exceeds_limits(len(deletions), sum(a.size_bytes or 0 for a in deletions))
        if excess is None:
            allowed.extend(deletions)
            continue
        refused = True
        refusal = f"refused: {excess}; nothing of policy {name} is deleted this run"
        refusals.append(Refusal(name, refusal.removeprefix("refused: ")))
        kept.extend(Kept(a.kind, a.name, a.version, name, (refusal,)) for a in deletions)
    if not refused:
        return actions  # everything allowed: the order is the one we started with
    order = {id(action): index for index, action in enumerate(actions)}
    return sorted(allowed, key=lambda action: order[id(action)])


def _decide_deployments(
    config_policies: Sequence[ConfigPolicy],
    inventory: Inventory,
    now: datetime,
    acting: Collection[str] | None,
    actions: list[Action],
    kept: list[Kept],
) -> None:
    """Append off-hours decisions; each deployment is decided by the first policy that selects it."""
    records = ownership_by_key(inventory.ownership)
    hand_starts = ownership_by_key(inventory.hand_starts)
    offhours = [policy for policy in config_policies if isinstance(policy, OffhoursPolicy)]
    # By identity, not name: the pure API does not insist on unique policy names.
    candidates: dict[int, list[Deployment]] = defaultdict(list)
    for deployment in inventory.deployments:
        deciding = deciding_policy(offhours, deployment)
        if deciding is not None:
            candidates[id(deciding)].append(deployment)
    for policy in offhours:
        policy_actions, policy_kept = decide_offhours(policy, candidates[id(policy)], records, now, hand_starts)
        if acting is None or policy.name in acting:
            actions.extend(policy_actions)
        kept.extend(policy_kept)


def _group_by_name(artifacts: Sequence[Artifact]) -> dict[tuple[str, str], list[Artifact]]:
    """Return the artifacts by (kind, name), names in order of first appearance, versions in inventory order."""
    groups: dict[tuple[str, str], list[Artifact]] = defaultdict(list)
    for artifact in artifacts:
        groups[(artifact.kind, artifact.name)].append(artifact)
    return groups


def _selected_groups(
    policy: ArtifactPolicy, inventory: Inventory, by_name: dict[tuple[str, str], list[Artifact]]
) -> list[list[Artifact]]:
    """Return the groups of the artifacts ``policy`` selects, in the order their first selected member appears."""
    # Kind and name globs are decided once per name; only label selectors need every version.
    names = {group: policy.selects_name(*group) for group in by_name}
    if not policy.labels:
        return [members for group, members in by_name.items() if names[group]]
    groups: dict[tuple[str, str], list[Artifact]] = defaultdict(list)
    for artifact in inventory.artifacts:
        group = (artifact.kind, artifact.name)
        if names[group] and policy.selects_labels(artifact):
            groups[group].append(artifact)
    return list(groups.values())


def _decide_retention(
    policy: RetentionPolicy,
    inventory: Inventory,
    by_name: dict[tuple[str, str], list[Artifact]],
    referencing: BentoReferences,
    now: datetime,
    zone: tzinfo,
    verdicts: dict[tuple[str, str, str], _Verdict],
) -> None:
    rules = policy.rules()
    newer_than_cutoff = policy.keep_newer_than.before(now, zone) if policy.keep_newer_than else None
    newer_than_reason = f"newer than {policy.keep_newer_than}"
    min_age_cutoff = policy.min_age.before(now, zone)
    read_cutoff = policy.keep_used_within.before(now, zone) if policy.keep_used_within else None
    pinning = bool(policy.keep_labels)
    in_use = inventory.in_use
    by_model = referencing.by_model
    models_blocked = referencing.blocked is not None
    for members in _selected_groups(policy, inventory, by_name):
        valid = [artifact for artifact in members if artifact.problem is None]
        rule_reasons = apply_rules([artifact.created_at for artifact in valid], rules, zone, now)  # type: ignore[misc]
        # Within one name the version stands for the tag.
        reasons_by_version = dict(zip((artifact.version for artifact in valid), rule_reasons))
        for artifact in members:
            key = (artifact.kind, artifact.name, artifact.version)
            verdict = verdicts.get(key)
            if verdict is None:
                verdict = verdicts[key] = _Verdict(artifact)
            created_at = artifact.created_at
            if (
                artifact.problem is None
                and not artifact.is_latest
                and not (pinning and artifact.labels)
                and (created_at is None or not created_at > min_age_cutoff)
                and not artifact.modified_at > min_age_cutoff
                and not (artifact.kind == "model" and (models_blocked or (by_model and artifact.tag in by_model)))
                and not (in_use and key in in_use)
            ):
                reasons = []  # the common case: nothing protects it (what protections() would say)
            else:
                reasons = protections(artifact, referencing, policy, min_age_cutoff, in_use)
            rule_kept = reasons_by_version.get(artifact.version)
            if rule_kept:
                reasons.extend(rule_kept)
            if newer_than_cutoff is not None and created_at and created_at > newer_than_cutoff:
                reasons.append(newer_than_reason)
            if read_cutoff is not None:
                reasons.extend(policy.read_recently(artifact, read_cutoff))
            if reasons:
                verdict.keeps.append((policy.name, tuple(reasons)))
            else:
                verdict.deleted_by.append(policy)


def protections(
    artifact: Artifact,
    referencing: BentoReferences,
    policy: ArtifactPolicy,
    min_age_cutoff: datetime,
    in_use: Mapping[VersionKey, str] | None = None,
) -> list[str]:
    """Given an artifact (and who holds which version), return every protection that forbids deleting it (empty: none)."""
    reasons = []
    if artifact.problem is not None:
        reasons.append(f"invalid store entry: {artifact.problem}")
    if artifact.is_latest:
        reasons.append("latest")
    holder = in_use.get((artifact.kind, artifact.name, artifact.version)) if in_use else None
    if holder is not None:
        reasons.append(f"{IN_USE_BY} {holder}")
    if artifact.kind == "model":
        reasons.extend(f"referenced by bento {bento}" for bento in referencing.by_model.get(artifact.tag, ()))
        if referencing.blocked is not None:
            reasons.append(referencing.blocked)
    reasons.extend(policy.pinning_labels(artifact))
    if artifact.created_at is not None and artifact.created_at > min_age_cutoff:
        reasons.append(f"younger than min_age {policy.min_age} (created {format_instant(artifact.created_at)})")
    if artifact.modified_at > min_age_cutoff:
        reasons.append(
            f"directory modified within min_age {policy.min_age} ({format_instant(artifact.modified_at)})"
        )
    return reasons


def _merge(
    verdicts: dict[tuple[str, str, str], _Verdict],
    by_name: dict[tuple[str, str], list[Artifact]],
    acting: Collection[str] | None,
    warnings: list[str],
    backup: BackupRequirement | None,
) -> tuple[list[Action], list[Kept]]:
    kept: list[Kept] = []
    doomed: dict[tuple[str, str], list[tuple[_Verdict, RetentionPolicy]]] = defaultdict(list)
    for verdict in verdicts.values():
        artifact = verdict.artifact
        if verdict.keeps:
            for policy_name, reasons in verdict.keeps:
                kept.append(Kept(artifact.kind, artifact.name, artifact.version, policy_name, reasons))
            continue
        actor = _first_acting(verdict.deleted_by, acting)
        if actor is not None:
            doomed[(artifact.kind, artifact.name)].append((verdict, actor))

    # Sorted on the text of the creation time, as it always was (not the instant: offsets differ).
    ordered: list[tuple[tuple[str, str, str], Action]] = []
    for group, members in doomed.items():
        valid_count = sum(1 for artifact in by_name[group] if artifact.problem is None)
        removes_all = len(members) >= valid_count
        if removes_all and not all(p.allow_remove_all for v in members for p in v[0].deleted_by):
            refusal = "refused: would delete every version (set allow_remove_all = true to allow)"
            warnings.append(f"{group[0]} {group[1]}: every version would be deleted; {refusal.split(': ', 1)[1]}")
            kept.extend(Kept(v.artifact.kind, v.artifact.name, v.artifact.version, p.name, (refusal,)) for v, p in members)
            continue
        for verdict, policy in members:
            artifact = verdict.artifact
            action_reasons: tuple[str, ...] = (NOT_KEPT,)
            if backup is not None:
                # Last of all: only a version nothing else keeps is asked about, and kept if the registry lacks it.
                blocking = backup.blocking(artifact)
                if blocking is not None:
                    kept.append(Kept(artifact.kind, artifact.name, artifact.version, policy.name, (blocking,)))
                    continue
                push = backup.push_reason(artifact)
                action_reasons = (NOT_KEPT, push) if push else action_reasons
            action = Action(
                "delete", artifact.kind, artifact.name, artifact.version, policy.name, action_reasons, artifact.size_bytes,
                disk_bytes=artifact.disk_bytes,
            )
            # The verdict stored under the action's key is this one, unless the version is not text.
            source = artifact if artifact.version is not None else verdicts[(artifact.kind, artifact.name, "")].artifact
            created = source.created_at
            ordered.append(((action.kind, action.name, created.isoformat() if created else ""), action))
    ordered.sort(key=_sort_key)
    kept.sort(key=lambda item: (item.kind, item.name, item.version or "", item.policy))
    return [action for _, action in ordered], kept


def _sort_key(entry: tuple[tuple[str, str, str], Action]) -> tuple[str, str, str]:
    return entry[0]


def _first_acting(policies: list[RetentionPolicy], acting: Collection[str] | None) -> RetentionPolicy | None:
    if acting is None:
        return policies[0] if policies else None
    return next((policy for policy in policies if policy.name in acting), None)
