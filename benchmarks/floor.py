"""The floor: the least any Python controller must pay to turn FineTuneJobs into Jobs.

One watch on FineTuneJobs (the official client, as the operator uses), and on each ADDED one a
ConfigMap and a Job created, one after the other; nothing else (no validation, no status, no retry).
The Job is suspended as the FineTuneJob is, its pod asks for the FineTuneJob's ``resources``. Started
again over existing FineTuneJobs it lists them all and finds their children there (409, passed over).
Run as its own process, like the operator, so both pay the same interpreter and client costs:

  python benchmarks/floor.py --namespace NS   (KUBECONFIG from the environment)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import kubernetes

GROUP, VERSION, PLURAL = "finetune.aidaptiv.io", "v1alpha1", "finetunejobs"


def children(
    name: str, namespace: str, uid: str, spec: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    owner = [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneJob", "name": name, "uid": uid, "controller": True}]
    labels = {"finetune.aidaptiv.io/floor": name}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-config", "namespace": namespace, "labels": labels, "ownerReferences": owner},
        "data": {"exp_config.yaml": "process_settings: {num_gpus: 1}\n"},
    }
    spec = spec or {}
    resources = spec.get("resources") or {"requests": {"cpu": "1m"}}
    container = {"name": "trainer", "image": "aidaptiv", "resources": resources}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owner},
        "spec": {
            "suspend": spec.get("suspend", True) is not False,  # running them is kwok's work, not the floor's
            "template": {"metadata": {"labels": labels}, "spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }
    return config_map, job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    namespace = parser.parse_args().namespace
    kubernetes.config.load_kube_config()
    custom = kubernetes.client.CustomObjectsApi()
    core, batch = kubernetes.client.CoreV1Api(), kubernetes.client.BatchV1Api()
    print("watching", flush=True)
    for event in kubernetes.watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, timeout_seconds=0
    ):
        if event["type"] != "ADDED":
            continue
        metadata = event["object"]["metadata"]
        config_map, job = children(metadata["name"], namespace, metadata["uid"], event["object"].get("spec"))
        for create, body in ((core.create_namespaced_config_map, config_map), (batch.create_namespaced_job, job)):
            try:
                create(namespace, body)
            except kubernetes.client.ApiException as error:
                if error.status != 409:  # made before a restart: nothing to do
                    raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
