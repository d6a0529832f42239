"""Turn an inventory and the configured policies into a plan.

Every retention policy decides for the artifacts it selects; an artifact is deleted
only when no policy keeps it and no protection holds it. Protections (latest,
referenced by a bento, pinned by label, younger than ``min_age``, invalid entry)
always win. ``acting`` limits which policies may produce actions; the keeps of all
policies still protect, so running one policy never deletes what another keeps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo

from policies.disk import plan_eviction
from policies.model import Action, Artifact, DiskReport, Inventory, Kept, Plan, format_instant
from policies.offhours import decide_offhours, ownership_by_key
from policies.retention import apply_rules
from policies.spec import ArtifactPolicy, ConfigPolicy, DiskPolicy, OffhoursPolicy, RetentionPolicy

NOT_KEPT = "not kept by any rule"


@dataclass
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
) -> Plan:
    """Given the store's inventory, the policies and the instant, return the plan.

    ``zone`` is the timezone of calendar buckets; ``acting`` names the policies
    allowed to produce actions (None: all). Raise ValueError if ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    referencing = inventory.referencing_bentos()
    verdicts: dict[tuple[str, str, str], _Verdict] = {}
    for policy in config_policies:
        if isinstance(policy, RetentionPolicy):
            _decide_retention(policy, inventory, referencing, now, zone, verdicts)
    warnings = list(inventory.warnings)
    warnings.extend(
        f"{artifact.kind} {artifact.tag}: {artifact.problem}; it is never deleted"
        for artifact in inventory.artifacts
        if artifact.problem is not None
    )
    actions, kept = _merge(verdicts, inventory, acting, warnings)
    reports = _evict_for_disk(config_policies, inventory, referencing, actions, now, zone, acting, warnings)
    _decide_deployments(config_policies, inventory, now, acting, actions, kept)
    refusals: list[str] = []
    actions = _within_limits(config_policies, actions, kept, refusals)
    warnings.extend(refusals)
    return Plan(
        at=now.astimezone(timezone.utc),
        actions=tuple(actions),
        kept=tuple(kept),
        warnings=tuple(warnings),
        disk_reports=tuple(reports),
        refusals=tuple(refusals),
    )


def _evict_for_disk(
    config_policies: Sequence[ConfigPolicy],
    inventory: Inventory,
    referencing: dict[str, list[str]],
    actions: list[Action],
    now: datetime,
    zone: tzinfo,
    acting: Collection[str] | None,
    warnings: list[str],
) -> list[DiskReport]:
    """Append disk-policy evictions to ``actions``; every policy's keep_labels still pin."""
    pinning = [policy for policy in config_policies if isinstance(policy, ArtifactPolicy) and policy.keep_labels]
    reports = []
    for policy in config_policies:
        if not isinstance(policy, DiskPolicy) or (acting is not None and policy.name not in acting):
            continue
        if inventory.disk is None:
            warnings.append(f"disk policy {policy.name}: filesystem usage unknown; nothing evicted")
            continue
        cutoff = policy.min_age.before(now, zone)

        def held(artifact: Artifact, policy: DiskPolicy = policy, cutoff: datetime = cutoff) -> list[str]:
            reasons = protections(artifact, referencing, policy, cutoff)
            reasons.extend(pin for pinner in pinning for pin in pinner.pinning_labels(artifact))
            return reasons

        deleted = {(action.kind, action.name, action.version or "") for action in actions if action.action == "delete"}
        evictions, report = plan_eviction(policy, inventory, inventory.disk, deleted, held, now)
        actions.extend(evictions)
        reports.append(report)
        if report.triggers and not report.reached:
            warnings.append(report.describe())
    return reports


def _within_limits(
    config_policies: Sequence[ConfigPolicy], actions: list[Action], kept: list[Kept], refusals: list[str]
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
    for name, deletions in by_policy.items():
        excess = limited[name].exceeds_limits(len(deletions), sum(a.size_bytes or 0 for a in deletions))
        if excess is None:
            allowed.extend(deletions)
            continue
        refusal = f"refused: {excess}; nothing of policy {name} is deleted this run"
        refusals.append(f"policy {name}: {refusal.removeprefix('refused: ')}")
        kept.extend(Kept(a.kind, a.name, a.version, name, (refusal,)) for a in deletions)
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
    """Append off-hours decisions; a deployment claimed by an earlier policy is not decided again."""
    records = ownership_by_key(inventory.ownership)
    decided: set[tuple[str, str]] = set()
    for policy in config_policies:
        if not isinstance(policy, OffhoursPolicy):
            continue
        candidates = [d for d in inventory.deployments if (d.provider, d.name) not in decided and policy.selects(d)]
        decided.update((d.provider, d.name) for d in candidates)
        policy_actions, policy_kept = decide_offhours(policy, candidates, records, now)
        if acting is None or policy.name in acting:
            actions.extend(policy_actions)
        kept.extend(policy_kept)


def _decide_retention(
    policy: RetentionPolicy,
    inventory: Inventory,
    referencing: dict[str, list[str]],
    now: datetime,
    zone: tzinfo,
    verdicts: dict[tuple[str, str, str], _Verdict],
) -> None:
    groups: dict[tuple[str, str], list[Artifact]] = defaultdict(list)
    for artifact in inventory.artifacts:
        if policy.selects(artifact):
            groups[(artifact.kind, artifact.name)].append(artifact)
    rules = policy.rules()
    newer_than_cutoff = policy.keep_newer_than.before(now, zone) if policy.keep_newer_than else None
    min_age_cutoff = policy.min_age.before(now, zone)
    for members in groups.values():
        valid = [artifact for artifact in members if artifact.problem is None]
        rule_reasons = apply_rules([artifact.created_at for artifact in valid], rules, zone, now)  # type: ignore[misc]
        reasons_by_tag = dict(zip((artifact.tag for artifact in valid), rule_reasons))
        for artifact in members:
            verdict = verdicts.setdefault((artifact.kind, artifact.name, artifact.version), _Verdict(artifact))
            reasons = list(protections(artifact, referencing, policy, min_age_cutoff))
            reasons.extend(reasons_by_tag.get(artifact.tag, ()))
            if newer_than_cutoff is not None and artifact.created_at and artifact.created_at > newer_than_cutoff:
                reasons.append(f"newer than {policy.keep_newer_than}")
            if reasons:
                verdict.keeps.append((policy.name, tuple(reasons)))
            else:
                verdict.deleted_by.append(policy)


def protections(
    artifact: Artifact,
    referencing: dict[str, list[str]],
    policy: ArtifactPolicy,
    min_age_cutoff: datetime,
) -> list[str]:
    """Given an artifact, return every protection that forbids deleting it (empty: none)."""
    reasons = []
    if artifact.problem is not None:
        reasons.append(f"invalid store entry: {artifact.problem}")
    if artifact.is_latest:
        reasons.append("latest")
    if artifact.kind == "model":
        reasons.extend(f"referenced by bento {bento}" for bento in referencing.get(artifact.tag, ()))
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
    inventory: Inventory,
    acting: Collection[str] | None,
    warnings: list[str],
) -> tuple[list[Action], list[Kept]]:
    kept: list[Kept] = []
    doomed: dict[tuple[str, str], list[tuple[_Verdict, RetentionPolicy]]] = defaultdict(list)
    for verdict in verdicts.values():
        artifact = verdict.artifact
        for policy_name, reasons in verdict.keeps:
            kept.append(Kept(artifact.kind, artifact.name, artifact.version, policy_name, reasons))
        if verdict.keeps:
            continue
        actor = next((p for p in verdict.deleted_by if acting is None or p.name in acting), None)
        if actor is not None:
            doomed[(artifact.kind, artifact.name)].append((verdict, actor))

    valid_counts: dict[tuple[str, str], int] = defaultdict(int)
    for artifact in inventory.artifacts:
        if artifact.problem is None:
            valid_counts[(artifact.kind, artifact.name)] += 1
    actions: list[Action] = []
    for group, members in doomed.items():
        removes_all = len(members) >= valid_counts[group]
        if removes_all and not all(p.allow_remove_all for v in members for p in v[0].deleted_by):
            refusal = "refused: would delete every version (set allow_remove_all = true to allow)"
            warnings.append(f"{group[0]} {group[1]}: every version would be deleted; {refusal.split(': ', 1)[1]}")
            kept.extend(Kept(v.artifact.kind, v.artifact.name, v.artifact.version, p.name, (refusal,)) for v, p in members)
            continue
        for verdict, policy in members:
            artifact = verdict.artifact
            actions.append(
                Action("delete", artifact.kind, artifact.name, artifact.version, policy.name, (NOT_KEPT,), artifact.size_bytes)
            )
    actions.sort(key=lambda action: (action.kind, action.name, _created(verdicts, action)))
    kept.sort(key=lambda item: (item.kind, item.name, item.version or "", item.policy))
    return actions, kept


def _created(verdicts: dict[tuple[str, str, str], _Verdict], action: Action) -> str:
    artifact = verdicts[(action.kind, action.name, action.version or "")].artifact
    return artifact.created_at.isoformat() if artifact.created_at else ""
