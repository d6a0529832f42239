"""Off-hours decisions, level-triggered from state: what to terminate, restart or delete now.

Inside downtime, running matching deployments are terminated — unless they are in
their grace period, excluded, or were started by hand during this same downtime
(we terminated them earlier in it; ``enforce`` overrides). Outside downtime, only
what this daemon terminated (an ownership record, not a manual one) is restarted.
Because decisions come from state, a daemon that was down across a window edge
does the right thing when it starts. ``delete_after`` deletes deployments that have
stayed terminated or failed that long; until then ``kept`` says when.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from policies.model import Action, ActionName, Deployment, Kept, Ownership, format_instant
from policies.spec import EXCLUDE_LABEL, EXCLUDE_UNTIL_LABEL, OffhoursPolicy

RUNNING = frozenset({"running", "deploying", "unhealthy", "scaled-to-zero"})
INACTIVE = frozenset({"terminated", "failed", "image-build-failed"})

OwnershipKey = tuple[str, str]


def ownership_by_key(records: Sequence[Ownership]) -> dict[OwnershipKey, Ownership]:
    return {(record.provider, record.name): record for record in records}


def current_record(deployment: Deployment, records: Mapping[OwnershipKey, Ownership]) -> Ownership | None:
    """Return our record of this very deployment; one of a deleted-and-recreated namesake does not count."""
    record = records.get((deployment.provider, deployment.name))
    if record is None:
        return None
    if record.identity and deployment.identity and record.identity != deployment.identity:
        return None
    return record


def decide_offhours(
    policy: OffhoursPolicy,
    deployments: Sequence[Deployment],
    records: Mapping[OwnershipKey, Ownership],
    now: datetime,
) -> tuple[list[Action], list[Kept]]:
    """Given the deployments, our ownership records and the instant, return actions and kept items."""
    actions: list[Action] = []
    kept: list[Kept] = []
    inside = policy.window.matches(now)
    for deployment in deployments:
        if not policy.selects(deployment):
            continue
        if deployment.left_alone:
            kept.append(Kept("deployment", deployment.name, None, policy.name, (deployment.left_alone,)))
            continue
        deletion = _due_deletion(policy, deployment, now)
        if deletion is not None and deletion <= now:
            actions.append(_action("delete_deployment", policy, deployment, (f"{deployment.status} since "
                                   f"{format_instant(_inactive_since(deployment) or now)}, delete_after {policy.delete_after}",)))
            continue
        decision, reasons = _decide_one(policy, deployment, current_record(deployment, records), inside, now)
        if deletion is not None:
            reasons = (*reasons, f"will be deleted at {format_instant(deletion)} (delete_after {policy.delete_after})")
        if decision is None:
            kept.append(Kept("deployment", deployment.name, None, policy.name, reasons))
        else:
            actions.append(_action(decision, policy, deployment, reasons))
    return actions, kept


def _decide_one(
    policy: OffhoursPolicy, deployment: Deployment, record: Ownership | None, inside: bool, now: datetime
) -> tuple[ActionName | None, tuple[str, ...]]:
    pattern = policy.excluding_pattern(deployment)
    excluded = f"excluded by name pattern {pattern!r}" if pattern else _exclusion(deployment, now)
    if excluded is not None:
        return None, (excluded,)
    window = policy.describe_window(now)
    if inside and deployment.status in RUNNING:
        if record is not None and not policy.enforce and _started_by_hand(record, now):
            return None, (f"started by hand during this downtime (we terminated it at {format_instant(record.terminated_at)});"
                          " stays up until the next window",)
        changed = max((t for t in (deployment.created_at, deployment.updated_at) if t is not None), default=None)
        if changed is not None and now < policy.grace_period.after(changed, timezone.utc):
            return None, (f"grace period {policy.grace_period} after a change at {format_instant(changed)}",)
        return "terminate", (window,)
    if not inside and record is not None and not record.manual and deployment.status in INACTIVE:
        return "restart", (f"outside {window}", f"terminated by retentiond at {format_instant(record.terminated_at)}")
    return None, _why_left(policy, deployment, record, inside, now)


def _why_left(
    policy: OffhoursPolicy, deployment: Deployment, record: Ownership | None, inside: bool, now: datetime
) -> tuple[str, ...]:
    change = policy.window.next_change(now)
    upcoming = f"; window {'ends' if inside else 'begins'} {format_instant(change)}" if change else ""
    if record is not None and record.manual:
        return (f"terminated by hand at {format_instant(record.terminated_at)}; never restarted by off-hours{upcoming}",)
    if inside:
        owner = f", by retentiond at {format_instant(record.terminated_at)}" if record else ""
        return (f"{deployment.status} in {policy.describe_window(now)}{owner}{upcoming}",)
    if deployment.status in INACTIVE:
        return (f"{deployment.status}, not by retentiond: left as it is{upcoming}",)
    return (f"{deployment.status} outside downtime{upcoming}",)


def _started_by_hand(record: Ownership, now: datetime) -> bool:
    return record.window_ends_at is None or now < record.window_ends_at


def _exclusion(deployment: Deployment, now: datetime) -> str | None:
    if deployment.labels.get(EXCLUDE_LABEL, "").lower() == "true":
        return f"excluded by label {EXCLUDE_LABEL}=true"
    until_text = deployment.labels.get(EXCLUDE_UNTIL_LABEL)
    if until_text:
        try:
            until = datetime.fromisoformat(until_text.replace("Z", "+00:00"))
        except ValueError:
            return f"excluded: label {EXCLUDE_UNTIL_LABEL}={until_text!r} is not ISO 8601 (treated as excluded)"
        if until.tzinfo is None:
            return f"excluded: label {EXCLUDE_UNTIL_LABEL}={until_text!r} has no timezone (treated as excluded)"
        if now < until:
            return f"excluded until {format_instant(until)} by label {EXCLUDE_UNTIL_LABEL}"
    return None


def _inactive_since(deployment: Deployment) -> datetime | None:
    known = [t for t in (deployment.updated_at, deployment.inactive_since) if t is not None]
    return max(known) if known else None


def _due_deletion(policy: OffhoursPolicy, deployment: Deployment, now: datetime) -> datetime | None:
    """Return when ``delete_after`` deletes this deployment, or None if it does not apply."""
    if policy.delete_after is None or deployment.status not in INACTIVE:
        return None
    since = _inactive_since(deployment)
    if since is None:
        return None
    return policy.delete_after.after(since, timezone.utc)


def _action(name: ActionName, policy: OffhoursPolicy, deployment: Deployment, reasons: tuple[str, ...]) -> Action:
    return Action(name, "deployment", deployment.name, None, policy.name, reasons, provider=deployment.provider)
