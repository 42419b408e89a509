"""The compatibility chart on a real control plane: `helm install` of a values.yaml of the original
aidaptivcache-finetune chart makes one FineTuneJob, which the operator runs to Succeeded; `helm uninstall`
removes it. The API server reads the chart's text back to exactly the user's values (Go's YAML, not PyYAML).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import localcluster as lc
from finetune_operator.api.base import API_VERSION, KIND
from tests.e2e.helpers import wait_phase
from tests.e2e.operator_process import OperatorProcess
from tests.toolchain import tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "aidaptivcache-finetune"
# The original chart README's "Basic Fine-tuning Job" values (the repo's copy).
BASIC_VALUES = ROOT / "examples" / "chart-values" / "basic-values.yaml"
RELEASE = "ft1"

Helm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def helm(cluster: lc.Cluster, tmp_path: Path) -> Helm:
    """helm (the one `e2e/cluster build` builds) against the test cluster, with its own config and cache."""
    path = tool("helm")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(path), *args, "--kubeconfig", str(cluster.kubeconfig)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env, check=False)
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed (exit {result.returncode}):\n{result.stderr}", pytrace=False)
        return result

    return run


def _convert(values: Path, name: str, namespace: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "finetune_operator.cli", "convert", str(values), "--name", name, "-n", namespace]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    converted: dict[str, Any] = yaml.safe_load(result.stdout)
    return converted


def _uninstall(cluster: lc.Cluster, helm: Helm, namespace: str, name: str) -> None:
    result = helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "60s")
    assert f'release "{RELEASE}" uninstalled' in result.stdout
    cluster.wait_for(
        lambda: cluster.get_json("finetunejob", name, "-n", namespace) is None or None,
        what=f"helm uninstall to delete FineTuneJob {namespace}/{name}",
        timeout=60,
    )
    assert helm("list", "-n", namespace, "-q").stdout.strip() == ""


def test_the_charts_privileged_default_needs_the_operators_permission(
    cluster: lc.Cluster, namespace: str, running: OperatorProcess, helm: Helm
) -> None:
    """The chart ran its trainer privileged (for a prescript's NFS mount): a default operator refuses it."""
    name = yaml.safe_load(BASIC_VALUES.read_text())["job"]["name"]
    helm("install", RELEASE, str(CHART), "-f", str(BASIC_VALUES), "-n", namespace)
    ftj = wait_phase(cluster, namespace, name, "Failed", running)
    stalled = next(c for c in ftj["status"]["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
    assert "privileged: true gives the trainer powers over its node" in stalled["message"]
    assert "--allow-privileged" in stalled["message"] and "allowPrivilegedTrainers" in stalled["message"]
    assert cluster.get_json("job", name, "-n", namespace) is None
    _uninstall(cluster, helm, namespace, name)


def test_helm_install_of_the_basic_values_runs_to_succeeded_and_uninstalls(
    cluster: lc.Cluster,
    namespace: str,
    crd: None,
    without_shared_operator: None,
    helm: Helm,
    tmp_path: Path,
) -> None:
    name = yaml.safe_load(BASIC_VALUES.read_text())["job"]["name"]
    allowing = OperatorProcess(cluster.kubeconfig, tmp_path / "operator", ("--log-interval", "1", "--allow-privileged"))
    allowing.start()
    try:
        result = helm("install", RELEASE, str(CHART), "-f", str(BASIC_VALUES), "-n", namespace)
        assert "STATUS: deployed" in result.stdout
        assert f"kubectl get finetunejobs -n {namespace}" in result.stdout  # NOTES.txt
        ftj = wait_phase(cluster, namespace, name, "Succeeded", allowing)
    finally:
        allowing.stop()
    # The release's one object, in the namespace given by -n, is the FineTuneJob convert writes.
    expected = _convert(BASIC_VALUES, name, namespace)
    assert (ftj["apiVersion"], ftj["kind"]) == (API_VERSION, KIND)
    assert ftj["metadata"]["namespace"] == namespace
    assert ftj["spec"] == expected["spec"]
    assert ftj["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    assert ftj["metadata"]["annotations"]["meta.helm.sh/release-namespace"] == namespace
    manifest = helm("get", "manifest", RELEASE, "-n", namespace).stdout
    assert [d["kind"] for d in yaml.safe_load_all(manifest) if d] == [KIND]
    # The operator did the rest: the Job is the FineTuneJob's child.
    job = cluster.get_json("job", name, "-n", namespace)
    if job is not None:  # ttlSecondsAfterFinished: 60 may already have removed it on a slow machine
        (owner,) = job["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"]) == (KIND, name)
    table = cluster.kubectl("get", "finetunejobs", "-n", namespace).stdout
    assert table.splitlines()[1].split()[:2] == [name, "Succeeded"]

    _uninstall(cluster, helm, namespace, name)


def test_helm_install_keeps_hostile_text_byte_identical(
    cluster: lc.Cluster, namespace: str, running: OperatorProcess, helm: Helm, tmp_path: Path
) -> None:
    """What the API server stores is the user's text and numbers, read back by Go's YAML from the chart's output."""
    script = (
        '  echo "{{ .Release.Name }}" \'{{- fail "x" }}\' \\\\ \t%s\n'
        "---\n"
        "kind: ConfigMap\n"
        "metadata: {name: injected}\n"
        "...\n"
        "key: value   \n"
        "\n"
        "unicode: é 字 🚀\n"
    )
    values = {
        "schedulerName": "",
        "prescript": script,
        "postscript": script.strip() + "\r\nno newline at the end",
        "affinity": {"nodeAffinity": {"example.com/x": ["{{ .Values }}"]}},
        "expConfig": {
            "processSettings": {"specifyGpus": 0},
            "runSettings": {"lrScheduler": {"learningRate": 0.000007}, "optimizer": {"eps": 0.00000001}},
        },
        "resources": {"requests": {"cpu": 0.5}, "limits": {"cpu": 1.5}},
        "job": {"ttlSecondsAfterFinished": None},
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values, sort_keys=False))
    helm("install", RELEASE, str(CHART), "-f", str(values_file), "-n", namespace)
    # No job.name: the release names the FineTuneJob.
    ftj = cluster.wait_for(
        lambda: cluster.get_json("finetunejob", RELEASE, "-n", namespace),
        what=f"FineTuneJob {namespace}/{RELEASE}",
        timeout=30,
    )
    spec = ftj["spec"]
    assert spec["prescript"] == script
    assert spec["postscript"] == values["postscript"]
    assert spec["affinity"] == values["affinity"]
    assert spec["expConfig"]["runSettings"] == values["expConfig"]["runSettings"]
    assert isinstance(spec["expConfig"]["runSettings"]["lrScheduler"]["learningRate"], float)
    assert spec["expConfig"]["processSettings"]["specifyGpus"] == "0"
    assert spec["resources"] == {"requests": {"cpu": "0.5"}, "limits": {"cpu": "1.5"}}
    expected = _convert(values_file, RELEASE, namespace)["spec"]
    # The API server drops a null of a field that is not nullable; convert's output, applied, loses it the same way.
    expected_applied = {key: value for key, value in expected.items() if value is not None}
    assert {key: value for key, value in spec.items() if value is not None} == expected_applied
    assert cluster.get_json("configmap", "injected", "-n", namespace) is None

    _uninstall(cluster, helm, namespace, RELEASE)
