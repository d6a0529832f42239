"""Deployment providers: one small interface over BentoCloud, local processes and command hooks.

    ProviderError                 an action or listing failed
     ├── TransientProviderError   timeouts, 5xx, connection errors: retried with bounded backoff
     ├── DeploymentNotFound       the deployment does not exist (404, "record not found")
     └── PartialListing           list() saw only part of what it manages (a namespace it may not read)

Every call is idempotent: terminating a terminated deployment, restarting a running
one or deleting a deleted one succeeds without doing anything.
"""

from __future__ import annotations

from typing import Protocol

from policies.model import Deployment

RUNNING_STATUSES = frozenset({"running", "deploying", "unhealthy", "scaled-to-zero"})
INACTIVE_STATUSES = frozenset({"terminated", "failed", "image-build-failed"})


class ProviderError(Exception):
    """A provider call failed; the message says which call and why."""


class TransientProviderError(ProviderError):
    """A failure worth retrying: a timeout, a 5xx, a refused connection."""


class DeploymentNotFound(ProviderError):
    """The named deployment does not exist."""


class PartialListing(ProviderError):
    """list() could read only part of what it manages: ``deployments`` is that part, the message says what is missing.

    Those deployments are decided as usual, but the listing is not complete, so nothing may be
    concluded from a deployment's absence from it (an ownership record is not "deleted by someone").
    """

    def __init__(self, message: str, deployments: list[Deployment]) -> None:
        super().__init__(message)
        self.deployments = deployments


class Provider(Protocol):
    """What retentiond needs from a place where deployments run."""

    name: str

    def list(self) -> list[Deployment]:
        """Return every deployment this provider can see. Raise ProviderError."""
        ...

    def terminate(self, name: str) -> None:
        """Stop the deployment, keeping its configuration so it can be restarted. Raise ProviderError."""
        ...

    def restart(self, name: str) -> None:
        """Start a terminated deployment again with its unchanged configuration. Raise ProviderError."""
        ...

    def delete(self, name: str) -> None:
        """Remove the deployment for good. Raise ProviderError (not DeploymentNotFound: already gone is fine)."""
        ...
