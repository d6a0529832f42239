"""Off-hours decisions, level-triggered from state: what to terminate, restart or delete now.

Inside downtime, running matching deployments are terminated — unless they are in
their grace period, excluded, or were started by hand during this same downtime
(``enforce`` overrides). A start by hand is known two ways: a person ran
``deployments restart`` while the window was open (a ``HandStart`` record), or a
deployment we terminated runs again before the window it was terminated in ends
(our ``Ownership`` record, someone started it in BentoCloud's UI or with a hook).
Either keeps it up until that window ends; the next window terminates it as usual.
Outside downtime, only what this daemon terminated (an ownership record, not a
manual one) is restarted. Because decisions come from state, a daemon that was down
across a window edge does the right thing when it starts. ``delete_after`` deletes
deployments that have stayed terminated or failed that long; until then ``kept``
says when.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TypeVar

from policies.model import Action, ActionName, Deployment, HandStart, Kept, Ownership, format_instant
from policies.spec import EXCLUDE_LABEL, EXCLUDE_UNTIL_LABEL, OffhoursPolicy

RUNNING = frozenset({"running", "deploying", "unhealthy", "scaled-to-zero"})
INACTIVE = frozenset({"terminated", "failed", "image-build-failed"})

OwnershipKey = tuple[str, str]
Record = TypeVar("Record", Ownership, HandStart)


def ownership_by_key(records: Iterable[Record]) -> dict[OwnershipKey, Record]:
    return {(record.provider, record.name): record for record in records}


def same_deployment(record_identity: str, deployment_identity: str) -> bool:
    """Return False only when both identities are known and differ (a deleted-and-recreated namesake)."""
    return not (record_identity and deployment_identity and record_identity != deployment_identity)


def current_record(deployment: Deployment, records: Mapping[OwnershipKey, Record]) -> Record | None:
    """Return our record of this very deployment; one of a deleted-and-recreated namesake does not count."""
    record = records.get((deployment.provider, deployment.name))
    if record is None or not same_deployment(record.identity, deployment.identity):
        return None
    return record


def deciding_policy(policies: Iterable[OffhoursPolicy], deployment: Deployment) -> OffhoursPolicy | None:
    """Given the off-hours policies in config order, return the one that decides the deployment: the first that selects it."""
    return next((policy for policy in policies if policy.selects(deployment)), None)


def hand_start_policy(policies: Iterable[OffhoursPolicy], deployment: Deployment, now: datetime) -> OffhoursPolicy | None:
    """Given the off-hours policies in config order, a deployment and the instant of a start by hand,
    return the policy in whose downtime that start falls (it then holds until that window ends), or None.
    """
    policy = deciding_policy(policies, deployment)
    return policy if policy is not None and policy.window.matches(now) else None


def hand_start_holds(policy: OffhoursPolicy, started_at: datetime, now: datetime) -> bool:
    """Given when a person started a deployment and the instant, return whether that start still keeps it up.

    It does while ``now`` lies in the very downtime window of ``policy`` that the start fell in;
    a start outside downtime, or one whose window has ended since, holds nothing.
    """
    if now < started_at or not policy.window.matches(started_at):
        return False
    ends = policy.window.next_change(started_at)
    return ends is None or now < ends


def stop_window_open(policy: OffhoursPolicy | None, record: Ownership, now: datetime) -> bool:
    """Given our record of a stop, the policy deciding the deployment and the instant, return whether the
    downtime window the stop fell in is still on: a deployment that runs again was started by hand in it.

    Our own stop carries the end of its window; a stop by hand (through ``deployments terminate``)
    counts only if it fell in a downtime window of ``policy`` that has not ended since.
    """
    if not record.manual:
        return record.window_ends_at is None or now < record.window_ends_at
    return policy is not None and hand_start_holds(policy, record.terminated_at, now)


def decide_offhours(
    policy: OffhoursPolicy,
    deployments: Sequence[Deployment],
    records: Mapping[OwnershipKey, Ownership],
    now: datetime,
    hand_starts: Mapping[OwnershipKey, HandStart] | None = None,
) -> tuple[list[Action], list[Kept]]:
    """Given the deployments, our ownership and hand-start records and the instant, return actions and kept items."""
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
        hand_start = current_record(deployment, hand_starts or {})
        decision, reasons = _decide_one(policy, deployment, current_record(deployment, records), hand_start, inside, now)
        if deletion is not None:
            reasons = (*reasons, f"will be deleted at {format_instant(deletion)} (delete_after {policy.delete_after})")
        if decision is None:
            kept.append(Kept("deployment", deployment.name, None, policy.name, reasons))
        else:
            actions.append(_action(decision, policy, deployment, reasons))
    return actions, kept


def _decide_one(
    policy: OffhoursPolicy,
    deployment: Deployment,
    record: Ownership | None,
    hand_start: HandStart | None,
    inside: bool,
    now: datetime,
) -> tuple[ActionName | None, tuple[str, ...]]:
    pattern = policy.excluding_pattern(deployment)
    excluded = f"excluded by name pattern {pattern!r}" if pattern else _exclusion(deployment, now)
    if excluded is not None:
        return None, (excluded,)
    window = policy.describe_window(now)
    if inside and deployment.status in RUNNING:
        by_hand = _started_by_hand(policy, record, hand_start, now)
        if by_hand is not None and not policy.enforce:
            return None, (f"{by_hand}; stays up until {next_window(policy, now)}",)
        changed = max((t for t in (deployment.created_at, deployment.updated_at) if t is not None), default=None)
        if changed is not None and now < policy.grace_period.after(changed, timezone.utc):
            return None, (f"grace period {policy.grace_period} after a change at {format_instant(changed)}",)
        if by_hand is not None:
            return "terminate", (window, f"{by_hand}; enforce = true terminates it anyway")
        return "terminate", (window,)
    if not inside and record is not None and not record.manual and deployment.status in INACTIVE:
        return "restart", (f"outside {window}", f"terminated by retentiond at {format_instant(record.terminated_at)}")
    return None, _why_left(policy, deployment, record, inside, now)


def _why_left(
    policy: OffhoursPolicy, deployment: Deployment, record: Ownership | None, inside: bool, now: datetime
) -> tuple[str, ...]:
    change = policy.window.next_change(now)
    upcoming = f"; window {'ends' if inside else 'begins'} {format_instant(change)}" if change else ""
    if record is not None and record.manual and deployment.status not in RUNNING:
        return (f"terminated by hand at {format_instant(record.terminated_at)}; never restarted by off-hours{upcoming}",)
    if inside:
        owner = f", by retentiond at {format_instant(record.terminated_at)}" if record else ""
        return (f"{deployment.status} in {policy.describe_window(now)}{owner}{upcoming}",)
    if deployment.status in INACTIVE:
        return (f"{deployment.status}, not by retentiond: left as it is{upcoming}",)
    return (f"{deployment.status} outside downtime{upcoming}",)


def _started_by_hand(
    policy: OffhoursPolicy, record: Ownership | None, hand_start: HandStart | None, now: datetime
) -> str | None:
    """Return how a person started this running deployment during the current downtime, or None."""
    if hand_start is not None and hand_start_holds(policy, hand_start.started_at, now):
        return f"started by hand at {format_instant(hand_start.started_at)} during this downtime"
    if record is not None and stop_window_open(policy, record, now):
        stopped_by = "it was terminated by hand" if record.manual else "retentiond terminated it"
        return f"started by hand during this downtime ({stopped_by} at {format_instant(record.terminated_at)})"
    return None


def next_window(policy: OffhoursPolicy, now: datetime) -> str:
    """Given an instant inside downtime, return when the next downtime window begins, in words."""
    ends = policy.window.next_change(now)
    if ends is None:
        return "the next window (this downtime has no end)"
    begins = policy.window.next_change(ends)
    return f"the next window (begins {format_instant(begins)})" if begins else "the next window (none is scheduled)"


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
