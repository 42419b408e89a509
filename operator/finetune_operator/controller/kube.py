"""The Kubernetes calls the operator makes: the one door to the API, as async methods.

The official client is synchronous; every call runs in a worker thread so that handlers never block
kopf's event loop. Every call is counted (metrics, and tests that bound API traffic), and the
client's errors become the few the controller acts on: `Conflict` (the name is taken), `Refused`
(the API server will never accept this object); a read of what is not there (404) answers None, and
a delete of what is gone (404, or a namesake with another uid: 409) is done. Anything else is worth a
retry.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import kubernetes
import pydantic
from kubernetes.client.exceptions import ApiException

from finetune_operator.api.base import GROUP, PLURAL, VERSION, suspend_annotation
from finetune_operator.observe.following import LogTail, log_tail
from finetune_operator.observe.pods import slim_body
from finetune_operator.observe.queue import JOB_UID_LABEL, WORKLOADS
from finetune_operator.observe.times import timestamp

T = TypeVar("T")

COMPONENT = "finetune-operator"  # the "From" of its Events
EVENT_MESSAGE_LIMIT = 1024
# Children listed per request at a start: a page of slim Jobs is small; the raw page is the cost.
LIST_PAGE = 200


class Conflict(Exception):
    """An object of that name exists already (409)."""


class Refused(Exception):
    """The API server refuses this object for good (400, 422, or the client's own type check)."""


class NamespaceTerminating(Exception):
    """The namespace is being deleted: nothing new can be made in it (403, cause NamespaceTerminating),
    and its FineTuneJobs go with it. Not a refusal of the operator's rights, and nothing to retry."""


def namespace_terminating(error: ApiException) -> bool:
    if error.status != 403:
        return False
    try:
        said = json.loads(error.body or "")
    except (TypeError, ValueError):
        return False
    causes = ((said.get("details") or {}).get("causes") or []) if isinstance(said, dict) else []
    return any(isinstance(cause, dict) and cause.get("reason") == "NamespaceTerminating" for cause in causes)


def api_client_from_environment() -> kubernetes.client.ApiClient:
    """In-cluster config inside a pod, else the current kubeconfig context."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient(configuration)


def refusal(error: ApiException | pydantic.ValidationError) -> str:
    """What was wrong with an object, from the API server's answer or the client's own type check."""
    if isinstance(error, pydantic.ValidationError):
        # The client checks the body before sending; locations start with the argument index.
        return "; ".join(
            ".".join(str(part).strip("`") for part in item["loc"][1:]) + f": {item['msg']}"
            for item in error.errors(include_url=False)
        )
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)


def event_body(
    owner: dict[str, Any], kind: str, reason: str, message: str, now: datetime, name: str | None = None
) -> dict[str, Any]:
    """A core/v1 Event about a FineTuneJob (the form `kubectl describe` lists); named when a name is
    given (a retry of the same Event then meets itself), else named by the API server."""
    metadata = owner["metadata"]
    when = timestamp(now)
    naming = {"name": name} if name is not None else {"generateName": f"{metadata['name']}."}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {**naming, "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": owner.get("apiVersion"),
            "kind": owner.get("kind"),
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
        },
        "type": kind,
        "reason": reason,
        "message": message[:EVENT_MESSAGE_LIMIT],
        "source": {"component": COMPONENT},
        "firstTimestamp": when,
        "lastTimestamp": when,
        "count": 1,
    }


class Kube:
    """Typed access to the few resources the operator touches."""

    def __init__(self, api_client: kubernetes.client.ApiClient, count: Callable[[str], None] | None = None) -> None:
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.batch = kubernetes.client.BatchV1Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.extensions = kubernetes.client.ApiextensionsV1Api(api_client)
        self.count = count or (lambda _operation: None)

    @classmethod
    def from_environment(cls, count: Callable[[str], None] | None = None) -> Kube:
        return cls(api_client_from_environment(), count)

    def _sync(self, operation: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        self.count(operation)
        return function(*args, **kwargs)

    async def _call(self, operation: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._sync, operation, function, *args, **kwargs)

    def _plain(self, obj: Any) -> dict[str, Any]:
        return dict(self.core.api_client.sanitize_for_serialization(obj))

    async def _create(self, operation: str, function: Any, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._plain(await self._call(operation, function, namespace, manifest))
        except pydantic.ValidationError as error:
            raise Refused(refusal(error)) from None
        except ApiException as error:
            if error.status == 409:
                raise Conflict(refusal(error)) from None
            if error.status in (400, 422):
                raise Refused(refusal(error)) from None
            if error.status == 413:  # over the API server's request size: as final as a 422
                raise Refused(f"too large for the API server (413): {refusal(error)}") from None
            if namespace_terminating(error):
                raise NamespaceTerminating(namespace) from None
            raise

    async def _read(self, operation: str, function: Any, *args: Any) -> dict[str, Any] | None:
        try:
            return self._plain(await self._call(operation, function, *args))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        namespace = manifest["metadata"]["namespace"]
        return await self._create("create_job", self.batch.create_namespaced_job, namespace, manifest)

    async def create_config_map(self, manifest: dict[str, Any]) -> dict[str, Any]:
        namespace = manifest["metadata"]["namespace"]
        return await self._create("create_configmap", self.core.create_namespaced_config_map, namespace, manifest)

    async def create_service(self, manifest: dict[str, Any]) -> dict[str, Any]:
        namespace = manifest["metadata"]["namespace"]
        return await self._create("create_service", self.core.create_namespaced_service, namespace, manifest)

    async def read_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read("read_service", self.core.read_namespaced_service, name, namespace)

    async def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read("read_job", self.batch.read_namespaced_job, name, namespace)

    async def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read("read_configmap", self.core.read_namespaced_config_map, name, namespace)

    async def delete_job(self, namespace: str, name: str, uid: str) -> bool:
        """Delete this Job (the uid guards against a namesake) in the background: the garbage
        collector takes its pods and its ConfigMap. False if it was gone."""
        options = kubernetes.client.V1DeleteOptions(
            propagation_policy="Background", preconditions=kubernetes.client.V1Preconditions(uid=uid)
        )
        try:
            await self._call("delete_job", self.batch.delete_namespaced_job, name, namespace, body=options)
        except ApiException as error:
            if error.status in (404, 409):
                return False
            raise
        return True

    async def set_job_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        patch = {
            "metadata": {"annotations": suspend_annotation(suspend)},
            "spec": {"suspend": suspend},
        }
        await self._call("patch_job", self.batch.patch_namespaced_job, name, namespace, patch)

    async def set_job_requested_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        """Record the suspend asked of a Job its queue manages, leaving its spec.suspend to the queue."""
        patch = {"metadata": {"annotations": suspend_annotation(suspend)}}
        await self._call("patch_job", self.batch.patch_namespaced_job, name, namespace, patch)

    async def set_workload_active(self, namespace: str, name: str, active: bool) -> None:
        """Deactivate (Kueue evicts the training and holds it) or reactivate a Workload."""
        await self._call(
            "patch_workload",
            self.custom.patch_namespaced_custom_object,
            *WORKLOADS[:2],
            namespace,
            WORKLOADS[2],
            name,
            {"spec": {"active": active}},
        )

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._call(
            "patch_status",
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
        )

    def _log_bytes(self, name: str, namespace: str, **query: Any) -> bytes:
        """The log as the kubelet wrote it: the client's own decoding is strict UTF-8 and raises on a
        latin-1 byte or on a character the byte limit cut. Read and released in the worker thread."""
        # Without preloading, the client gives urllib3's response, not the str its signature names.
        response: Any = self.core.read_namespaced_pod_log(name, namespace, _preload_content=False, **query)
        try:
            return bytes(response.data)
        finally:
            response.release_conn()

    async def read_log(self, namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int) -> LogTail:
        data = await self._call(
            "read_pod_log",
            self._log_bytes,
            pod,
            namespace,
            container=container,
            tail_lines=tail_lines,
            limit_bytes=limit_bytes,
        )
        return log_tail(data, limit_bytes)

    async def post_event(
        self,
        owner: dict[str, Any],
        kind: str,
        reason: str,
        message: str,
        when: datetime | None = None,
        name: str | None = None,
    ) -> None:
        """Post an Event; one of this name already stored (an earlier try whose answer was lost) is posted."""
        body = event_body(owner, kind, reason, message, when or datetime.now(UTC), name)
        try:
            await self._call("create_event", self.core.create_namespaced_event, owner["metadata"]["namespace"], body)
        except ApiException as error:
            if namespace_terminating(error):
                raise NamespaceTerminating(owner["metadata"]["namespace"]) from None
            if error.status != 409 or name is None:
                raise

    async def list_events(self, namespace: str, involved_uid: str, reason: str) -> list[dict[str, Any]]:
        """Events about one object with one reason (e.g. the Job controller's FailedCreate)."""
        found = await self._call(
            "list_events",
            self.core.list_namespaced_event,
            namespace,
            field_selector=f"involvedObject.uid={involved_uid},reason={reason}",
        )
        return [self._plain(item) for item in found.items]

    async def list_workloads(self, namespace: str, job_uid: str) -> list[dict[str, Any]] | None:
        """Kueue's Workloads of a Job (by the job-uid label Kueue puts on them); None where Kueue is not
        installed (no such resource) or the operator may not read them (its RBAC without Kueue's)."""
        try:
            found = await self._call(
                "list_workloads",
                self.custom.list_namespaced_custom_object,
                *WORKLOADS[:2],
                namespace,
                WORKLOADS[2],
                label_selector=f"{JOB_UID_LABEL}={job_uid}",
            )
        except ApiException as error:
            if error.status in (403, 404):
                return None
            raise
        return [item for item in found.get("items") or [] if isinstance(item, dict)]

    async def list_labelled(
        self, kind: str, namespace: str | None, label: str, entry: Callable[[dict[str, Any]], T]
    ) -> list[T]:
        """Every Job or pod ("jobs", "pods") with this label, in pages, each item made an entry as it is read:
        the raw JSON of a page is let go before the next is read (never the whole list at once)."""
        listing = {
            ("jobs", False): self.batch.list_namespaced_job,
            ("jobs", True): self.batch.list_job_for_all_namespaces,
            ("pods", False): self.core.list_namespaced_pod,
            ("pods", True): self.core.list_pod_for_all_namespaces,
        }[(kind, namespace is None)]
        where = () if namespace is None else (namespace,)
        found: list[T] = []
        token: str | None = None
        while True:
            page = await self._call(
                f"list_{kind}",
                listing,
                *where,
                label_selector=label,
                limit=LIST_PAGE,
                _continue=token,
                _preload_content=False,
            )
            said = json.loads(page.data)
            found.extend(entry(item) for item in said.get("items") or [])
            token = (said.get("metadata") or {}).get("continue") or None
            if token is None:
                return found

    async def read_peers(self, peering: str, namespace: str | None) -> dict[str, Any]:
        """The peers kopf keeps in a (Cluster)KopfPeering's status; empty if the object is missing."""
        if namespace is None:
            found = await self._read(
                "read_peering", self.custom.get_cluster_custom_object, "kopf.dev", "v1", "clusterkopfpeerings", peering
            )
        else:
            found = await self._read(
                "read_peering",
                self.custom.get_namespaced_custom_object,
                "kopf.dev",
                "v1",
                namespace,
                "kopfpeerings",
                peering,
            )
        return dict((found or {}).get("status") or {})

    async def read_finetunejob(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One FineTuneJob as stored, for a pass that needs the spec the watch's copy did not keep."""
        found = await self._read(
            "read_finetunejob", self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )
        return slim_body(found) if found is not None else None

    async def delete_finetunejob(self, namespace: str, name: str, uid: str) -> None:
        body = kubernetes.client.V1DeleteOptions(preconditions=kubernetes.client.V1Preconditions(uid=uid))
        try:
            await self._call(
                "delete_finetunejob",
                self.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body=body,
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    # -- before kopf starts (synchronous: there is no event loop yet) -------------------------

    def finetunejobs_served(self) -> bool:
        """Asked through discovery, which every authenticated identity may read: no CRD permission needed."""
        try:
            found = self._sync("discover", self.custom.get_api_resources, GROUP, VERSION)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return any(resource.name == PLURAL for resource in found.resources)

    def install_crd(self, wanted: dict[str, Any]) -> str:
        """Create or update a CRD; says which it did."""
        name = wanted["metadata"]["name"]
        try:
            existing = self._sync("read_crd", self.extensions.read_custom_resource_definition, name)
        except ApiException as error:
            if error.status != 404:
                raise
            self._sync("create_crd", self.extensions.create_custom_resource_definition, wanted)
            return "created"
        wanted = {**wanted, "metadata": {**wanted["metadata"], "resourceVersion": existing.metadata.resource_version}}
        self._sync("replace_crd", self.extensions.replace_custom_resource_definition, name, wanted)
        return "updated"
