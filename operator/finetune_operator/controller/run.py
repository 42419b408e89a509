"""Starting the operator: logging, the CRD when asked, the Controller, and kopf's loop (which stops
cleanly on SIGTERM). Everything the process holds is made here, when it starts."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import kopf
import prometheus_client

from finetune_operator.api.base import GROUP, PLURAL, VERSION
from finetune_operator.api.crd import CRD_NAME, crd
from finetune_operator.controller.adapters import registry_for
from finetune_operator.controller.context import Settings
from finetune_operator.controller.controller import Controller, Peering
from finetune_operator.controller.kube import Kube
from finetune_operator.controller.metrics import Metrics
from finetune_operator.observe.peering import priority_by_age

DEV_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


CRD_SERVED_SECONDS = 60.0


def served_within(kube: Kube, seconds: float, poll: float = 0.25) -> bool:
    """Whether discovery serves FineTuneJobs within this time (a new CRD takes a moment to be served)."""
    deadline = time.monotonic() + seconds
    while not kube.finetunejobs_served():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


class CrdMissing(Exception):
    """The API server does not serve FineTuneJobs: the operator would watch nothing."""


@dataclass(frozen=True)
class Options:
    namespaces: Sequence[str] = ()
    dev: bool = False
    install_crd: bool = False
    liveness: str | None = None
    peering: str | None = None
    priority: int | None = None
    peering_lifetime: int = 30
    metrics: tuple[str, int] | None = None
    settings: Settings = field(default_factory=Settings)


def own_identity() -> str:
    """The pod's name in a cluster (POD_NAME from the downward API), else host and pid; unique per process."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}/{os.getpid()}/{int(time.time())}"


def run(options: Options) -> None:
    logging.basicConfig(
        level=logging.DEBUG if options.dev else logging.INFO,
        format=DEV_FORMAT if options.dev else "%(levelname)s %(name)s %(message)s",
    )
    metrics = Metrics(prometheus_client.REGISTRY)
    kube = Kube.from_environment(count=metrics.count_request)
    if options.install_crd:
        logging.getLogger("finetune_operator").info("CRD %s %s", CRD_NAME, kube.install_crd(crd()))
        # kopf resolves its resources once at start (CRD scanning is off: no cluster-wide CRD read),
        # so it must not start before discovery serves a CRD just created: it would never watch it.
        if not served_within(kube, CRD_SERVED_SECONDS):
            raise CrdMissing(
                f"the CRD {CRD_NAME} was installed, but the API server did not serve {PLURAL}.{GROUP}/{VERSION} "
                f"within {CRD_SERVED_SECONDS:g} s: see `kubectl get crd {CRD_NAME} -o yaml` (conditions)"
            )
    elif not kube.finetunejobs_served():
        raise CrdMissing(
            f"the API server does not serve {PLURAL}.{GROUP}/{VERSION}: install the CRD first "
            "(kubectl apply -f crds/, or the Helm chart), or pass --install-crd"
        )
    identity = own_identity()
    priority = options.priority if options.priority is not None else priority_by_age(int(time.time() * 1000))
    peering = None
    if options.peering is not None:
        peering = Peering(options.peering, tuple(options.namespaces), identity, priority, options.peering_lifetime)
    controller = Controller(kube, settings=options.settings, metrics=metrics, peering=peering)
    metrics.add_finetunejob_gauges(controller.phases, controller.trainings, controller.records, controller.stalled)
    if options.metrics is not None:
        prometheus_client.start_http_server(options.metrics[1], addr=options.metrics[0])
    kopf.run(
        registry=registry_for(controller),
        standalone=options.peering is None,
        peering_name=options.peering,
        priority=priority,
        identity=identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
        namespaces=list(options.namespaces),
        clusterwide=not options.namespaces,
        liveness_endpoint=options.liveness,
    )
