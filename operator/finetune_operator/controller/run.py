"""Starting the operator: logging, the CRD when asked, and kopf's loop (which stops cleanly on SIGTERM)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import kopf
import kubernetes
import prometheus_client
from kubernetes.client.exceptions import ApiException

from finetune_operator.api.base import GROUP, PLURAL, VERSION
from finetune_operator.api.crd import CRD_NAME, crd
from finetune_operator.controller import handlers  # importing it registers the handlers with kopf
from finetune_operator.controller.kube import api_client_from_environment
from finetune_operator.controller.peering import own_identity, priority_by_age


class CrdMissing(Exception):
    """The API server does not serve FineTuneJobs: the operator would watch nothing."""


def finetunejobs_served() -> bool:
    """Asked through discovery, which every authenticated identity may read: no CRD permission needed."""
    try:
        found = kubernetes.client.CustomObjectsApi(api_client_from_environment()).get_api_resources(GROUP, VERSION)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return any(resource.name == PLURAL for resource in found.resources)


def install_crd() -> str:
    """Create or update the FineTuneJob CRD; says which it did."""
    api = kubernetes.client.ApiextensionsV1Api(api_client_from_environment())
    wanted: dict[str, Any] = crd()
    try:
        existing = api.read_custom_resource_definition(CRD_NAME)
    except ApiException as error:
        if error.status != 404:
            raise
        api.create_custom_resource_definition(wanted)
        return "created"
    wanted["metadata"]["resourceVersion"] = existing.metadata.resource_version
    api.replace_custom_resource_definition(CRD_NAME, wanted)
    return "updated"


def run(
    namespaces: Sequence[str],
    dev: bool = False,
    install: bool = False,
    liveness: str | None = None,
    peering: str | None = None,
    priority: int | None = None,
    peering_lifetime: int = 30,
    log_interval: float = 15.0,
    metrics: tuple[str, int] | None = None,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if dev else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s" if dev else "%(levelname)s %(name)s %(message)s",
    )
    if install:
        logging.getLogger("finetune_operator").info("CRD %s %s", CRD_NAME, install_crd())
    elif not finetunejobs_served():
        raise CrdMissing(
            f"the API server does not serve {PLURAL}.{GROUP}/{VERSION}: install the CRD first "
            "(kubectl apply -f crds/, or the Helm chart), or pass --install-crd"
        )
    handlers.STATE.progress.interval = log_interval
    if metrics is not None:
        prometheus_client.start_http_server(metrics[1], addr=metrics[0])
    identity = own_identity()
    if priority is None:
        priority = priority_by_age()
    if peering is not None:
        handlers.STATE.peering = handlers.Peering(peering, tuple(namespaces), identity, priority, peering_lifetime)
    kopf.run(
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        identity=identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
        namespaces=list(namespaces),
        clusterwide=not namespaces,
        liveness_endpoint=liveness,
    )
