"""The Kubernetes calls the operator makes, as async functions.

The official client is synchronous; every call runs in a worker thread so that handlers never block
kopf's event loop. Calls are counted (for metrics and for tests that bound API traffic).
"""

from __future__ import annotations

import asyncio
import collections
from datetime import UTC, datetime
from typing import Any

import kubernetes
import prometheus_client
from kubernetes.client.exceptions import ApiException

from finetune_operator.api.base import GROUP, PLURAL, VERSION
from finetune_operator.render.manifests import ANNOTATION_REQUESTED_SUSPEND, suspend_text

CALLS: collections.Counter[str] = collections.Counter()
API_REQUESTS = prometheus_client.Counter(
    "finetune_operator_api_requests_total", "Kubernetes API requests the operator made, by operation.", ["operation"]
)


COMPONENT = "finetune-operator"  # the "From" of its Events


def api_client_from_environment() -> kubernetes.client.ApiClient:
    """In-cluster config inside a pod, else the current kubeconfig context."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


class Kube:
    """Typed access to the few resources the operator touches."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.batch = kubernetes.client.BatchV1Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)

    @classmethod
    def from_environment(cls) -> Kube:
        return cls(api_client_from_environment())

    async def _call(self, name: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        CALLS[name] += 1
        API_REQUESTS.labels(operation=name).inc()
        return await asyncio.to_thread(function, *args, **kwargs)

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create a ConfigMap or Job; None if one of that name exists already."""
        namespace = manifest["metadata"]["namespace"]
        create = {
            "ConfigMap": self.core.create_namespaced_config_map,
            "Job": self.batch.create_namespaced_job,
        }[manifest["kind"]]
        try:
            created = await self._call(f"create_{manifest['kind'].lower()}", create, namespace, manifest)
        except ApiException as error:
            if error.status == 409:
                return None
            raise
        return self.core.api_client.sanitize_for_serialization(created)

    async def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = await self._call("read_configmap", self.core.read_namespaced_config_map, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return self.core.api_client.sanitize_for_serialization(found)

    async def read_log(self, namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int) -> str:
        text = await self._call(
            "read_pod_log",
            self.core.read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            tail_lines=tail_lines,
            limit_bytes=limit_bytes,
        )
        return str(text)

    async def post_event(self, owner: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """An Event on the FineTuneJob, for code that runs outside kopf's handlers (no kopf.event there)."""
        metadata = owner["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
            "involvedObject": {
                "apiVersion": owner.get("apiVersion"),
                "kind": owner.get("kind"),
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._call("create_event", self.core.create_namespaced_event, metadata["namespace"], event)

    async def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = await self._call("read_job", self.batch.read_namespaced_job, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return self.core.api_client.sanitize_for_serialization(found)

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete a child in the background (the garbage collector takes its pods); False if gone."""
        delete = {
            "ConfigMap": self.core.delete_namespaced_config_map,
            "Job": self.batch.delete_namespaced_job,
        }[kind]
        try:
            await self._call(f"delete_{kind.lower()}", delete, name, namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def set_job_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        patch = {
            "metadata": {"annotations": {ANNOTATION_REQUESTED_SUSPEND: suspend_text(suspend)}},
            "spec": {"suspend": suspend},
        }
        await self._call("patch_job", self.batch.patch_namespaced_job, name, namespace, patch)

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

    async def read_peers(self, peering: str, namespace: str | None) -> dict[str, Any]:
        """The peers kopf keeps in a (Cluster)KopfPeering's status; empty if the object is missing."""
        try:
            if namespace is None:
                read = self.custom.get_cluster_custom_object
                found = await self._call("read_peering", read, "kopf.dev", "v1", "clusterkopfpeerings", peering)
            else:
                found = await self._call(
                    "read_peering",
                    self.custom.get_namespaced_custom_object,
                    "kopf.dev",
                    "v1",
                    namespace,
                    "kopfpeerings",
                    peering,
                )
        except ApiException as error:
            if error.status == 404:
                return {}
            raise
        return dict(found.get("status") or {})

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
