"""The training pod's securityContext and /dev/shm, enforced by the real runtime, and the entrypoint
still working under them (a FineTuneJob through the operator)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from e2e import localcluster as lc
from tests.e2e.helpers import wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.realnode.nodes import RealNode, container_state
from tests.e2e.realnode.test_finetunejob import NAME_LABEL, pods_of, trainer_spec
from tests.rule_cases import finetunejob

# Written by the prescript (sourced by the entrypoint in the training container) into the pod's log.
PROBE = """\
echo "probe uid=$(id -u) gid=$(id -g)"
grep -E '^(CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status | sed 's/^/probe /'
if touch /written-to-root 2>/dev/null; then echo "probe root writable"; else echo "probe root read-only"; fi
df -k /dev/shm | awk 'NR == 2 {print "probe shm kB " $2}'
export PHISONAI2_STANDIN_STEP_SECONDS=0.1
"""


def test_the_trainer_runs_non_root_without_capabilities_on_a_read_only_root_with_a_sized_shm(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
) -> None:
    _, claim = host_volumes("out")
    security = {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True, "readOnlyRootFilesystem": True}
    spec = trainer_spec(real_node, claim, PROBE, securityContext=security, sharedMemory={"sizeLimit": "256Mi"})
    cluster.apply(finetunejob(spec, "locked", namespace))
    wait_phase(cluster, namespace, "locked", "Succeeded", running, timeout=120)
    (trainer_pod,) = pods_of(cluster, namespace, "locked")
    assert trainer_pod["metadata"]["labels"][NAME_LABEL] == "locked"
    log = cluster.kubectl("logs", "-n", namespace, trainer_pod["metadata"]["name"]).stdout
    probes = [line.removeprefix("probe ") for line in log.splitlines() if line.startswith("probe ")]
    assert probes == [
        "uid=1000 gid=1000",
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "root read-only",
        f"shm kB {256 * 1024}",
    ]
    assert container_state(trainer_pod, "trainer")["terminated"]["exitCode"] == 0
