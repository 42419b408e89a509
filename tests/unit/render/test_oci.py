"""spec.model and spec.output.image, pure parts: validation beyond the rule table, the pod they render,
the model-loader's script run for real, and what the operator reads back from the pod's end."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from finetune_operator.api.convert import oci_blocks, values_to_finetunejob
from finetune_operator.api.resource import FineTuneJob, InvalidFineTuneJob, load_finetunejob
from finetune_operator.api.spec.oci import parse_reference, parse_repository
from finetune_operator.api.status import FineTuneJobStatus
from finetune_operator.observe.attempts import Attempts, rank_verdict, retry
from finetune_operator.observe.outcome import pushed, trainer_verdict
from finetune_operator.observe.pods import first_failed_rank
from finetune_operator.observe.progress import Progress
from finetune_operator.observe.status import Observation, derive_status, job_verdict, verdict
from finetune_operator.observe.termination import (
    PushedOutput,
    TrainerVerdict,
    loader_failure,
    of_repository,
    pushed_output,
    trainer_verdict_from_termination,
)
from finetune_operator.render import configs, manifests, oci
from finetune_operator.render.plan import Powers, plan
from tests.kubelet import container_command
from tests.rule_cases import finetunejob

ROOT = Path(__file__).resolve().parents[3]
UID = "0f1e2d3c-4b5a-4968-8776-65544332211f"
DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = {"reference": "registry.example.com/models/llama:v1"}
OUTPUT = {"image": {"repository": "registry.example.com/team/out"}}


def _ftj(spec: dict[str, Any], name: str = "run") -> FineTuneJob:
    body = finetunejob(spec, name=name, namespace="ml")
    body["metadata"]["uid"] = UID
    return load_finetunejob(body)


def _pod_spec(ftj: FineTuneJob) -> dict[str, Any]:
    return manifests.job(ftj)["spec"]["template"]["spec"]


def _env(ftj: FineTuneJob) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _pod_spec(ftj)["containers"][0]["env"] if "value" in e}


def _paths(ftj: FineTuneJob) -> dict[str, Any]:
    return yaml.safe_load(configs.env_config(ftj))["path_settings"]


# --- references ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "busybox",
        "busybox:1.36",
        "localhost:5000/a/b:c",
        "registry.example.com/team/model@" + DIGEST,
        "registry.example.com/team/model:v1@" + DIGEST,
        "[::1]:5000/model:v1",
    ],
)
def test_references_a_runtime_reads_are_accepted(text: str) -> None:
    assert parse_reference(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Registry.example.com/Team/model",  # an uppercase repository path
        "registry.example.com/model:",
        "registry.example.com/model:-v1",
        "registry.example.com/model@sha256:abc",
        "registry.example.com/model@sha256:" + "g" * 64,
        "a" * 64,  # a bare image id is no name
        "registry.example.com/model v1",
        "registry.example.com/model:v1\nx",
        "registry.example.com/model:v1;rm -rf /",
        "registry.example.com/model:" + "t" * 129,
    ],
)
def test_malformed_references_are_refused_with_the_reason(text: str) -> None:
    with pytest.raises(ValueError, match="valid OCI references"):
        parse_reference(text)


def test_a_push_repository_takes_no_tag_or_digest() -> None:
    assert parse_repository("registry.example.com:5000/team/out") == "registry.example.com:5000/team/out"
    for text in ("registry.example.com/team/out:v1", "registry.example.com/team/out@" + DIGEST):
        with pytest.raises(ValueError, match="without tag or digest"):
            parse_repository(text)


def test_the_library_refusing_what_the_grammar_allows_is_an_invalid_spec_not_a_crash() -> None:
    result = plan(finetunejob({"model": {"image": {"reference": "a" * 64}}}, name="x", namespace="ml"), Powers())
    assert result.ftj is None
    assert any("valid OCI references" in problem for problem in result.problems)


# --- the model in the pod --------------------------------------------------------------------------------------------


def test_an_image_model_is_mounted_read_only_and_becomes_the_default_model_path() -> None:
    ftj = _ftj({"model": {"image": IMAGE}})
    pod = _pod_spec(ftj)
    assert pod["volumes"][-1] == {
        "name": "model",
        "image": {"reference": "registry.example.com/models/llama:v1", "pullPolicy": "IfNotPresent"},
    }
    assert pod["containers"][0]["volumeMounts"][-1] == {"name": "model", "mountPath": "/data/model", "readOnly": True}
    assert "initContainers" not in pod
    assert _paths(ftj)["model_name_or_path"] == "/data/model"


def test_a_source_below_the_mount_is_the_model_path() -> None:
    ftj = _ftj({"model": {"image": IMAGE, "sourcePath": "/data/model/llama-3"}})
    assert _paths(ftj)["model_name_or_path"] == "/data/model/llama-3"


def test_copy_to_local_adds_the_loader_and_the_trainer_reads_the_copy() -> None:
    ftj = _ftj({"model": {"image": IMAGE, "copyToLocal": True, "localSizeLimit": "50Gi"}})
    pod = _pod_spec(ftj)
    (loader,) = pod["initContainers"]
    assert loader["name"] == "model-loader"
    assert loader["image"] == "docker.io/library/aidaptiv:vNXUN_2_05BA0"  # the trainer image by default
    assert container_command(loader, {}) == [
        "/bin/sh",
        "-c",
        oci.LOADER_SCRIPT,
        "model-loader",
        "/data/model",
        "/local/model",
    ]
    assert loader["volumeMounts"] == [
        {"name": "model", "mountPath": "/data/model", "readOnly": True},
        {"name": "model-local", "mountPath": "/local/model"},
    ]
    assert loader["resources"] == {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    assert loader["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert loader["securityContext"] == manifests.DEFAULT_SECURITY_CONTEXT
    assert {"name": "model-local", "emptyDir": {"sizeLimit": "50Gi"}} in pod["volumes"]
    # The trainer sees the copy only, not the image.
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "model-local", "mountPath": "/local/model"} in mounts
    assert all(m["name"] != "model" for m in mounts)
    assert _paths(ftj)["model_name_or_path"] == "/local/model"


def test_the_charts_model_loader_image_carries_the_model_itself() -> None:
    spec = {
        "model": {
            "sourcePath": "/models/llama",
            "copyToLocal": True,
            "localPath": "/data",
            "loader": {"image": {"repository": "registry.example.com/models/llama-loader", "tag": "v1"}},
        }
    }
    pod = _pod_spec(_ftj(spec))
    (loader,) = pod["initContainers"]
    assert loader["image"] == "registry.example.com/models/llama-loader:v1"
    assert loader["command"][-2:] == ["/models/llama", "/data"]
    assert all(v["name"] != "model" for v in pod["volumes"])


def test_a_copy_into_a_user_volume_mounts_that_volume_in_the_loader() -> None:
    volume = {"name": "nvme", "mountPath": "/mnt/nvme", "persistentVolumeClaim": {"claimName": "local-nvme"}}
    spec = {
        "volumes": [volume],
        "model": {"image": IMAGE, "copyToLocal": True, "localVolume": "nvme", "localPath": "/mnt/nvme/llama"},
    }
    pod = _pod_spec(_ftj(spec))
    (loader,) = pod["initContainers"]
    assert loader["volumeMounts"] == [
        {"name": "model", "mountPath": "/data/model", "readOnly": True},
        {"name": "data-nvme", "mountPath": "/mnt/nvme", "readOnly": False},
    ]
    assert all(v["name"] != "model-local" for v in pod["volumes"])


def test_a_model_path_of_the_users_is_kept_and_noted_when_it_points_elsewhere() -> None:
    elsewhere = {"model": {"image": IMAGE}, "envConfig": {"pathSettings": {"modelNameOrPath": "/mnt/other"}}}
    inside = {"model": {"image": IMAGE}, "envConfig": {"pathSettings": {"modelNameOrPath": "/data/model/sub"}}}
    body = finetunejob(elsewhere, name="x", namespace="ml")
    result = plan(body, Powers())
    assert result.ftj is not None and _paths(result.ftj)["model_name_or_path"] == "/mnt/other"
    assert result.model_note == (
        "envConfig.pathSettings.modelNameOrPath is '/mnt/other', outside '/data/model' where spec.model puts the "
        "model; the trainer reads the former (kept as written). Unset it to train on spec.model"
    )
    assert plan(finetunejob(inside, name="x", namespace="ml"), Powers()).model_note is None
    assert plan(finetunejob({}, name="x", namespace="ml"), Powers()).model_note is None


def test_the_loader_script_copies_hostile_paths_as_data(tmp_path: Path) -> None:
    source = tmp_path / "src $(touch pwned) 'q\" `id`\nline"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "model.safetensors").write_bytes(b"\x00weights")
    target = tmp_path / "dst; touch pwned2"
    argv = ["/bin/sh", "-c", oci.LOADER_SCRIPT, "model-loader", str(source), str(target)]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert (target / "config.json").read_text() == "{}"
    assert (target / "sub" / "model.safetensors").read_bytes() == b"\x00weights"
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert result.stdout.endswith("model-loader: done\n")


def test_the_loader_script_fails_with_cps_own_words(tmp_path: Path) -> None:
    argv = ["/bin/sh", "-c", oci.LOADER_SCRIPT, "model-loader", str(tmp_path / "missing"), str(tmp_path / "d")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0
    assert "missing" in result.stderr
    assert "done" not in result.stdout


# --- the output in the pod -------------------------------------------------------------------------------------------


def test_a_push_gets_its_tools_its_secret_and_its_environment() -> None:
    output = {"image": {**OUTPUT["image"], "pushSecretName": "regcred", "insecure": True}}
    ftj = _ftj({"output": output})
    pod = _pod_spec(ftj)
    assert [c["name"] for c in pod["initContainers"]] == ["push-tool-kit", "push-tool-crane"]
    kit = pod["initContainers"][0]
    assert kit["image"] == "ghcr.io/kitops-ml/kitops:v1.11.0"
    assert kit["command"] == ["cp", "--", "/usr/local/bin/kit", "/config/tools/kit"]
    assert kit["volumeMounts"] == [{"name": "push-tools", "mountPath": "/config/tools"}]
    assert pod["volumes"][-3:] == [
        {"name": "push-tools", "emptyDir": {}},
        {"name": "push-work", "emptyDir": {"sizeLimit": "200Gi"}},  # bounded by default: the node's disk
        {
            "name": "push-auth",
            "secret": {
                "secretName": "regcred",
                "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                "defaultMode": 0o440,
            },
        },
    ]
    env = _env(ftj)
    assert {k: v for k, v in env.items() if k.startswith("FTO_PUSH") or k == "DOCKER_CONFIG"} == {
        "FTO_PUSH_FORMAT": "ModelKit",
        "FTO_PUSH_REFERENCE": "registry.example.com/team/out:run-0f1e2d3c",
        "FTO_PUSH_INSECURE": "true",
        "FTO_PUSH_TOOLS": "/config/tools",
        "FTO_PUSH_WORK_DIR": "/config/push-work",
        "FTO_PUSH_WORK_LIMIT_KIB": str(200 * 1024 * 1024),
        "DOCKER_CONFIG": "/config/push-auth",
    }
    rules = manifests.job(ftj)["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [oci.EXIT_PUSH_FAILED]},
    }


def test_an_image_push_needs_crane_only_and_takes_the_users_tag_and_base() -> None:
    output = {
        "image": {
            **OUTPUT["image"],
            "format": "Image",
            "tag": "v2",
            "baseImage": "busybox:1.36",
            "workSizeLimit": "9Gi",
        }
    }
    ftj = _ftj({"output": output})
    assert [c["name"] for c in _pod_spec(ftj)["initContainers"]] == ["push-tool-crane"]
    assert {"name": "push-work", "emptyDir": {"sizeLimit": "9Gi"}} in _pod_spec(ftj)["volumes"]
    env = _env(ftj)
    assert (env["FTO_PUSH_REFERENCE"], env["FTO_PUSH_BASE_IMAGE"]) == (
        "registry.example.com/team/out:v2",
        "busybox:1.36",
    )
    assert "DOCKER_CONFIG" not in env
    assert env["FTO_PUSH_WORK_LIMIT_KIB"] == str(9 * 1024 * 1024)


@pytest.mark.parametrize(
    ("limit", "kib"), [("1Ki", "1"), ("1536", "1"), ("1500", "1"), ("1.5Gi", "1572864"), ("1e3", "0")]
)
def test_the_scratch_bound_reaches_the_entrypoint_in_whole_kib(limit: str, kib: str) -> None:
    ftj = _ftj({"output": {"image": {**OUTPUT["image"], "workSizeLimit": limit}}})
    assert _env(ftj)["FTO_PUSH_WORK_LIMIT_KIB"] == kib


def test_a_scratch_without_bound_is_asked_for_with_null() -> None:
    ftj = _ftj({"output": {"image": {**OUTPUT["image"], "workSizeLimit": None}}})
    assert {"name": "push-work", "emptyDir": {}} in _pod_spec(ftj)["volumes"]
    assert "FTO_PUSH_WORK_LIMIT_KIB" not in _env(ftj)


def test_a_finetunejob_that_pushes_trains_into_its_own_directory_of_output_dir() -> None:
    """Found by a probe: the push packed the whole outputDir, shared by default, so A's artifact carried
    B's weights, log and data to A's repository."""
    shared = {"envConfig": {"pathSettings": {"outputDir": "/mnt/data/output"}}}
    ftj = _ftj({**shared, "output": OUTPUT})
    assert _paths(ftj)["output_dir"] == "/mnt/data/output/run-0f1e2d3c"
    assert _paths(ftj)["log_name"] == "output.run-0f1e2d3c.log"
    env = _env(ftj)
    assert (env["FTO_OUTPUT_DIR"], env["FTO_LOG_FILE"]) == (
        "/mnt/data/output/run-0f1e2d3c",
        "/mnt/data/output/run-0f1e2d3c/output.run-0f1e2d3c.log",
    )
    # Without a push, outputDir is the trainer's, as in the chart.
    plain = _ftj(shared)
    assert _paths(plain)["output_dir"] == "/mnt/data/output"
    assert (_env(plain)["FTO_OUTPUT_DIR"], _env(plain)["FTO_LOG_FILE"]) == (
        "/mnt/data/output",
        "/mnt/data/output/output.run-0f1e2d3c.log",
    )


def test_every_rank_of_a_pushing_run_writes_to_the_runs_directory() -> None:
    ftj = _ftj({"numNodes": 2, "output": OUTPUT})
    for rank in (0, 1):
        paths = yaml.safe_load(configs.env_config(ftj, rank))["path_settings"]
        assert (paths["output_dir"], paths["log_name"]) == (
            "/mnt/data/output/run-0f1e2d3c",
            f"output.run-0f1e2d3c.rank-{rank}.log",
        )
    env = _env(ftj)
    assert env["FTO_OUTPUT_DIR"] == "/mnt/data/output/run-0f1e2d3c"
    assert env["FTO_LOG_FILE"] == "/mnt/data/output/run-0f1e2d3c/output.run-0f1e2d3c.rank-$(NODE_RANK).log"


def test_the_default_tag_is_the_name_and_the_uids_start_or_the_name_alone_without_a_uid() -> None:
    assert _env(_ftj({"output": OUTPUT}))["FTO_PUSH_REFERENCE"] == "registry.example.com/team/out:run-0f1e2d3c"
    unsaved = load_finetunejob(finetunejob({"output": OUTPUT}, name="run", namespace="ml"))  # `render` of a file
    assert _env(unsaved)["FTO_PUSH_REFERENCE"] == "registry.example.com/team/out:run"


def test_helpers_get_the_users_identity_but_never_the_users_powers() -> None:
    security = {"runAsUser": 1000, "privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}
    ftj = _ftj({"output": OUTPUT, "securityContext": security})
    for container in _pod_spec(ftj)["initContainers"]:
        assert container["securityContext"] == {**manifests.DEFAULT_SECURITY_CONTEXT, "runAsUser": 1000}


def test_nothing_oci_is_rendered_without_model_or_output() -> None:
    ftj = _ftj({})
    pod = _pod_spec(ftj)
    assert "initContainers" not in pod
    assert not any(k.startswith("FTO_PUSH") for k in _env(ftj))
    assert manifests.job(ftj)["spec"]["podFailurePolicy"]["rules"] == [manifests.DISRUPTION_IS_NO_FAILURE]


def test_every_example_with_oci_renders_without_shared_objects() -> None:
    """Each container owns its dicts: a later change to one (a patch, a merge) cannot reach another."""
    ftj = load_finetunejob(yaml.safe_load((ROOT / "examples" / "oci-model.yaml").read_text()))
    text = yaml.safe_dump(manifests.render(ftj))
    assert "&id" not in text


# --- what the pod says at its end ------------------------------------------------------------------------------------

PUSHED = (
    "verdict: succeeded\nreason: TrainingComplete\nexitCode: 0\nstep: 10\nloss: 0.5\nevidence: training complete!\n"
    f"outputReference: registry.example.com/team/out:run-0f1e2d3c@{DIGEST}\noutputDigest: {DIGEST}\n"
    "pushedTime: 2026-11-29T10:00:00Z\n"
)
PUSH_FAILED = (
    "verdict: failed\nreason: OutputPushFailed\nexitCode: 5\n"
    "evidence: training complete; push failed: crane: UNAUTHORIZED: authentication required\n"
)


def test_the_entrypoints_reference_gets_the_tag_back() -> None:
    said = (
        f"verdict: succeeded\noutputReference: registry.example.com/team/out@{DIGEST}\n"
        f"outputTag: registry.example.com/team/out:v1\noutputDigest: {DIGEST}\n"
    )
    assert pushed_output(said) == PushedOutput(f"registry.example.com/team/out:v1@{DIGEST}", DIGEST, None)
    odd = said.replace("outputTag: registry.example.com/team/out:v1", "outputTag: a b")
    assert pushed_output(odd) == PushedOutput(f"registry.example.com/team/out@{DIGEST}", DIGEST, None)


def test_a_pushed_output_is_read_in_due_form_only() -> None:
    assert pushed_output(PUSHED) == PushedOutput(
        f"registry.example.com/team/out:run-0f1e2d3c@{DIGEST}", DIGEST, "2026-11-29T10:00:00Z"
    )
    assert pushed_output(PUSHED.replace("pushedTime: 2026-11-29T10:00:00Z", "pushedTime: soon")).pushed_time is None
    for bad in (
        PUSHED.replace(f"outputDigest: {DIGEST}", "outputDigest: sha256:abc"),
        PUSHED.replace(f"@{DIGEST}\n", "@sha256:" + "f" * 64 + "\n"),  # pinned by another digest
        PUSHED.replace("outputReference: ", "outputReference: " + "x" * 1100),
        "verdict: succeeded\n",
        None,
    ):
        assert pushed_output(bad) is None


def test_a_failed_push_is_its_own_reason_even_when_the_log_says_complete() -> None:
    said = trainer_verdict_from_termination(PUSH_FAILED)
    assert said == TrainerVerdict(
        "failed", "training complete; push failed: crane: UNAUTHORIZED: authentication required", "OutputPushFailed"
    )
    pod = _pod("Failed", trainer={"exitCode": 5, "message": PUSH_FAILED})
    complete = Progress(verdict="complete", evidence="training complete!")
    assert trainer_verdict([pod], job_verdict(_job("Failed")), 1, Attempts(), complete) == said


def _pod(
    phase: str, trainer: dict[str, Any] | None = None, loader: dict[str, Any] | None = None, rank: int | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if trainer is not None:
        status["containerStatuses"] = [{"name": "trainer", "state": {"terminated": trainer}}]
    if loader is not None:
        status["initContainerStatuses"] = [{"name": "model-loader", "state": {"terminated": loader}}]
    labels = {} if rank is None else {"batch.kubernetes.io/job-completion-index": str(rank)}
    return {"metadata": {"name": "p", "creationTimestamp": "2026-11-29T10:00:00Z", "labels": labels}, "status": status}


def _job(phase: str) -> dict[str, Any]:
    kind = {"Failed": "Failed", "Succeeded": "Complete"}[phase]
    condition = {
        "type": kind,
        "status": "True",
        "reason": "PodFailurePolicy",
        "lastTransitionTime": "2026-11-29T10:00:00Z",
    }
    return {"metadata": {"name": "run"}, "spec": {}, "status": {"conditions": [condition]}}


def test_a_failed_model_copy_is_model_load_failed_with_the_copys_words() -> None:
    pod = _pod("Failed", loader={"exitCode": 1, "message": "cp: can't stat '/data/model/x': No such file\n"})
    expected = TrainerVerdict(
        "failed",
        "the model copy (model-loader) exited with code 1: cp: can't stat '/data/model/x': No such file",
        "ModelLoadFailed",
    )
    assert loader_failure(pod) == expected
    assert trainer_verdict([pod], job_verdict(_job("Failed")), 1, Attempts(), None) == expected
    assert loader_failure(_pod("Failed", loader={"exitCode": 0})) is None
    assert loader_failure(_pod("Failed", loader={"exitCode": 2})) == TrainerVerdict(
        "failed", "the model copy (model-loader) exited with code 2", "ModelLoadFailed"
    )


def test_a_model_copy_that_failed_before_its_restart_is_still_the_cause() -> None:
    """With restartPolicy OnFailure the kubelet runs the copy again: its failure is then in lastState."""
    pod = _pod("Pending")
    ended = {"terminated": {"exitCode": 3, "message": "no space left"}}
    pod["status"]["initContainerStatuses"] = [
        {"name": "push-tool-crane", "state": {"terminated": {"exitCode": 1}}},  # not the copy: not its cause
        {"name": "model-loader", "state": {"running": {}}, "lastState": ended},
    ]
    assert loader_failure(pod) == TrainerVerdict(
        "failed", "the model copy (model-loader) exited with code 3: no space left", "ModelLoadFailed"
    )


def test_a_pushed_output_needs_a_reference_pinned_by_its_digest_and_a_sane_length() -> None:
    assert pushed_output(f"verdict: succeeded\noutputDigest: {DIGEST}\n") is None
    assert pushed_output("verdict: succeeded\noutputReference: registry.example.com/a@sha256:x\n") is None
    name = "registry.example.com/" + "a" * (1024 - len("registry.example.com/") - len(DIGEST) - 1)
    at_limit = f"outputReference: {name}@{DIGEST}\noutputDigest: {DIGEST}\n"
    assert pushed_output(at_limit) == PushedOutput(f"{name}@{DIGEST}", DIGEST, None)
    assert pushed_output(at_limit.replace(name, name + "a")) is None
    tagged = at_limit.replace(name, "registry.example.com/a") + "outputTag: registry.example.com/a:v1@x\n"
    assert pushed_output(tagged) == PushedOutput(f"registry.example.com/a@{DIGEST}", DIGEST, None)


def test_only_a_succeeded_job_has_a_pushed_output() -> None:
    pod = _pod("Succeeded", trainer={"exitCode": 0, "message": PUSHED})
    repository = "registry.example.com/team/out"
    assert pushed([pod], job_verdict(_job("Succeeded")), repository) is not None
    assert pushed([pod], job_verdict(_job("Failed")), repository) is None
    assert pushed([pod], None, repository) is None
    assert pushed([pod], job_verdict(_job("Succeeded")), None) is None  # no push asked for
    assert pushed([pod], job_verdict(_job("Succeeded")), "registry.example.com/team/other") is None


def test_the_status_keeps_the_output_and_names_the_reason() -> None:
    now = datetime(2026, 11, 29, 10, 0, 1, tzinfo=UTC)
    output = PushedOutput(f"r/o:t@{DIGEST}", DIGEST, None)
    succeeded = Observation(1, FineTuneJobStatus(), _job("Succeeded"), "run", now, output=output)
    status = derive_status(succeeded)
    assert status.output is not None and (status.output.reference, status.output.digest) == (f"r/o:t@{DIGEST}", DIGEST)
    # Sticky: a later pass without the pod keeps what was recorded.
    assert derive_status(Observation(1, status, None, "run", now)).output == status.output
    failed = Observation(
        1, FineTuneJobStatus(), _job("Failed"), "run", now, trainer=trainer_verdict_from_termination(PUSH_FAILED)
    )
    assert (verdict(failed).phase, verdict(failed).reason) == ("Failed", "OutputPushFailed")


def test_a_group_whose_push_failed_is_not_trained_again() -> None:
    rank0 = _pod(
        "Failed", trainer={"exitCode": 5, "message": PUSH_FAILED, "finishedAt": "2026-11-29T10:00:00Z"}, rank=0
    )
    failure = first_failed_rank([rank0])
    assert retry(_job("Failed"), 2, Attempts(), 3, "c", failure) is None
    assert rank_verdict(failure, Attempts(), "f").reason == "OutputPushFailed"
    crashed = _pod("Failed", trainer={"exitCode": 1, "finishedAt": "2026-11-29T10:00:00Z"}, rank=0)
    assert retry(_job("Failed"), 2, Attempts(), 3, "c", first_failed_rank([crashed])) is not None


def test_a_rank_whose_model_copy_failed_is_named_with_its_container() -> None:
    rank1 = _pod(
        "Failed", loader={"exitCode": 1, "message": "cp: no space left", "finishedAt": "2026-11-29T10:00:00Z"}, rank=1
    )
    failure = first_failed_rank([rank1])
    assert failure is not None and failure.describe() == "rank 1's model-loader failed first (exit code 1)"
    assert rank_verdict(failure, Attempts(), "f") == TrainerVerdict(
        "failed", "rank 1's model-loader failed first (exit code 1): cp: no space left", "ModelLoadFailed"
    )


def test_the_example_is_valid_and_the_chart_style_values_are_refused_with_reasons() -> None:
    load_finetunejob(yaml.safe_load((ROOT / "examples" / "oci-model.yaml").read_text()))
    with pytest.raises(InvalidFineTuneJob, match="needs restartPolicy Never"):
        _ftj({"output": OUTPUT, "restartPolicy": "OnFailure"})


def test_the_charts_03_blocks_map_onto_model_and_output() -> None:
    values = yaml.safe_load((ROOT / "examples" / "chart-values" / "oci-values.yaml").read_text())
    assert oci_blocks(values) == {
        "model": {
            "image": {
                "reference": "registry.example.com/models/tinyllama-1.1b-chat:v1.0",
                "pullPolicy": "IfNotPresent",
            },
            "mountPath": "/data/model",
            "copyToLocal": True,
            "sourcePath": "/data/model",
            "localPath": "/data",
        },
        "output": {
            "image": {
                "repository": "registry.example.com/team/tinyllama-ft",
                "tag": "v1",
                "insecure": False,
                "format": "ModelPack",
                "pushSecretName": "regcred",
                "tools": {"kit": {"image": "ghcr.io/kitops-ml/kitops:v1.11.0", "path": "/usr/local/bin/kit"}},
            }
        },
    }
    converted = values_to_finetunejob(values)
    assert converted["spec"]["model"] == oci_blocks(values)["model"]
    assert oci_blocks({"modelImage": {"enabled": False}, "outputImage": None}) == {}


@pytest.mark.parametrize(
    ("reference", "ours"),
    [
        (f"registry.example.com/team/out:run-1@{DIGEST}", True),
        (f"registry.example.com/team/out@{DIGEST}", True),
        (f"registry.example.com/team/out:{'t' * 128}@{DIGEST}", True),
        (f"registry.example.com/team/out:{'t' * 129}@{DIGEST}", False),
        (f"registry.example.com/team/outer:v1@{DIGEST}", False),
        (f"registry.example.com/team/out/x:v1@{DIGEST}", False),
        (f"registry.example.com/team/out:v1:v2@{DIGEST}", False),
        (f"registry.example.com/team/out:.v1@{DIGEST}", False),
        (f"registry.example.com/team/out:v1@{DIGEST}x", False),
        (f"evil.example.com/registry.example.com/team/out:v1@{DIGEST}", False),
        ("registry.example.com/team/out:v1", False),
    ],
)
def test_a_pushed_reference_counts_only_in_the_requested_repository(reference: str, ours: bool) -> None:
    assert of_repository(reference, "registry.example.com/team/out") is ours
