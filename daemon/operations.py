"""Operations by hand, through the same lock and audit log as every run.

``deployments terminate|restart NAME`` (a manual terminate is never undone by
off-hours; a manual restart in downtime is left up until the next window),
``deployments list`` and ``restore NAME:VERSION``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from daemon.config import Settings
from daemon.deployments import MANUAL_POLICY, DeploymentContext, list_deployments, with_deployments
from daemon.errors import ListingError, RestoreError, UsageError
from daemon.executor import RunResult, execute
from daemon.instants import utc_now
from daemon.ownership import OwnershipFile
from daemon.providers.registry import build_providers
from daemon.runner import LockedRun, finish_run, locked_run, ready_deployments
from daemon.store import SkipAction
from daemon.trash import TrashedVersion
from policies import Action, Inventory, Plan, evaluate
from policies.model import ActionName, ArtifactKind, Deployment, HandStart, Ownership, format_instant
from policies.offhours import RUNNING, hand_start_policy, next_window


def manual_deployment_action(
    settings: Settings,
    action: ActionName,
    name: str,
    provider: str | None,
    *,
    wait_seconds: float = 0,
    clock: Callable[[], datetime] = utc_now,
) -> RunResult:
    """Terminate or restart one deployment by hand, through the same lock and audit log.

    A manual terminate is recorded as manual, so off-hours never restarts it. A manual restart
    while the off-hours policy deciding the deployment is in downtime is recorded as a start by
    hand, so off-hours leaves it up until that window ends. Raise UsageError for an unknown
    ``provider``, or if no provider, or more than one, lists a deployment of that name; ListingError
    if none does and a provider could not list.
    """
    if provider is not None and provider not in settings.providers:
        known = ", ".join(sorted(settings.providers)) or "none configured"
        raise UsageError(f"--provider: unknown provider {provider!r} (configured: {known})")
    with locked_run(settings, [MANUAL_POLICY], wait_seconds, clock=clock) as run:
        wanted = {provider} if provider else set(settings.providers)
        providers = build_providers(settings, wanted)
        ownership_file = OwnershipFile(settings.daemon.state_dir)
        context = DeploymentContext(providers, list_deployments(providers), ownership_file, ownership_file.load())
        try:
            result = _manual(settings, run, context, action, name)
        finally:
            context.close()
        finish_run(run, result, settings, [MANUAL_POLICY])
    return result


def _manual(settings: Settings, run: LockedRun, context: DeploymentContext, action: ActionName, name: str) -> RunResult:
    now = run.now
    actor = ready_deployments(context, run, settings)
    matches = [d for d in context.view.deployments if d.name == name]
    if not matches and (context.view.failed or context.view.warnings):
        # Not a usage error: the deployment may well exist in the provider that did not answer (in full).
        raise ListingError(f"deployment {name!r} not found, and {'; '.join(context.view.problems())}")
    if not matches:
        listed = ", ".join(sorted(context.view.listed)) or "no provider"
        raise UsageError(f"no deployment named {name!r} (listed by {listed}); `retentiond deployments list` shows them")
    if len(matches) > 1:
        where = ", ".join(sorted({d.provider for d in matches}))
        raise UsageError(f"deployment {name!r} found in {where}; name one provider with --provider")
    reasons: tuple[str, ...] = (f"{action} requested by hand",)
    policy = hand_start_policy(settings.offhours, matches[0], now) if action == "restart" else None
    if policy is not None:
        reasons = (*reasons, f"in {policy.describe_window(now)} (policy {policy.name}): "
                   f"off-hours leaves it up until {next_window(policy, now)}")
    plan = Plan(at=now, actions=(
        Action(action, "deployment", name, None, MANUAL_POLICY, reasons, provider=matches[0].provider),
    ))
    return execute(plan, with_deployments(Inventory(()), context), run.actors(actor))


def list_all_deployments(settings: Settings, now: datetime) -> list[dict[str, object]]:
    """Return every provider's deployments with our ownership record and what off-hours says now."""
    providers = build_providers(settings)
    ownership_file = OwnershipFile(settings.daemon.state_dir)
    context = DeploymentContext(providers, list_deployments(providers), ownership_file, ownership_file.load())
    context.close()
    inventory = with_deployments(Inventory(()), context)
    plan = evaluate(inventory, settings.offhours, now, zone=settings.daemon.zone)
    decisions: dict[tuple[str, str], tuple[str, str, tuple[str, ...]]] = {}
    for action in plan.actions:
        decisions[(action.provider or "", action.name)] = (action.action, action.policy, action.reasons)
    provider_of = {policy.name: policy.provider for policy in settings.offhours}
    for kept in plan.kept:
        decisions.setdefault((provider_of[kept.policy], kept.name), ("keep", kept.policy, kept.reasons))
    rows: list[dict[str, object]] = []
    for deployment in inventory.deployments:
        record = context.state.records.get((deployment.provider, deployment.name))
        hand_start = context.state.hand_starts.get((deployment.provider, deployment.name))
        decision, policy_name, reasons = decisions.get((deployment.provider, deployment.name), ("-", None, ()))
        deciding = next((p for p in settings.offhours if p.name == policy_name), None)
        change = deciding.window.next_change(now) if deciding else None
        rows.append({
            "provider": deployment.provider, "name": deployment.name, "status": deployment.status,
            "owner": _owner(deployment, record, hand_start),
            "terminated_at": format_instant(record.terminated_at) if record else None,
            "started_by_hand_at": format_instant(hand_start.started_at) if hand_start else None,
            "policy": policy_name, "now": decision, "reasons": list(reasons),
            "next_window_change": format_instant(change) if change else None,
        })
    # A provider that could not list at all is named in its row (scripts exit 1 on it); a partial listing is a note.
    rows.extend({"provider": None, "name": None, "status": "error", "reasons": [w]} for w in context.view.warnings)
    rows.extend(
        {"provider": name, "name": None, "status": "error", "reasons": [f"provider {name}: cannot list deployments: {why}"]}
        for name, why in context.view.failed.items()
    )
    return rows


def _owner(deployment: Deployment, record: Ownership | None, hand_start: HandStart | None) -> str | None:
    """Return who has the deployment in the state it is in, as ``deployments list`` shows it."""
    if hand_start is not None or (record is not None and deployment.status in RUNNING):
        return "started by hand"
    if record is None:
        return None
    return "manual" if record.manual else f"retentiond ({record.policy})"


def split_tag(tag: str) -> tuple[str, str]:
    """Given ``NAME:VERSION``, return (name, version). Raise UsageError if either part is missing."""
    name, _, version = tag.partition(":")
    if not name or not version:
        raise UsageError(f"restore needs NAME:VERSION (a version from `retentiond audit show`), got {tag!r}")
    return name, version


def restore_version(settings: Settings, tag: str, kind: ArtifactKind | None) -> TrashedVersion:
    """Take ``NAME:VERSION`` back out of the trash, under the lock and in the audit log.

    Raise UsageError for a malformed tag and RetentiondError when it cannot be restored.
    """
    name, version = split_tag(tag)
    with locked_run(settings, ["restore"], 0) as run:
        run.audit.record("artifact.restore_intended", kind=kind, name=name, version=version, policy="manual")
        run.audit.sync()
        try:
            restored = run.trash.restore(kind, name, version)
        except (SkipAction, OSError) as error:
            run.audit.record("artifact.restore_failed", kind=kind, name=name, version=version, error=str(error))
            raise RestoreError(str(error)) from None
        run.audit.record(
            "artifact.restored", kind=restored.kind, name=name, version=version, size_bytes=restored.size_bytes,
            trashed_at=format_instant(restored.trashed_at), outcome="ok",
        )
        run.audit.record("run.finished", restored=1)
    return restored
