"""The pod lifecycle controls of the local kwok cluster, which operator tests rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e import localcluster as lc

pytestmark = pytest.mark.e2e


def test_fail_annotation_makes_the_job_fail(local_cluster: lc.Cluster, namespace: str) -> None:
    annotations = {lc.FAIL_ANNOTATION: "true", lc.EXIT_CODE_ANNOTATION: "3", lc.RUN_DURATION_ANNOTATION: "1s"}
    local_cluster.apply(lc.job_manifest("doomed", annotations=annotations), namespace)

    assert local_cluster.wait_job_finished(namespace, "doomed") == "Failed"
    pod = local_cluster.wait_pod_phase(namespace, ["Failed"], selector="job-name=doomed")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"


def test_held_namespace_keeps_job_pods_running_until_released(
    local_cluster: lc.Cluster, namespace: str, tmp_path: Path
) -> None:
    # Operator-made pods cannot carry test annotations: hold and log the whole namespace.
    log_file = tmp_path / "job.log"
    lc.append_log(log_file, "starting")
    local_cluster.fake_logs(namespace, log_file)
    local_cluster.hold_namespace(namespace)
    local_cluster.apply(lc.job_manifest("held", annotations={lc.RUN_DURATION_ANNOTATION: "0s"}), namespace)

    pod = local_cluster.wait_pod_phase(namespace, ["Running"], selector="job-name=held")
    name = pod["metadata"]["name"]
    lc.append_log(log_file, "epoch 1 done")
    logs = local_cluster.kubectl("logs", "-n", namespace, name).stdout
    assert logs == "starting\nepoch 1 done\n"
    # Still running well after its run duration (0s) would have ended it.
    pod = local_cluster.get_json("pod", name, "-n", namespace)
    assert pod["status"]["phase"] == "Running"
    assert local_cluster.job_finished(namespace, "held") is None

    local_cluster.release_namespace(namespace)
    assert local_cluster.wait_job_finished(namespace, "held") == "Complete"


def test_failed_namespace_fails_job_pods(local_cluster: lc.Cluster, namespace: str) -> None:
    local_cluster.fail_namespace(namespace)
    local_cluster.apply(lc.job_manifest("ns-doomed", annotations={lc.RUN_DURATION_ANNOTATION: "1s"}), namespace)
    assert local_cluster.wait_job_finished(namespace, "ns-doomed") == "Failed"
