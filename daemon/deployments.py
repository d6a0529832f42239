"""Deployments in a run: list them from every provider, act on them, keep ownership records.

A provider that cannot be listed is a warning, not a failed run: its deployments are
simply not decided this time, and its ownership records stay as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

import structlog

from daemon.config import Settings
from daemon.errors import ConfigError
from daemon.ownership import OwnershipFile, OwnershipState
from daemon.providers import DeploymentNotFound, PartialListing, Provider, ProviderError
from daemon.providers.registry import build_providers
from policies.model import Action, Deployment, Inventory, Ownership
from policies.spec import OffhoursPolicy

log = structlog.get_logger("retentiond")
MANUAL_POLICY = "manual"


@dataclass
class DeploymentView:
    """Every deployment the providers reported, which providers answered, and what went wrong."""

    deployments: list[Deployment] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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
            view.warnings.append(f"provider {name}: cannot list deployments: {error}")
            continue
        view.listed.append(name)
    return view


class DeploymentActor:
    """Carries out terminate/restart/delete_deployment and keeps the ownership records in step."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        ownership_file: OwnershipFile,
        state: OwnershipState,
        policies: Sequence[OffhoursPolicy],
        deployments: Sequence[Deployment],
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.providers = providers
        self.ownership_file = ownership_file
        self.state = state
        self.policies = {policy.name: policy for policy in policies}
        self.deployments = {(d.provider, d.name): d for d in deployments}
        self.clock = clock

    def carry_out(self, action: Action) -> tuple[Literal["ok", "failed", "skipped"], str | None]:
        """Do one deployment action; return (outcome, error). Raise nothing."""
        provider = self.providers.get(action.provider or "")
        if provider is None:
            return "failed", f"no provider named {action.provider!r} is configured"
        key = (action.provider or "", action.name)
        previous = self.state.records.get(key)
        if action.action == "terminate":
            # The record goes first: a crash right after terminating must not orphan the deployment.
            self.state.records[key] = self._ownership(action, key)
            if not self._save():
                self._restore(key, previous)
                return "failed", f"cannot write the ownership record {self.ownership_file.path}; not terminated"
        try:
            {"terminate": provider.terminate, "restart": provider.restart, "delete_deployment": provider.delete}[
                action.action
            ](action.name)
        except DeploymentNotFound:
            self.state.records.pop(key, None)
            self.state.inactive_since.pop(key, None)
            self._save()
            return "skipped", "deployment not found (deleted by someone else)"
        except ProviderError as error:
            self._restore(key, previous)
            self._save()
            return "failed", str(error)
        if action.action != "terminate":
            self.state.records.pop(key, None)
            if action.action == "delete_deployment":
                self.state.inactive_since.pop(key, None)
            self._save()
        return "ok", None

    def _ownership(self, action: Action, key: tuple[str, str]) -> Ownership:
        now = self.clock()
        policy = self.policies.get(action.policy)
        deployment = self.deployments.get(key)
        return Ownership(
            provider=key[0], name=key[1], policy=action.policy, terminated_at=now,
            window_ends_at=policy.window.next_change(now) if policy else None,
            identity=deployment.identity if deployment else "",
            manual=action.policy == MANUAL_POLICY,
        )

    def _restore(self, key: tuple[str, str], previous: Ownership | None) -> None:
        if previous is None:
            self.state.records.pop(key, None)
        else:
            self.state.records[key] = previous

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
    try:
        state = ownership_file.load()
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"ownership records {ownership_file.path} are unreadable: {error}") from None
    return DeploymentContext(providers, list_deployments(providers), ownership_file, state)


def with_deployments(inventory: Inventory, context: DeploymentContext | None) -> Inventory:
    if context is None:
        return inventory
    return dataclasses.replace(
        inventory,
        deployments=tuple(context.state.annotate(context.view.deployments)),
        ownership=tuple(context.state.records.values()),
        warnings=(*inventory.warnings, *context.view.warnings),
    )
