"""spec.output.image pushed from inside the real training pod (crane copied in by its init container)
to a registry on the node's bridge, the only address of this host the pods reach."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e import build_toolchain
from e2e import localcluster as lc
from tests.e2e.helpers import condition, wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.realnode.nodes import RealNode
from tests.e2e.realnode.test_finetunejob import trainer_spec
from tests.rule_cases import finetunejob

USER, PASSWORD = "trainer", "s3cret-for-the-test"


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def bridge_registry(real_node: RealNode, tmp_path: Path) -> Iterator[str]:
    """An in-memory registry with basic auth on the node's bridge address (pods reach it); host:port."""
    port = _free_port(real_node.node_ip)
    argv = [
        str(build_toolchain.bin_dir() / "oci-registry"), f"--address={real_node.node_ip}", f"--port={port}",
        f"--user={USER}", f"--password={PASSWORD}", "--quiet",
    ]  # fmt: skip
    with (tmp_path / "registry.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(200):  # bounded: 10 s
            if "listening on" in (tmp_path / "registry.log").read_text():
                break
            assert process.poll() is None, (tmp_path / "registry.log").read_text()
            time.sleep(0.05)
        yield f"{real_node.node_ip}:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def _push_secret(cluster: lc.Cluster, namespace: str, registry: str, password: str) -> None:
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    config = json.dumps({"auths": {registry: {"auth": auth}}})
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "regcred"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": config},
        },
        namespace,
    )


def _output(node: RealNode, registry: str) -> dict[str, object]:
    return {
        "image": {
            "repository": f"{registry}/team/tiny-ft",
            "format": "Image",
            "insecure": True,
            "pushSecretName": "regcred",
            "tools": {"crane": {"image": node.crane_image, "path": "/ko-app/crane"}},
        }
    }


def test_the_output_is_pushed_and_its_digest_is_the_registrys(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
    bridge_registry: str,
    tmp_path: Path,
) -> None:
    _push_secret(cluster, namespace, bridge_registry, PASSWORD)
    _, claim = host_volumes("out")
    spec = trainer_spec(
        real_node, claim, "export PHISONAI2_STANDIN_STEP_SECONDS=0.1\n", output=_output(real_node, bridge_registry)
    )
    cluster.apply(finetunejob(spec, "pushed", namespace))
    done = wait_phase(cluster, namespace, "pushed", "Succeeded", running, timeout=180)
    output = done["status"]["output"]
    tag = f"pushed-{done['metadata']['uid'][:8]}"
    crane = str(build_toolchain.bin_dir() / "crane")
    env = {"DOCKER_CONFIG": str(_docker_config(bridge_registry, tmp_path))}
    read_back = subprocess.run(
        [crane, "digest", "--insecure", f"{bridge_registry}/team/tiny-ft:{tag}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert read_back.returncode == 0, read_back.stderr
    assert output["digest"] == read_back.stdout.strip()
    assert output["reference"] == f"{bridge_registry}/team/tiny-ft:{tag}@{output['digest']}"
    listed = subprocess.run(
        [crane, "export", "--insecure", f"{bridge_registry}/team/tiny-ft:{tag}", "-"],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert b"checkpoint-epoch-1/model.safetensors" in listed.stdout  # the output directory is the layer


def _docker_config(registry: str, where: Path) -> Path:
    directory = where / "docker-config"
    directory.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
    return directory


def test_a_wrong_password_ends_output_push_failed(
    cluster: lc.Cluster,
    namespace: str,
    real_node: RealNode,
    running: OperatorProcess,
    host_volumes: Callable[[str], tuple[Path, str]],
    bridge_registry: str,
) -> None:
    _push_secret(cluster, namespace, bridge_registry, "not-the-password")
    _, claim = host_volumes("out")
    spec = trainer_spec(
        real_node, claim, "export PHISONAI2_STANDIN_STEP_SECONDS=0.1\n", output=_output(real_node, bridge_registry)
    )
    cluster.apply(finetunejob(spec, "refused", namespace))
    done = wait_phase(cluster, namespace, "refused", "Failed", running, timeout=180)
    failed = condition(done, "Failed")
    assert failed["reason"] == "OutputPushFailed", failed
    assert failed["message"].startswith("training complete; push failed: crane: "), failed["message"]
    assert "401 Unauthorized" in failed["message"], failed["message"]
