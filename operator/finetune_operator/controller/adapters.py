"""kopf's side: thin handlers that pass watch events to the Controller.

Only low-level handlers (`on.event`) are used: kopf then keeps no diff-base or progress
annotations on the user's object and adds no finalizer, so GitOps tools see no drift and a delete
never hangs while the operator is down. Handlers are registered on a registry made for one
Controller (no import-time registration, no module-level state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

import kopf

from finetune_operator.api.base import GROUP, PLURAL, VERSION
from finetune_operator.controller.controller import Controller
from finetune_operator.controller.kube import COMPONENT
from finetune_operator.controller.watched import ChildIndex, Key, owner_key
from finetune_operator.observe.pods import slim_job, slim_pod, thin_body

FTJ = (GROUP, VERSION, PLURAL)
LIST_PAGE = 50


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: the low-level handlers read no diff, yet kopf builds one for every event (a deep
    copy of the whole object, a Job's pod template, kubectl's last-applied copy) unless it is empty.
    Nothing is ever stored on the object."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure(settings: kopf.OperatorSettings, controller: Controller) -> None:
    # Handler bookkeeping, should any ever be needed, goes to status, never to annotations.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = NoDiffBase()
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
    watched = controller.watched

    # Retried soon, not after kopf's default minute: nothing is watched until the children are listed.
    @kopf.on.startup(id="start", backoff=2, registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, controller)
        await controller.start()

    # kopf's own login handlers live on its default registry; this registry needs its own.
    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.cleanup(id="stop", registry=registry)
    async def stop(**_: Any) -> None:
        await controller.stop()

    # The children are kept in the controller's own index (watched.py), not kopf's. Unlabelled
    # objects are let through only when the index holds them (their label was removed: they leave it).
    def labelled_or_known(index: ChildIndex) -> Callable[..., bool]:
        def check(body: kopf.Body, **_: Any) -> bool:
            return owner_key(body) is not None or index.knows(body["metadata"]["uid"])

        return check

    def keep(index: ChildIndex, event: kopf.RawEvent, body: kopf.Body, child: dict[str, Any]) -> Key | None:
        """The child kept in (or removed from) the index; its owner's key while it is one of ours."""
        key, uid = owner_key(body), body["metadata"]["uid"]
        if key is None or event.get("type") == "DELETED":
            index.drop(uid)
        else:
            index.put(key, uid, child)
        return key

    @kopf.on.event("", "v1", "pods", when=labelled_or_known(watched.pods), id="pod_changed", registry=registry)
    async def pod_changed(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        keep(watched.pods, event, body, slim_pod(dict(body)))

    @kopf.on.event(*FTJ, id="finetunejob_changed", registry=registry)
    async def finetunejob_changed(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        controller.dispatch(event.get("type"), thin_body(body))

    @kopf.on.event("batch", "v1", "jobs", when=labelled_or_known(watched.jobs), id="job_changed", registry=registry)
    async def job_changed(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        job = slim_job(body)
        key = keep(watched.jobs, event, body, job)
        if key is not None:
            await controller.on_job(event.get("type"), job, key[1])

    return registry
