"""Kubernetes Deployments and StatefulSets through lightkube (the optional extra ``retentiond[kubernetes]``).

Imported only when a ``type = "kubernetes"`` provider is built. Every write is a JSON merge
patch carrying the object's resourceVersion and ``fieldManager=retentiond``; a 409 means
someone changed the object since we read it, so it is read again and decided again. What the
patches contain and why is in ``kubernetes_objects``; credentials in ``kubernetes_credentials``.

Objects that a KEDA ScaledObject scales are reported with ``left_alone`` set and are never
scaled by this provider. A namespace that may not be read (403) leaves the others listed and
makes the listing partial (``PartialListing``); bad credentials (401) fail the whole listing.
"""

from __future__ import annotations

import builtins
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import httpx2
import msgspec
import structlog
from lightkube import ApiError, Client
from lightkube import ConfigError as LightkubeConfigError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.operators import Operator
from lightkube.resources.apps_v1 import Deployment as DeploymentResource
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import Event, Namespace
from lightkube.types import PatchType

from daemon.providers import DeploymentNotFound, PartialListing, ProviderError, TransientProviderError
from daemon.providers.kubernetes_objects import (
    ORIGINAL_REPLICAS,
    ObjectName,
    Patch,
    changed_at,
    keda_targets,
    parse_name,
    scale_down_patch,
    scale_up_patch,
    status_of,
)
from daemon.providers.retry import with_retries
from policies.model import Deployment

T = TypeVar("T")
log = structlog.get_logger("retentiond")
RESOURCES: dict[str, Any] = {"deployment": DeploymentResource, "statefulset": StatefulSet}
ScaledObject = create_namespaced_resource("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects")
# Someone else writing the object between our read and our write, this many times in a row, is a
# fight (a GitOps controller resetting replicas, say): give up and say so rather than loop.
CONFLICT_ATTEMPTS = 5
LIST_CHUNK_SIZE = 500
MESSAGE_EXCERPT_CHARS = 200


class Conflict(ProviderError):
    """409: the object changed since it was read (its resourceVersion is stale)."""


class Forbidden(ProviderError):
    """403: the credentials may not do this here."""


class RawSelector(Operator[str]):
    """A label selector exactly as the config spells it (lightkube otherwise builds one from a dict)."""

    def __init__(self, text: str) -> None:
        super().__init__("raw", "", text)

    def encode(self, key: str) -> str:
        return self.value


class KubernetesProvider:
    """Deployments and StatefulSets of the namespaces one set of credentials may read."""

    def __init__(
        self,
        *,
        name: str,
        client: Client,
        server: str,
        namespaces: Sequence[str] = (),
        kinds: Sequence[str] = ("deployment", "statefulset"),
        label_selector: str = "",
        timeout_seconds: float = 10,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 4,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.name = name
        self._client = client
        self._server = server
        self._namespaces = tuple(namespaces)
        self._kinds = tuple(kinds)
        self._selector: dict[str, Any] | None = {"": RawSelector(label_selector)} if label_selector else None
        self._timeout_seconds = timeout_seconds
        self._sleep = sleep
        self._attempts = attempts
        self._clock = clock
        # uid of each object as list() saw it: delete() removes only that very object.
        self._uids: dict[str, str] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> KubernetesProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def list(self) -> list[Deployment]:
        """Return the objects of every readable namespace. Raise PartialListing if a namespace was forbidden.

        Raise ProviderError if nothing could be listed (bad credentials, no namespace list, API down).
        """
        namespaces = self._namespaces or self._all_namespaces()
        found: list[Deployment] = []
        forbidden: list[str] = []
        keda_installed = True
        for namespace in namespaces:
            try:
                scaled = self._keda_targets(namespace) if keda_installed else {}
                keda_installed = scaled is not None
                for kind in self._kinds:
                    found.extend(self._list_kind(namespace, kind, scaled or {}))
            except Forbidden as error:
                # Without knowing its ScaledObjects nothing in it can be decided safely: leave it all out.
                forbidden.append(f"namespace {namespace}: {error}")
        self._uids = {deployment.name: deployment.identity for deployment in found}
        if forbidden:
            raise PartialListing("; ".join(forbidden), found)
        return found

    def terminate(self, name: str) -> None:
        """Given NAMESPACE/KIND/NAME, scale it to 0, recording its count. Raise ProviderError (KEDA-scaled: refused)."""
        target = self._managed(name)
        scaler = (self._keda_targets(target.namespace) or {}).get((target.kind, target.name))
        if scaler is not None:
            raise ProviderError(f"{target} is scaled by KEDA ScaledObject {scaler}; left alone, not terminated")
        changed = self._change(target, "scale to 0", lambda obj: scale_down_patch(obj.spec.replicas, obj.metadata.resourceVersion))
        if changed is not None:
            before, _ = changed
            self._event(target, before, "RetentiondTerminated",
                        f"retentiond scaled {target.kind} {target.name} to 0 (was {_replicas(before)}; recorded in {ORIGINAL_REPLICAS})")

    def restart(self, name: str) -> None:
        """Given NAMESPACE/KIND/NAME, scale it back to its recorded count. Raise ProviderError if none is recorded."""
        target = self._managed(name)
        try:
            changed = self._change(target, "scale back up", lambda obj: scale_up_patch(
                target, obj.spec.replicas, obj.metadata.annotations or {}, obj.metadata.resourceVersion))
        except ProviderError as error:
            if not isinstance(error, (DeploymentNotFound, TransientProviderError)):
                self._event(target, None, "RetentiondRestartFailed", str(error), kind="Warning")
            raise
        if changed is not None:
            _, after = changed
            self._event(target, after, "RetentiondRestarted",
                        f"retentiond scaled {target.kind} {target.name} back to {_replicas(after)} replicas")

    def delete(self, name: str) -> None:
        """Given NAMESPACE/KIND/NAME, delete the object we listed; one already gone counts as deleted.

        Raise ProviderError if it runs again or was replaced by a namesake since it was listed.
        """
        target = self._managed(name)
        try:
            obj = self._get(target)
        except DeploymentNotFound:
            return
        listed_uid = self._uids.get(name)
        if listed_uid and obj.metadata.uid != listed_uid:
            raise ProviderError(f"{target} was replaced by a new object of the same name since it was listed; not deleted")
        if _replicas(obj) != 0:
            raise ProviderError(f"{target} runs again ({_replicas(obj)} replicas) since it was listed; not deleted")
        try:
            self._call(f"delete {target}", lambda: self._client.delete(RESOURCES[target.kind], target.name, namespace=target.namespace))
        except DeploymentNotFound:
            return
        self._event(target, obj, "RetentiondDeleted", f"retentiond deleted {target.kind} {target.name} (terminated for its delete_after)")

    # --- reading ----------------------------------------------------------------------------

    def _all_namespaces(self) -> builtins.list[str]:
        try:
            namespaces = self._call("list namespaces", lambda: list(self._client.list(Namespace, chunk_size=LIST_CHUNK_SIZE)))
        except Forbidden as error:
            raise ProviderError(f"{error}; name the namespaces to manage in providers.{self.name}.namespaces") from None
        return sorted(str(namespace.metadata.name) for namespace in namespaces if namespace.metadata and namespace.metadata.name)

    def _keda_targets(self, namespace: str) -> dict[tuple[str, str], str] | None:
        """Return what KEDA scales in ``namespace``, or None if KEDA's ScaledObject type does not exist there."""
        try:
            scaled_objects = self._call(
                f"list KEDA ScaledObjects in {namespace}",
                lambda: list(self._client.list(ScaledObject, namespace=namespace, chunk_size=LIST_CHUNK_SIZE)),
            )
        except DeploymentNotFound:
            return None
        return keda_targets(scaled_objects)

    def _list_kind(self, namespace: str, kind: str, scaled: Mapping[tuple[str, str], str]) -> builtins.list[Deployment]:
        objects = self._call(f"list {kind}s in {namespace}", lambda: list(self._client.list(
            RESOURCES[kind], namespace=namespace, labels=self._selector, chunk_size=LIST_CHUNK_SIZE)))
        deployments = []
        for obj in objects:
            target = ObjectName(namespace, kind, str(obj.metadata.name))
            scaler = scaled.get((kind, target.name))
            deployments.append(self._to_deployment(target, obj, f"scaled by KEDA ScaledObject {scaler}; left alone" if scaler else ""))
        return deployments

    def _to_deployment(self, target: ObjectName, obj: Any, left_alone: str) -> Deployment:
        metadata = obj.metadata
        entries = [(entry.manager, entry.subresource, entry.time) for entry in metadata.managedFields or []]
        return Deployment(
            provider=self.name,
            name=str(target),
            status=status_of(obj.spec.replicas if obj.spec else None),
            # Annotations win over a label of the same key: retentiond/exclude-until only fits in one.
            labels={**(metadata.labels or {}), **(metadata.annotations or {})},
            created_at=metadata.creationTimestamp,
            updated_at=changed_at(entries),
            identity=str(metadata.uid or ""),
            left_alone=left_alone,
        )

    def _managed(self, name: str) -> ObjectName:
        target = parse_name(name)
        if target.kind not in self._kinds or (self._namespaces and target.namespace not in self._namespaces):
            raise ProviderError(f"{target} is outside what providers.{self.name} manages (its namespaces and kinds)")
        return target

    def _get(self, target: ObjectName) -> Any:
        return self._call(f"get {target}", lambda: self._client.get(RESOURCES[target.kind], target.name, namespace=target.namespace))

    # --- writing ----------------------------------------------------------------------------

    def _change(self, target: ObjectName, what: str, decide: Callable[[Any], Patch | None]) -> tuple[Any, Any] | None:
        """Read, decide, write guarded by resourceVersion; on 409 read and decide again.

        Return (object before, object after) if it was changed, None if ``decide`` found nothing to do.
        Raise ProviderError if the object kept changing under us, or ``decide`` refuses.
        """
        for _ in range(CONFLICT_ATTEMPTS):
            before = self._get(target)
            patch = decide(before)
            if patch is None:
                return None
            try:
                after = self._patch(target, what, patch)
            except Conflict:
                log.info("kubernetes.conflict", provider=self.name, name=str(target), call=what)
                continue
            return before, after
        raise ProviderError(f"Kubernetes {what} {target}: it changed {CONFLICT_ATTEMPTS} times while we tried (409); not changed")

    def _patch(self, target: ObjectName, what: str, patch: Patch) -> Any:
        return self._call(f"{what} {target}", lambda: self._client.patch(
            RESOURCES[target.kind], target.name, patch, namespace=target.namespace, patch_type=PatchType.MERGE))

    def _event(self, target: ObjectName, obj: Any, reason: str, message: str, kind: str = "Normal") -> None:
        """Record a Kubernetes Event on the object, best effort: a failure is logged, never raised."""
        now = self._clock()
        host = socket.gethostname()
        event = Event(
            metadata=ObjectMeta(generateName=f"{target.name}.", namespace=target.namespace),
            involvedObject=ObjectReference(
                apiVersion="apps/v1", kind=target.api_kind, name=target.name, namespace=target.namespace,
                uid=obj.metadata.uid if obj is not None else None,
            ),
            reason=reason, message=message, type=kind, count=1, firstTimestamp=now, lastTimestamp=now,
            source=EventSource(component="retentiond", host=host), reportingComponent="retentiond", reportingInstance=host,
        )
        try:
            self._client.create(event, namespace=target.namespace)
        except (httpx2.HTTPError, LightkubeConfigError, msgspec.MsgspecError, OSError, ValueError) as error:
            log.warning("kubernetes.event_failed", provider=self.name, name=str(target), reason=reason,
                        error=_excerpt(str(error) or type(error).__name__))

    # --- errors -----------------------------------------------------------------------------

    def _call(self, what: str, call: Callable[[], T]) -> T:
        return with_retries(lambda: self._once(what, call), f"kubernetes {what}", attempts=self._attempts, sleep=self._sleep)

    def _once(self, what: str, call: Callable[[], T]) -> T:
        """Run one API call; raise the ProviderError that its failure means."""
        try:
            return call()
        except ApiError as error:
            raise self._status_error(what, error.response.status_code, error.status.message or "") from None
        except httpx2.HTTPStatusError as error:  # an answer that is not a Kubernetes Status: a proxy's page
            raise self._status_error(what, error.response.status_code, error.response.text) from None
        except httpx2.TimeoutException:
            raise TransientProviderError(f"Kubernetes {what}: no answer from {self._server} within {self._timeout_seconds:g}s") from None
        except httpx2.TransportError as error:
            raise TransientProviderError(f"Kubernetes {what}: {type(error).__name__}: {_excerpt(str(error))}") from None
        except LightkubeConfigError as error:  # e.g. an exec credential plugin that failed
            raise ProviderError(f"Kubernetes {what}: credentials: {_excerpt(str(error))}") from None
        except (msgspec.MsgspecError, ValueError) as error:
            raise ProviderError(f"Kubernetes {what}: the answer is not understood: {_excerpt(str(error))}") from None

    def _status_error(self, what: str, status: int, message: str) -> ProviderError:
        text = f"Kubernetes {what}: HTTP {status}: {_excerpt(message)}"
        if status == 401:
            return ProviderError(f"Kubernetes rejected the credentials (401) at {self._server} for {what}; "
                                 "check the kubeconfig, its context and its token")
        if status == 403:
            return Forbidden(f"Kubernetes {what}: forbidden (403): {_excerpt(message)}")
        if status == 404:
            return DeploymentNotFound(text)
        if status == 409:
            return Conflict(text)
        # 429 asks to come back later, which is what a retry does.
        if status >= 500 or status == 429:
            return TransientProviderError(text)
        return ProviderError(text)


def _replicas(obj: Any) -> int:
    replicas = obj.spec.replicas if obj is not None and obj.spec else None
    return 1 if replicas is None else int(replicas)


def _excerpt(text: str) -> str:
    return text.strip()[:MESSAGE_EXCERPT_CHARS]
