"""What the Kubernetes provider decides about one object, as plain values: no client, no I/O.

Names are ``NAMESPACE/KIND/NAME`` with KIND lower case (``staging/deployment/iris``).
Terminate writes ``spec.replicas: 0`` and the count it had into the annotation
``retentiond/original-replicas``; restart writes that count back and removes the
annotation. Both are JSON merge patches that carry the object's resourceVersion, so
the API server applies them only to the very version they were computed from (409 otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from daemon.providers import ProviderError

ORIGINAL_REPLICAS = "retentiond/original-replicas"
FIELD_MANAGER = "retentiond"
# kind as it appears in names and config -> the API's Kind.
KINDS = {"deployment": "Deployment", "statefulset": "StatefulSet"}
# Writes that are not someone changing the object: controllers keep writing status, and the
# controller manager rescales for an HPA and stamps rollout revisions. Counting them would keep
# an HPA-scaled deployment in its grace period for ever.
CONTROLLER_MANAGERS = frozenset({"kube-controller-manager", FIELD_MANAGER})

Patch = dict[str, Any]


@dataclass(frozen=True)
class ObjectName:
    """One object this provider manages: its namespace, lower-case kind and name."""

    namespace: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def api_kind(self) -> str:
        return KINDS[self.kind]


def parse_name(text: str) -> ObjectName:
    """Given ``NAMESPACE/KIND/NAME``, return its parts. Raise ProviderError if it is not such a name."""
    parts = text.split("/")
    if len(parts) != 3 or not all(parts) or parts[1] not in KINDS:
        raise ProviderError(
            f"{text!r} is not a Kubernetes deployment name: expected NAMESPACE/KIND/NAME with KIND one of {', '.join(KINDS)}"
        )
    return ObjectName(*parts)


def status_of(replicas: int | None) -> str:
    """Given ``spec.replicas`` (None: the API's default, 1), return "running" or "terminated"."""
    return "terminated" if replicas == 0 else "running"


def scale_down_patch(replicas: int | None, resource_version: str) -> Patch | None:
    """Given the object's replicas and resourceVersion, return the terminate patch, or None if it is at 0 already."""
    if replicas == 0:
        return None
    count = 1 if replicas is None else replicas
    return {
        "metadata": {"resourceVersion": resource_version, "annotations": {ORIGINAL_REPLICAS: str(count)}},
        "spec": {"replicas": 0},
    }


def scale_up_patch(name: ObjectName, replicas: int | None, annotations: Mapping[str, str], resource_version: str) -> Patch | None:
    """Given the object's replicas, annotations and resourceVersion, return the restart patch, or None if it runs.

    Raise ProviderError, loudly, if it is at 0 without a usable ``retentiond/original-replicas``:
    guessing a count could overload a cluster, and leaving it at 0 in silence is an outage.
    """
    if replicas != 0:
        return None
    recorded = annotations.get(ORIGINAL_REPLICAS)
    count = _positive_int(recorded)
    if count is None:
        found = "it has none" if recorded is None else f"it is {recorded!r}, not a positive whole number"
        raise ProviderError(
            f"{name} is at 0 replicas but its annotation {ORIGINAL_REPLICAS} does not say how many to restore "
            f"({found}); NOT restarted. Scale it by hand (kubectl -n {name.namespace} scale {name.kind} {name.name} "
            "--replicas=N) or set the annotation, then run again"
        )
    return {
        "metadata": {"resourceVersion": resource_version, "annotations": {ORIGINAL_REPLICAS: None}},
        "spec": {"replicas": count},
    }


def _positive_int(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit():
        return None
    value = int(text)
    return value if value > 0 else None


def changed_at(entries: Iterable[tuple[str | None, str | None, datetime | None]]) -> datetime | None:
    """Given managedFields as (manager, subresource, time), return when a person or a deploy tool last changed it.

    That is the newest write that is neither a status update, nor by a controller, nor our own
    scaling: the change that ``grace_period`` protects. None if there is no such entry.
    """
    times = [
        time for manager, subresource, time in entries
        if time is not None and subresource != "status" and manager not in CONTROLLER_MANAGERS
    ]
    return max(times, default=None)


def keda_targets(scaled_objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """Given KEDA ScaledObjects of one namespace, return {(kind, name): "NAMESPACE/SCALEDOBJECT"} of what they scale.

    A ``scaleTargetRef`` without a kind means a Deployment, as KEDA reads it.
    """
    targets: dict[tuple[str, str], str] = {}
    for scaled_object in scaled_objects:
        metadata = scaled_object.get("metadata") or {}
        reference = (scaled_object.get("spec") or {}).get("scaleTargetRef") or {}
        target = reference.get("name")
        api_version = str(reference.get("apiVersion") or "apps/v1")
        kind = str(reference.get("kind") or "Deployment").lower()
        if isinstance(target, str) and api_version == "apps/v1" and kind in KINDS:
            targets[(kind, target)] = f"{metadata.get('namespace', '?')}/{metadata.get('name', '?')}"
    return targets
