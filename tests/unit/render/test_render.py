"""Rendering: the trainer's files equal the chart's, the Job runs what the user asked, user text is data."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from finetune_operator.api.convert import values_to_finetunejob
from finetune_operator.api.resource import FineTuneJob, load_finetunejob
from finetune_operator.render import configs
from finetune_operator.render.configs import LINE_BREAKS
from finetune_operator.render.entrypoint import ENTRYPOINT
from finetune_operator.render.manifests import DEFAULT_SECURITY_CONTEXT, render
from tests.chart_defaults import CHART_DATASETS, CHART_ENV_CONFIG, CHART_EXP_CONFIG
from tests.kubelet import container_command, container_environment
from tests.rule_cases import finetunejob

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CHART_README = ROOT.parent / "shared" / "original-chart" / "README.md"

# What chart 0.1.4 renders for its README's "Basic Fine-tuning Job" values, parsed: the values tree
# in snake_case, chart defaults for what the values leave out, and 7e-06 as the float it means.
CHART_BASIC_EXP_CONFIG = copy.deepcopy(CHART_EXP_CONFIG)
CHART_BASIC_EXP_CONFIG["run_settings"]["max_iter"] = 100
CHART_BASIC_ENV_CONFIG = copy.deepcopy(CHART_ENV_CONFIG)
# The one deliberate difference: each run logs to its own file (runs sharing an outputDir never mix).
CHART_BASIC_ENV_CONFIG["path_settings"]["log_name"] = "finetune_output.finetune-llama-job.log"
# The chart wrote integers; the API server stores every quantity as a string, and so do we.
CHART_BASIC_RESOURCES = {
    "requests": {"otterscale.com/vgpu": "1", "otterscale.com/vgpumem-percentage": "60", "phison.com/ai100": "1"},
    "limits": {"otterscale.com/vgpu": "1", "otterscale.com/vgpumem-percentage": "60", "phison.com/ai100": "1"},
}
CHART_MOUNTS = {
    "/config/exp": "exp_config.yaml",
    "/config/env": "env_config.yaml",
    "/config/train_data": "QA_dataset_config.yaml",
}


def _rendered(ftj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ConfigMap and the Job (and, with several ranks, not the Service)."""
    *_, job, config_map = render(load_finetunejob(ftj))
    return config_map, job


def _container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


def _mounted_files(config_map: dict[str, Any], job: dict[str, Any]) -> dict[str, str]:
    """mount path of each file -> the key it comes from, following volumes to the ConfigMap."""
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    files = {}
    for mount in _container(job)["volumeMounts"]:
        source = volumes[mount["name"]].get("configMap")
        if source:
            assert source["name"] == config_map["metadata"]["name"]
            for item in source["items"]:
                files[f"{mount['mountPath']}/{item['path']}"] = item["key"]
    return files


def _assert_chart_basic(config_map: dict[str, Any], job: dict[str, Any]) -> None:
    data = config_map["data"]
    assert yaml.safe_load(data["exp_config.yaml"]) == CHART_BASIC_EXP_CONFIG
    assert yaml.safe_load(data["env_config.yaml"]) == CHART_BASIC_ENV_CONFIG
    assert yaml.safe_load(data["QA_dataset_config.yaml"]) == CHART_DATASETS
    container = _container(job)
    assert container["resources"] == CHART_BASIC_RESOURCES
    assert container["image"] == "docker.io/library/aidaptiv:vNXUN_2_05BA0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    pod = job["spec"]["template"]["spec"]
    assert pod["schedulerName"] == "hami-scheduler"
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 1
    assert job["metadata"]["name"] == "finetune-llama-job"
    files = _mounted_files(config_map, job)
    for directory, key in CHART_MOUNTS.items():
        assert files[f"{directory}/{key}"] == key


def test_converted_chart_values_render_what_the_chart_rendered() -> None:
    values = yaml.safe_load((ROOT / "examples" / "chart-values" / "basic-values.yaml").read_text())
    config_map, job = _rendered(values_to_finetunejob(values))
    _assert_chart_basic(config_map, job)
    # The user asked for privileged (the chart's NFS prescript needs it) and gets it, with the other
    # defaults; the operator refuses to create it unless its installer allowed privileged trainers.
    assert _container(job)["securityContext"] == {
        "privileged": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _readme_basic_values() -> dict[str, Any]:
    text = CHART_README.read_text()
    section = text.split("### Basic Fine-tuning Job", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    return yaml.safe_load(block.group(1))


@pytest.mark.skipif(not CHART_README.exists(), reason="../shared/original-chart/README.md is not here")
def test_chart_readme_basic_example_converts_and_renders_like_the_chart() -> None:
    config_map, job = _rendered(values_to_finetunejob(_readme_basic_values()))
    _assert_chart_basic(config_map, job)


def test_basic_example_is_the_chart_example_without_privilege() -> None:
    config_map, job = _rendered(yaml.safe_load((ROOT / "examples" / "basic.yaml").read_text()))
    _assert_chart_basic(config_map, job)
    assert _container(job)["securityContext"] == DEFAULT_SECURITY_CONTEXT
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data-data"]["nfs"] == {
        "server": "10.102.197.0",
        "path": "/volumes/_nogroup/my-nfs-path",
        "readOnly": False,
    }
    assert volumes["dshm"] == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_renders(path: Path) -> None:
    config_map, job = _rendered(yaml.safe_load(path.read_text()))
    assert config_map["kind"] == "ConfigMap" and job["kind"] == "Job"
    assert yaml.safe_load(config_map["data"]["exp_config.yaml"])["process_settings"]["num_gpus"] in (1, 2, 4, 8)


def test_small_float_reads_back_as_a_float_in_yaml_1_1() -> None:
    text = configs.exp_config(load_finetunejob(finetunejob({})))
    assert "learning_rate: 7.0e-06" in text
    rate = yaml.safe_load(text)["run_settings"]["lr_scheduler"]["learning_rate"]
    assert isinstance(rate, float) and rate == 7e-6
    assert isinstance(yaml.safe_load(text)["run_settings"]["optimizer"]["eps"], float)


def test_specify_gpus_stays_a_string_and_target_modules_a_list() -> None:
    spec = {
        "expConfig": {
            "processSettings": {"numGpus": 1, "specifyGpus": "0"},
            "runSettings": {"lora": {"loraTargetModules": ["q_proj", "v_proj"]}},
        }
    }
    config_map, _ = _rendered(finetunejob(spec))
    exp = yaml.safe_load(config_map["data"]["exp_config.yaml"])
    assert exp["process_settings"]["specify_gpus"] == "0"
    assert exp["run_settings"]["lora"]["lora_target_modules"] == ["q_proj", "v_proj"]
    assert "#" not in config_map["data"]["exp_config.yaml"]


def test_several_datasets_are_separate_documents() -> None:
    config_map, _ = _rendered(yaml.safe_load((ROOT / "examples" / "structured-train-data.yaml").read_text()))
    text = config_map["data"]["QA_dataset_config.yaml"]
    documents = list(yaml.safe_load_all(text))
    assert [next(iter(d)) for d in documents] == ["instruction-dataset", "company-faq"]
    assert text.count("\n---\n") == 1
    assert documents[1]["company-faq"]["user_prompt"] == "Answer as our support team would: {question}"
    assert documents[0]["instruction-dataset"]["strategy"] == "QA"


def test_raw_train_data_config_is_rewritten_without_comments_one_document_each() -> None:
    raw = "# data_path: in a comment\na:\n  data_path: x\nb:\n  data_path: y  # another\n"
    config_map, _ = _rendered(finetunejob({"trainDataConfig": raw}))
    text = config_map["data"]["QA_dataset_config.yaml"]
    assert "#" not in text
    assert text.count("data_path") == 2 and text.count("---") == 1


def test_relative_log_name_is_under_output_dir_and_absolute_stays() -> None:
    def log_file(name: str) -> str:
        _, job = _rendered(finetunejob({"envConfig": {"pathSettings": {"outputDir": "/out", "logName": name}}}))
        return next(e["value"] for e in _container(job)["env"] if e["name"] == "FTO_LOG_FILE")

    assert log_file("train.log") == "/out/train.rule-case.log"
    assert log_file("logs/train.log") == "/out/logs/train.rule-case.log"
    assert log_file("/var/log/train.log") == "/var/log/train.rule-case.log"
    assert log_file("train") == "/out/train.rule-case"


def test_job_fields_follow_the_spec() -> None:
    spec = {
        "suspend": True,
        "activeDeadlineSeconds": 3600,
        "backoffLimit": 3,
        "restartPolicy": "OnFailure",
        "schedulerName": "",
        "imagePullSecrets": [{"name": "registry"}],
        "nodeSelector": {"phison.com/ai100-present": "true"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "sharedMemory": {"sizeLimit": "8Gi"},
    }
    ftj = finetunejob(spec, namespace="team-a")
    ftj["metadata"]["uid"] = "1234"
    ftj["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "gpu-queue", "unrelated": "x"}
    config_map, job = _rendered(ftj)
    assert job["spec"]["suspend"] is True
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["backoffLimit"] == 3
    assert "ttlSecondsAfterFinished" not in job["spec"]
    pod = job["spec"]["template"]["spec"]
    assert "schedulerName" not in pod
    assert pod["restartPolicy"] == "OnFailure"
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["nodeSelector"] == {"phison.com/ai100-present": "true"}
    assert pod["tolerations"] == spec["tolerations"]
    assert pod["affinity"] == {"nodeAffinity": {}}
    assert pod["automountServiceAccountToken"] is False
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    for child in (config_map, job):
        assert child["metadata"]["namespace"] == "team-a"
        assert child["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "finetune.aidaptiv.io/v1alpha1",
                "kind": "FineTuneJob",
                "name": "rule-case",
                "uid": "1234",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert "unrelated" not in job["metadata"]["labels"]
    assert job["spec"]["template"]["metadata"]["labels"]["finetune.aidaptiv.io/name"] == "rule-case"
    # The deadline told to the queue too: Kueue counts admitted time across evictions; the Job only its own.
    assert job["metadata"]["labels"]["kueue.x-k8s.io/max-exec-time-seconds"] == "3600"
    assert "kueue.x-k8s.io/max-exec-time-seconds" not in config_map["metadata"]["labels"]


def test_the_deadline_goes_to_the_queue_only_for_a_queued_finetunejob_with_one() -> None:
    unqueued = finetunejob({"activeDeadlineSeconds": 60})
    assert "kueue.x-k8s.io/max-exec-time-seconds" not in _rendered(unqueued)[1]["metadata"]["labels"]
    queued = finetunejob({})
    queued["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "lq"}
    assert "kueue.x-k8s.io/max-exec-time-seconds" not in _rendered(queued)[1]["metadata"]["labels"]


def test_names_are_deterministic() -> None:
    first = render(load_finetunejob(finetunejob({}, name="my-run")))
    second = render(load_finetunejob(finetunejob({}, name="my-run")))
    assert first == second
    assert [m["metadata"]["name"] for m in first] == ["my-run", "my-run-config"]


HOSTILE = '\'; rm -rf / #\n$(touch /tmp/pwned) `id` "quoted" ${HOME}\n---\nkey: value\n- [a, {b: c}]\n\\ end: |'


def test_user_text_arrives_verbatim_and_changes_nothing_else() -> None:
    spec = {
        "prescript": HOSTILE,
        "postscript": HOSTILE,
        "trainData": [
            {"name": "ds", "dataPath": HOSTILE, "systemPrompt": HOSTILE, "userPrompt": HOSTILE + "{question}"}
        ],
        "envConfig": {"pathSettings": {"outputDir": "/out/$(id)", "logName": 'it\'s "a" log'}},
    }
    plain = copy.deepcopy(spec)
    plain.update(prescript="", postscript="")
    plain["trainData"][0].update(dataPath="x", systemPrompt="s", userPrompt="{question}")
    plain["envConfig"]["pathSettings"].update(outputDir="/out/x", logName="log")
    config_map, job = _rendered(finetunejob(spec))
    plain_map, plain_job = _rendered(finetunejob(plain))

    # The text reaches the files verbatim, through a YAML round trip.
    assert config_map["data"]["prescript.sh"] == HOSTILE
    assert config_map["data"]["postscript.sh"] == HOSTILE
    (dataset,) = yaml.safe_load_all(config_map["data"]["QA_dataset_config.yaml"])
    assert dataset["ds"]["data_path"] == HOSTILE
    assert dataset["ds"]["system_prompt"] == HOSTILE
    env = container_environment(_container(job), {})  # as the kubelet makes it
    assert env["FTO_OUTPUT_DIR"] == "/out/$(id)"
    assert env["FTO_LOG_FILE"] == '/out/$(id)/it\'s "a" log.rule-case'
    # The script, the command, and the shape of the Job do not change with it.
    assert _container(job)["args"] == _container(plain_job)["args"]
    assert container_command(_container(job), env) == ["/bin/sh", "-c", ENTRYPOINT]
    assert set(config_map["data"]) == set(plain_map["data"])
    job_text = yaml.safe_dump(job)
    assert yaml.safe_load(job_text) == job
    assert len(list(yaml.safe_load_all(job_text))) == 1


def test_rendering_leaves_the_model_as_it_was() -> None:
    """render is called on the same model for the Job and again for its ConfigMap: it must not change it
    (the securityContext defaults are merged into a copy, never into the user's dict)."""
    spec = {"securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}, "suspend": True}
    model: FineTuneJob = load_finetunejob(finetunejob({**spec, "resources": {"requests": {"cpu": 1}}}))
    before = model.model_dump()
    first = render(model)
    assert model.model_dump() == before
    assert render(model) == first
    assert model.spec.security_context == spec["securityContext"]


@pytest.mark.parametrize("text", ["a\x85b", "a\u2028b", "a\u2029b\nc", "a\x9bb", "字\u2028🚀"])
def test_odd_line_breaks_reach_the_trainer_unchanged(text: str) -> None:
    """Found by a probe: NEL was written raw, and a YAML 1.1 reader (the trainer's) read a line break."""
    spec = {
        "envConfig": {"pathSettings": {"modelNameOrPath": text}},
        "trainData": [{"name": "ds", "dataPath": "x", "userPrompt": text + "{question}"}],
    }
    _, config_map = render(load_finetunejob(finetunejob(spec)))
    data = config_map["data"]
    assert yaml.safe_load(data["env_config.yaml"])["path_settings"]["model_name_or_path"] == text
    assert yaml.safe_load(data["QA_dataset_config.yaml"])["ds"]["user_prompt"] == text + "{question}"
    for document in data.values():
        assert LINE_BREAKS.isdisjoint(document), document
