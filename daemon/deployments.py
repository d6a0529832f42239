"""Deployments in a run: list them from every provider, act on them, keep ownership records.

A provider that cannot be listed is a warning, not a failed run: its deployments are
simply not decided this time, and its ownership records stay as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import structlog

from daemon.config import Settings
from daemon.ownership import OwnershipFile, OwnershipState
from daemon.providers import DeploymentNotFound, PartialListing, Provider, ProviderError
from daemon.providers.registry import build_providers
from policies.model import Action, Deployment, HandStart, Inventory, Ownership
from policies.offhours import hand_start_policy
from policies.spec import OffhoursPolicy

log = structlog.get_logger("retentiond")
MANUAL_POLICY = "manual"


@dataclass
class DeploymentView:
    """Every deployment the providers reported, which providers answered, and what went wrong."""

    deployments: list[Deployment] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Providers that could not list at all, and why: their off-hours policies decide nothing (a refusal, exit 1).
    failed: dict[str, str] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """Every listing problem in words: partial listings and providers that could not list."""
        return [*self.warnings, *(f"provider {name}: cannot list deployments: {why}" for name, why in self.failed.items())]


def list_deployments(providers: Mapping[str, Provider]) -> DeploymentView:
    """Ask every provider for its deployments. Failures become warnings."""
    view = DeploymentView()
    for name, provider in providers.items():
        try:
            view.deployments.extend(provider.list())
        except PartialListing as error:
            # Decided as usual, but not "listed": a record is not dropped for what could not be seen.
            view.deployments.extend(error.deployments)
            view.warnings.append(f"provider {name}: listed only in part: {error}")
            continue
        except ProviderError as error:
            view.failed[name] = str(error)
            continue
        view.listed.append(name)
    return view


class DeploymentActor:
    """Carries out terminate/restart/delete_deployment and keeps the ownership records in step.

    ``now`` is the run's instant: every action and record of the run is timed by it, so that a run
    and its records agree on the time (and tests can move it).
    """

    def __init__(
        self,
        providers: Mapping[str, Provider],
        ownership_file: OwnershipFile,
        state: OwnershipState,
        policies: Sequence[OffhoursPolicy],
        deployments: Sequence[Deployment],
        now: datetime,
    ) -> None:
        self.providers = providers
        self.ownership_file = ownership_file
        self.state = state
        self.policies = list(policies)
        self.deployments = {(d.provider, d.name): d for d in deployments}
        self.now = now

    def carry_out(self, action: Action) -> tuple[Literal["ok", "failed", "skipped"], str | None]:
        """Do one deployment action; return (outcome, error). Raise nothing."""
        provider = self.providers.get(action.provider or "")
        if provider is None:
            return "failed", f"no provider named {action.provider!r} is configured"
        key = (action.provider or "", action.name)
        previous = (self.state.records.get(key), self.state.hand_starts.get(key))
        # The record goes first: a crash right after terminating must not orphan the deployment,
        # nor one right after a start by hand leave it to be terminated again at once.
        written = self._record_before(action, key)
        if written is not None and not self._save():
            self._restore(key, previous)
            verb = "terminated" if action.action == "terminate" else "restarted"
            return "failed", f"cannot write the ownership record {self.ownership_file.path}; not {verb}"
        try:
            {"terminate": provider.terminate, "restart": provider.restart, "delete_deployment": provider.delete}[
                action.action
            ](action.name)
        except DeploymentNotFound:
            self.state.forget(key)
            self.state.inactive_since.pop(key, None)
            self._save()
            return "skipped", "deployment not found (deleted by someone else)"
        except ProviderError as error:
            self._restore(key, previous)
            self._save()
            return "failed", str(error)
        if written == "hand_start":
            self._refresh_identity(provider, key)
        elif action.action != "terminate":
            self.state.forget(key)
            if action.action == "delete_deployment":
                self.state.inactive_since.pop(key, None)
            self._save()
        return "ok", None

    def _record_before(self, action: Action, key: tuple[str, str]) -> Literal["ownership", "hand_start"] | None:
        """Put the record an action needs before it runs; return which one, or None if it needs none first."""
        if action.action == "terminate":
            self.state.forget(key)
            self.state.records[key] = self._ownership(action, key)
            return "ownership"
        hand_start = self._hand_start(key) if action.action == "restart" and action.policy == MANUAL_POLICY else None
        if hand_start is None:
            return None
        self.state.forget(key)
        self.state.hand_starts[key] = hand_start
        return "hand_start"

    def _ownership(self, action: Action, key: tuple[str, str]) -> Ownership:
        now = self.now
        policy = next((policy for policy in self.policies if policy.name == action.policy), None)
        deployment = self.deployments.get(key)
        return Ownership(
            provider=key[0], name=key[1], policy=action.policy, terminated_at=now,
            window_ends_at=policy.window.next_change(now) if policy else None,
            identity=deployment.identity if deployment else "",
            manual=action.policy == MANUAL_POLICY,
        )

    def _hand_start(self, key: tuple[str, str]) -> HandStart | None:
        """Return the record of a start by hand now, if the policy deciding the deployment is in downtime."""
        now = self.now
        deployment = self.deployments.get(key)
        if deployment is None or hand_start_policy(self.policies, deployment, now) is None:
            return None
        return HandStart(provider=key[0], name=key[1], started_at=now, identity=deployment.identity)

    def _refresh_identity(self, provider: Provider, key: tuple[str, str]) -> None:
        """Tie a start by hand to the deployment as it runs now: a local process has a new pid."""
        hand_start = self.state.hand_starts[key]
        try:
            listed = next((d for d in provider.list() if d.name == key[1]), None)
        except ProviderError as error:
            listed = None
            log.warning("deployment.identity_unknown", provider=key[0], name=key[1], error=str(error))
        # Not listed: identity unknown, and an unknown identity matches whatever runs under the name
        # until the window ends, so the start is respected rather than undone.
        identity = listed.identity if listed else ""
        if identity != hand_start.identity:
            self.state.hand_starts[key] = dataclasses.replace(hand_start, identity=identity)
            self._save()

    def _restore(self, key: tuple[str, str], previous: tuple[Ownership | None, HandStart | None]) -> None:
        self.state.forget(key)
        record, hand_start = previous
        if record is not None:
            self.state.records[key] = record
        if hand_start is not None:
            self.state.hand_starts[key] = hand_start

    def _save(self) -> bool:
        try:
            self.ownership_file.save(self.state)
        except OSError as error:
            log.error("ownership.write_failed", path=str(self.ownership_file.path), error=error.strerror or str(error))
            return False
        return True


@dataclass
class DeploymentContext:
    """What a run knows about deployments: providers, their listing, and our ownership state."""

    providers: dict[str, Provider]
    view: DeploymentView
    ownership_file: OwnershipFile
    state: OwnershipState

    def close(self) -> None:
        """Release the providers' connections."""
        for provider in self.providers.values():
            close = getattr(provider, "close", None)
            if close is not None:
                close()


def close_context(context: DeploymentContext | None) -> None:
    if context is not None:
        context.close()


def gather_deployments(settings: Settings, acting: Collection[str] | None) -> DeploymentContext | None:
    """List the deployments of the providers that acting off-hours policies use (None: no such policy)."""
    wanted = {policy.provider for policy in settings.offhours if acting is None or policy.name in acting}
    if not wanted:
        return None
    providers = build_providers(settings, wanted)
    ownership_file = OwnershipFile(settings.daemon.state_dir)
    state = ownership_file.load()
    return DeploymentContext(providers, list_deployments(providers), ownership_file, state)


def with_deployments(inventory: Inventory, context: DeploymentContext | None) -> Inventory:
    if context is None:
        return inventory
    return dataclasses.replace(
        inventory,
        deployments=tuple(context.state.annotate(context.view.deployments)),
        ownership=tuple(context.state.records.values()),
        hand_starts=tuple(context.state.hand_starts.values()),
        warnings=(*inventory.warnings, *context.view.warnings),
        unlisted_providers=tuple(context.view.failed.items()),
    )
