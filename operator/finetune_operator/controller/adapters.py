"""kopf's side: thin handlers that pass watch events to the Controller.

Only low-level handlers (`on.event`, `index`) are used: kopf then keeps no diff-base or progress
annotations on the user's object and adds no finalizer, so GitOps tools see no drift and a delete
never hangs while the operator is down. Handlers are registered on a registry made for one
Controller (no import-time registration, no module-level state).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from finetune_operator.api.base import GROUP, LABEL_NAME, PLURAL, VERSION
from finetune_operator.controller.context import Views
from finetune_operator.controller.controller import Controller
from finetune_operator.controller.kube import COMPONENT
from finetune_operator.observe.pods import slim_job, slim_pod, thin_body

FTJ = (GROUP, VERSION, PLURAL)
LIST_PAGE = 50


def configure(settings: kopf.OperatorSettings, controller: Controller) -> None:
    # Handler bookkeeping, should any ever be needed, goes to status, never to annotations.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.diffbase")
    # A watch that the network silently drops is re-established instead of waiting forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # The first list in pages: a page of objects at the API server's size limit is tens of MB, the
    # whole list of thousands would be held at once (the operator's memory limit is 512 MiB).
    settings.watching.chunk_size = LIST_PAGE
    # An object's worker waits this long for its next event before it ends: short, because thousands
    # of finished FineTuneJobs would otherwise each keep one for the default 5 s after a (re)list.
    settings.queueing.idle_timeout = 0.5
    settings.posting.level = logging.INFO
    # One name in the "From" column of `kubectl describe`, for kopf's events and the operator's own.
    settings.posting.reporting_component = COMPONENT
    # The CRD is checked (or installed) before kopf starts; watching CRDs for new resources would
    # need a cluster-wide read permission that the operator's RBAC deliberately does not grant.
    settings.scanning.disabled = True
    if controller.peering is not None:
        settings.posting.reporting_instance = controller.peering.identity
        settings.peering.lifetime = controller.peering.lifetime


def registry_for(controller: Controller) -> kopf.OperatorRegistry:
    """kopf's handlers, bound to this controller."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(id="start", registry=registry)  # type: ignore[arg-type]  # indices come as keywords
    async def start(
        settings: kopf.OperatorSettings,
        jobs_by_owner: kopf.Index[Any, Any],
        pods_by_owner: kopf.Index[Any, Any],
        **_: Any,
    ) -> None:
        configure(settings, controller)
        await controller.start(Views(jobs_by_owner, pods_by_owner))

    # kopf's own login handlers live on its default registry; this registry needs its own.
    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.cleanup(id="stop", registry=registry)
    async def stop(**_: Any) -> None:
        await controller.stop()

    # Explicit ids: kopf names handlers by qualified name, and indices reach handlers as keywords.
    # (No index of FineTuneJobs: the controller keeps the bodies of the live ones itself.)
    @kopf.index("batch", "v1", "jobs", labels={LABEL_NAME: kopf.PRESENT}, id="jobs_by_owner", registry=registry)
    async def jobs_by_owner(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any]:
        """The Jobs the operator made, by (namespace, FineTuneJob name): read from the watch, never polled."""
        return {(namespace, body["metadata"]["labels"][LABEL_NAME]): slim_job(body)}

    @kopf.index("", "v1", "pods", labels={LABEL_NAME: kopf.PRESENT}, id="pods_by_owner", registry=registry)
    async def pods_by_owner(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any]:
        """Training pods by (namespace, FineTuneJob name), slimmed to what progress reading needs."""
        return {(namespace, body["metadata"]["labels"][LABEL_NAME]): slim_pod(dict(body))}

    @kopf.on.event(*FTJ, id="finetunejob_changed", registry=registry)
    async def finetunejob_changed(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        controller.dispatch(event.get("type"), thin_body(body))

    @kopf.on.event("batch", "v1", "jobs", labels={LABEL_NAME: kopf.PRESENT}, id="job_changed", registry=registry)
    async def job_changed(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        await controller.on_job(event.get("type"), slim_job(body), body["metadata"]["labels"][LABEL_NAME])

    return registry
