"""The models and the API server agree, over specs hypothesis makes up (bounded by count).

- A spec the models accept, the API server accepts (with the generated CRD, strict field validation),
  and the reverse: a disagreement is a defect (the known ones, outside the generator, are listed).
- What the models accept renders a Job and a ConfigMap the API server accepts (server-side dry run).
- Every documented default and every example is accepted by server-side apply, which is what Argo CD
  and Flux use (client-side `kubectl apply` drops nulls and would hide a refused one).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from e2e import localcluster as lc
from finetune_operator.api.base import GROUP, PLURAL, VERSION
from finetune_operator.api.resource import InvalidFineTuneJob, load_finetunejob
from finetune_operator.api.spec import FineTuneJobSpec
from finetune_operator.render.manifests import render
from tests.rule_cases import finetunejob

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
EXAMPLES_PER_PROPERTY = int(os.environ.get("AGREEMENT_EXAMPLES", "120"))

# Where the two differ, known and accepted (outside what the generator below makes):
# - a quantity exponent beyond 32 bits ("1e4294967296"): Kubernetes truncates it to 32 bits (here: 1,
#   accepted), the models keep its size (out of range, refused);
# - integers beyond int64 in free-form fields (tolerations, affinity): the API server stores them as
#   floats, the models refuse them (they would reach the pod changed).


@pytest.fixture(scope="module")
def api(cluster: lc.Cluster, crd: None) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield client
    client.close()


def _accepted(call: Any, *args: Any) -> tuple[bool, str]:
    """Whether the API server takes the object (a dry run, with kubectl's strict field validation)."""
    try:
        call(*args, dry_run="All", field_validation="Strict")
    except ApiException as error:
        if error.status not in (400, 422):
            raise
        return False, str(json.loads(error.body or "{}").get("message"))
    return True, ""


def server_accepts(api: kubernetes.client.ApiClient, namespace: str, ftj: dict[str, Any]) -> tuple[bool, str]:
    custom = kubernetes.client.CustomObjectsApi(api)
    return _accepted(
        lambda body, **kw: custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, **kw), ftj
    )


def model_accepts(ftj: dict[str, Any]) -> tuple[bool, str]:
    try:
        load_finetunejob(ftj)
    except InvalidFineTuneJob as error:
        return False, str(error)
    return True, ""


# -- a generator of specs: each field absent, or one of values on both sides of its rules -----------


def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping with any subset of these fields."""
    return st.fixed_dictionaries({}, optional=fields)


QUANTITIES = st.sampled_from(
    ["1", "500m", "1.5", "16Gi", "1e3", "1e18", "1e999999", "-1", "1\n", "1e2.5", "abc", "", 0, 2, 101]
)
RESOURCE_NAMES = st.sampled_from(
    ["cpu", "memory", "phison.com/ai100", "otterscale.com/vgpu", "otterscale.com/vgpumem",
     "otterscale.com/vgpumem-percentage", "example.com/foo", "", "a" * 64, "bad key", "x.io/" + "b" * 63]
)  # fmt: skip
RESOURCE_LIST = st.dictionaries(RESOURCE_NAMES, QUANTITIES, max_size=3)
MOUNT_PATHS = st.sampled_from(
    ["/mnt/data", "/data", "data", "/", "/dev", "/dev/shm/x", "//config/exp", "/./x", "/a/../b", "/mnt/data/",
     "/config", "/configs", "/mnt/.hidden", "/mnt/..x"]
)  # fmt: skip
TEXTS = st.sampled_from(["", "x", "{question}", "Q: {question}", "{question} data_path", "a\x85b", "✓ {question}"])

PROCESS = optional(
    numGpus=st.sampled_from([1, 2, 3, 4, 8, 0, True, "4"]),
    specifyGpus=st.sampled_from([None, "0", "0,1", "1,1", "0;1", "", "0,1,2,3"]),
    masterPort=st.sampled_from([1, 8299, 0, 65536]),
)
RUN = optional(
    perDeviceTrainBatchSize=st.sampled_from([1, 2, 4, 0, -1]),
    perUpdateTotalBatchSize=st.sampled_from([1, 8, 16, 24, 0, 10]),
    maxIter=st.sampled_from([-2, -1, 0, 1, 12, 2**63 - 1]),
    weightFileFormat=st.sampled_from([None, "bin", "safetensors", "onnx"]),
    precisionMode=st.sampled_from([0, 1, 2, False]),
    maxSeqLen=st.sampled_from([1, 2048, 0]),
    lrScheduler=optional(mode=st.sampled_from([-2, -1, 5, 6]), learningRate=st.sampled_from([7e-6, 1, 0, -1.0])),
)
VOLUME = st.fixed_dictionaries(
    {"name": st.sampled_from(["data", "Data", "d" * 49]), "mountPath": MOUNT_PATHS},
    optional={
        "nfs": st.fixed_dictionaries({"server": st.just("nfs.local"), "path": st.just("/x")}),
        "persistentVolumeClaim": st.fixed_dictionaries({"claimName": st.just("claim")}),
        "subPath": st.sampled_from(["models", "../x", "/abs", "a/../b"]),
        "readOnly": st.booleans(),
    },
)
DATASET = st.fixed_dictionaries(
    {"name": st.sampled_from(["ds", "ds.v2", "-bad"]), "dataPath": st.sampled_from(["org/data", "", "my_data_path"])},
    optional={
        "userPrompt": TEXTS,
        "systemPrompt": TEXTS,
        "strategy": st.sampled_from(["qa", "QA", "Rag", "chat"]),
        "expType": st.sampled_from(["train", "test"]),
    },
)
SPECS = optional(
    expConfig=optional(processSettings=PROCESS, runSettings=RUN),
    envConfig=optional(
        pathSettings=optional(
            outputDir=st.sampled_from(["/mnt/out", "out", "-v", "/"]),
            logName=st.sampled_from(["output.log", "logs/", ".", "a/b.log", ""]),
            modelNameOrPath=TEXTS,
        )
    ),
    resources=optional(requests=RESOURCE_LIST, limits=RESOURCE_LIST),
    nodeSelector=st.dictionaries(
        st.sampled_from(["gpu", "example.com/gpu", "", "bad key"]), st.sampled_from(["a100", "", "{{ x }}", "a" * 64])
    ),
    volumes=st.lists(VOLUME, max_size=2),
    trainData=st.lists(DATASET, min_size=1, max_size=2),
    sharedMemory=optional(enabled=st.booleans(), sizeLimit=st.sampled_from([None, "8Gi", "8 gigs"])),
    backoffLimit=st.sampled_from([0, 1, 101, -1]),
    restartPolicy=st.sampled_from(["Never", "OnFailure", "Always"]),
    ttlSecondsAfterFinished=st.sampled_from([None, 0, 60, -1]),
    ttlSecondsAfterFailure=st.sampled_from([None, 3600, -1]),
    schedulerName=st.sampled_from(["", "hami-scheduler"]),
)
PROPERTY = settings(
    max_examples=EXAMPLES_PER_PROPERTY,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(spec=SPECS)
def test_models_and_api_server_agree(api: kubernetes.client.ApiClient, namespace: str, spec: dict[str, Any]) -> None:
    ftj = finetunejob(spec, name="agree", namespace=namespace)
    model, model_says = model_accepts(ftj)
    server, server_says = server_accepts(api, namespace, ftj)
    assert model == server, (
        f"the models {'accept' if model else 'refuse'} and the API server {'accepts' if server else 'refuses'}:\n"
        f"spec: {spec!r}\nmodels: {model_says}\nAPI server: {server_says}"
    )
    if model:
        _children_accepted(api, namespace, ftj)


def _children_accepted(api: kubernetes.client.ApiClient, namespace: str, ftj: dict[str, Any]) -> None:
    stored = copy.deepcopy(ftj)
    stored["metadata"]["uid"] = "00000000-0000-4000-8000-000000000000"
    job, config_map = render(load_finetunejob(stored))
    config_map["metadata"].pop("ownerReferences", None)
    batch, core = kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)
    for kind, call, manifest in (
        ("Job", batch.create_namespaced_job, job),
        ("ConfigMap", core.create_namespaced_config_map, config_map),
    ):
        accepted, why = _accepted(call, namespace, manifest)
        assert accepted, f"the API server refuses the rendered {kind}: {why}\nspec: {ftj['spec']!r}"


def _documented_values() -> dict[str, Any]:
    """Every spec field at its documented default, nulls included (what `kubectl explain` says)."""
    return FineTuneJobSpec().model_dump(by_alias=True, mode="json")


@pytest.mark.parametrize("source", ["defaults", *[p.name for p in EXAMPLES]])
def test_documented_values_pass_server_side_apply(cluster: lc.Cluster, crd: None, namespace: str, source: str) -> None:
    """Found by a probe: `weightFileFormat: null` was documented but refused (an enum without null)."""
    if source == "defaults":
        obj = finetunejob(_documented_values(), name="defaults")
    else:
        obj = yaml.safe_load((ROOT / "examples" / source).read_text())
    assert "weightFileFormat" in json.dumps(obj) or source != "defaults"
    proc = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False
    )
    assert proc.returncode == 0, proc.stderr
