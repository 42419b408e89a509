"""The entrypoint's push step, run for real: /bin/sh, crane (and kit when it exists), a real OCI registry.

The registry is go-containerregistry's in-memory one behind HTTP basic auth (`oci-registry`, built by
e2e/build_toolchain.py), on 127.0.0.1. Nothing here fakes a tool: only the trainer is a stand-in
script, which writes an output directory and the log line that makes the verdict `succeeded`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import secrets
import socket
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from finetune_operator.api.resource import load_finetunejob
from finetune_operator.render import manifests
from finetune_operator.render.entrypoint import (
    ENTRYPOINT,
    ENV_DOCKER_CONFIG,
    ENV_PUSH_BASE_IMAGE,
    ENV_PUSH_FORMAT,
    ENV_PUSH_INSECURE,
    ENV_PUSH_REFERENCE,
    ENV_PUSH_TOOLS,
    ENV_PUSH_WORK_DIR,
    ENV_PUSH_WORK_LIMIT_KIB,
    EXIT_PUSH_FAILED,
    PUSH_FORMAT_IMAGE,
    PUSH_FORMAT_MODELKIT,
    PUSH_FORMAT_MODELPACK,
    REASON_PUSH_FAILED,
    TERM_OUTPUT_DIGEST,
    TERM_OUTPUT_REFERENCE,
    TERM_OUTPUT_TAG,
    TERM_PUSHED_TIME,
)
from tests.kubelet import container_environment
from tests.rule_cases import finetunejob
from tests.toolchain import optional_tool, tool

USER = "trainer"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join(
    (
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
COMPLETE_LOG = (
    "[2026-09-07 10:54:02.745475] [Loss]:9.25\n"
    "[2026-09-07 10:54:10.691716] [PHISON END] Iteration: 0\n"
    "[2026-09-07 10:57:04.742171] [INFO] training complete!\n"
)
TRAINING_COMPLETE = "[2026-09-07 10:57:04.742171] [INFO] training complete!"
# What the stand-in trainer writes into outputDir: a small model, as a fine-tuning run leaves it.
OUTPUT_FILES = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 64}\n',
    "model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(256)) * 8,
    "tokenizer/tokenizer.json": b'{"version": "1.0"}\n',
}


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    password: str

    def get(self, path: str, accept: str = ACCEPT) -> tuple[int, bytes, dict[str, str]]:
        """GET /v2/<path> with basic auth; (status, body, headers), 4xx included."""
        request = urllib.request.Request(f"http://{self.host}/v2/{path}", headers={"Accept": accept})
        token = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry on a free port of 127.0.0.1 for this module, stopped by its pid afterwards."""
    binary = tool("oci-registry")
    password = secrets.token_urlsafe(18)
    errors = tmp_path_factory.mktemp("registry") / "stderr"
    with errors.open("w") as stderr:
        process = subprocess.Popen(
            [binary, "--port", "0", "--user", USER, "--password", password, "--quiet"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once it accepts connections
        if not line.startswith("listening on 127.0.0.1:"):
            pytest.fail(f"oci-registry did not start: {line!r} {errors.read_text()}")
        yield Registry(line.split()[-1], password)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def docker_config(tmp_path: Path, host: str, password: str) -> Path:
    """A directory holding config.json, mounted read-only like the push Secret."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    (directory / "config.json").chmod(0o400)
    directory.chmod(0o500)
    return directory


def push_tools(tmp_path: Path, *names: str) -> Path:
    """The directory of copied tool binaries the pod would have (links to the toolchain's)."""
    directory = tmp_path / "push-tools"
    directory.mkdir()
    for name in names:
        (directory / name).symlink_to(optional_tool(name) if name == "kit" else tool(name))
    return directory


@dataclass(frozen=True)
class Run:
    result: subprocess.CompletedProcess[str]
    summary: dict[str, str]
    termination: str
    output: Path


def run_entrypoint(
    tmp_path: Path,
    env: dict[str, str],
    trainer_exit: int = 0,
    output_name: str = "run",
    log: str = COMPLETE_LOG,
    postscript: str = "",
) -> Run:
    """Run the entrypoint with a stand-in trainer that writes OUTPUT_FILES into outputDir."""
    output = tmp_path / "out" / output_name
    content = tmp_path / "trainer-content"
    for name, data in OUTPUT_FILES.items():
        (content / name).parent.mkdir(parents=True, exist_ok=True)
        (content / name).write_bytes(data)
    (tmp_path / "trainer-log").write_text(log)
    trainer = tmp_path / "phisonai2"
    trainer.write_text(
        "#!/bin/sh\n"
        f'cp -R "{content}/." "$FTO_OUTPUT_DIR/"\n'
        f'cat "{tmp_path}/trainer-log" >> "$FTO_LOG_FILE"\n'
        f"exit {trainer_exit}\n"
    )
    trainer.chmod(0o755)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "prescript.sh").write_text("")
    (scripts / "postscript.sh").write_text(postscript)
    termination = tmp_path / "termination-log"
    work = tmp_path / "push-work"
    full_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "FTO_TRAINER": str(trainer),
        "FTO_OUTPUT_DIR": str(output),
        "FTO_LOG_FILE": str(output / "output.run-1234.log"),
        "FTO_ENV_CONFIG": "/config/env/env_config.yaml",
        "FTO_EXP_CONFIG": "/config/exp/exp_config.yaml",
        "FTO_PRESCRIPT": str(scripts / "prescript.sh"),
        "FTO_POSTSCRIPT": str(scripts / "postscript.sh"),
        "FTO_TERMINATION_LOG": str(termination),
        "FTO_LOG_DRAIN_SECONDS": "0",
        ENV_PUSH_WORK_DIR: str(work),
        **env,
    }
    result = subprocess.run(
        ["/bin/sh", "-c", ENTRYPOINT], env=full_env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    text = termination.read_text() if termination.exists() else ""
    summary = dict(line.partition(": ")[::2] for line in text.splitlines())
    work = Path(full_env[ENV_PUSH_WORK_DIR])
    if work.exists():  # the scratch copy of the output is removed after the push, whatever the outcome
        assert list(work.iterdir()) == []
    return Run(result, summary, text, output)


def push_env(
    tmp_path: Path,
    registry: Registry,
    push_format: str,
    reference: str,
    tools: tuple[str, ...] = ("crane",),
    password: str | None = None,
) -> dict[str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return {
        ENV_PUSH_FORMAT: push_format,
        ENV_PUSH_REFERENCE: reference,
        ENV_PUSH_INSECURE: "true",
        ENV_PUSH_TOOLS: str(push_tools(tmp_path, *tools)),
        ENV_DOCKER_CONFIG: str(docker_config(tmp_path, registry.host, password or registry.password)),
    }


def assert_pushed(run: Run, registry: Registry, repository: str, tag: str) -> dict[str, object]:
    """The termination message names what the registry serves for the tag, by its manifest digest."""
    assert run.result.returncode == 0, run.result.stdout + run.result.stderr
    summary = run.summary
    assert (summary["verdict"], summary["reason"], summary["exitCode"]) == ("succeeded", "TrainingComplete", "0")
    assert summary["evidence"] == TRAINING_COMPLETE
    status, body, headers = registry.get(f"{repository}/manifests/{tag}")
    assert status == 200, body
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert summary[TERM_OUTPUT_DIGEST] == digest == headers["Docker-Content-Digest"]
    assert summary[TERM_OUTPUT_REFERENCE] == f"{registry.host}/{repository}@{digest}"
    assert summary[TERM_OUTPUT_TAG] == f"{registry.host}/{repository}:{tag}"
    assert len(summary[TERM_PUSHED_TIME]) == 20 and summary[TERM_PUSHED_TIME].endswith("Z")
    # By digest too: the reference the status will carry resolves to the same bytes.
    assert registry.get(f"{repository}/manifests/{digest}")[1] == body
    assert registry.password not in run.termination + run.result.stdout + run.result.stderr
    assert f"pushed {registry.host}/{repository}@{digest}" in run.result.stdout
    manifest: dict[str, object] = json.loads(body)
    return manifest


def blob(registry: Registry, repository: str, digest: str) -> bytes:
    status, body, _ = registry.get(f"{repository}/blobs/{digest}", accept="*/*")
    assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == digest
    return body


def tar_members(data: bytes) -> dict[str, bytes]:
    """Regular files of a (possibly gzip-compressed) tar layer, by normalized name."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            extracted = archive.extractfile(member) if member.isfile() else None
            if extracted is not None:
                files[os.path.normpath(member.name)] = extracted.read()
    return files


def layers(manifest: dict[str, object]) -> list[dict[str, str]]:
    value = manifest["layers"]
    assert isinstance(value, list)
    return value


def config(manifest: dict[str, object]) -> dict[str, str]:
    value = manifest["config"]
    assert isinstance(value, dict)
    return value


def free_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- Image: a tar of outputDir appended by crane ------------------------------------------------------------


def test_image_push_reports_the_digest_the_registry_serves(tmp_path: Path, registry: Registry) -> None:
    reference = f"{registry.host}/models/llama-ft:run-1234"
    env = push_env(tmp_path, registry, PUSH_FORMAT_IMAGE, reference) | {"NODE_RANK": "0"}
    # The push comes after the postscript: what it adds to outputDir is pushed too.
    run = run_entrypoint(tmp_path, env, postscript='echo "merged" > "$FTO_OUTPUT_DIR/postscript.txt"\n')
    manifest = assert_pushed(run, registry, "models/llama-ft", "run-1234")
    assert manifest["mediaType"] == OCI_MANIFEST
    assert config(manifest)["mediaType"] == "application/vnd.oci.image.config.v1+json"
    (layer,) = layers(manifest)  # no base image: the output is the only layer
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    files = tar_members(blob(registry, "models/llama-ft", layer["digest"]))
    for name, data in OUTPUT_FILES.items():
        assert files[name] == data
    assert files["output.run-1234.log"] == COMPLETE_LOG.encode()
    assert files["postscript.txt"] == b"merged\n"
    assert "pushing" in run.result.stdout and "training complete!" in run.result.stdout


def test_image_push_onto_a_base_image_keeps_its_layers(tmp_path: Path, registry: Registry) -> None:
    base_ref = f"{registry.host}/models/base:v1"
    first = run_entrypoint(tmp_path / "base", push_env(tmp_path / "base", registry, PUSH_FORMAT_IMAGE, base_ref))
    base = assert_pushed(first, registry, "models/base", "v1")
    reference = f"{registry.host}/models/on-base:run-1"
    env = push_env(tmp_path, registry, PUSH_FORMAT_IMAGE, reference) | {ENV_PUSH_BASE_IMAGE: base_ref}
    manifest = assert_pushed(run_entrypoint(tmp_path, env), registry, "models/on-base", "run-1")
    assert [layer["digest"] for layer in layers(manifest)][:-1] == [layer["digest"] for layer in layers(base)]
    assert len(layers(manifest)) == len(layers(base)) + 1


def rendered_push(tmp_path: Path, registry: Registry, name: str, uid: str, shared: Path) -> dict[str, str]:
    """The entrypoint's environment as the operator renders it (and the kubelet expands it) for a
    FineTuneJob that pushes format Image to the test registry from an outputDir shared with others."""
    spec = {
        "envConfig": {"pathSettings": {"outputDir": str(shared)}},
        "output": {"image": {"repository": f"{registry.host}/models/{name}", "format": "Image", "insecure": True}},
    }
    ftj = load_finetunejob(finetunejob(spec, name=name) | {"metadata": {"name": name, "uid": uid}})
    env = container_environment(manifests.job(ftj)["spec"]["template"]["spec"]["containers"][0], {})
    pushed = push_env(tmp_path, registry, PUSH_FORMAT_IMAGE, env[ENV_PUSH_REFERENCE])
    ours = ("FTO_OUTPUT_DIR", "FTO_LOG_FILE", ENV_PUSH_WORK_LIMIT_KIB)
    return pushed | {key: env[key] for key in ours}


def test_a_push_packs_its_own_run_and_nothing_of_another_sharing_output_dir(tmp_path: Path, registry: Registry) -> None:
    """Found by a probe: the push packed the whole outputDir (one path for every FineTuneJob by default),
    so A's artifact carried B's weights, log and data to A's repository."""
    shared = tmp_path / "shared-output"
    other = rendered_push(tmp_path / "b", registry, "b", "1bbbbbbb-uid", shared)
    run_entrypoint(tmp_path / "b", other | {ENV_PUSH_FORMAT: ""}, postscript='echo b > "$FTO_OUTPUT_DIR/b-only.txt"\n')
    mine = rendered_push(tmp_path / "a", registry, "a", "0aaaaaaa-uid", shared)
    run = run_entrypoint(tmp_path / "a", mine)
    manifest = assert_pushed(run, registry, "models/a", "a-0aaaaaaa")
    files = tar_members(blob(registry, "models/a", layers(manifest)[0]["digest"]))
    assert sorted(files) == sorted([*OUTPUT_FILES, "output.a-0aaaaaaa.log"])
    assert sorted(path.name for path in shared.iterdir()) == ["a-0aaaaaaa", "b-1bbbbbbb"]
    assert (shared / "b-1bbbbbbb" / "b-only.txt").read_text() == "b\n"


# -- ModelKit and ModelPack: kit init/pack/push, the digest from the registry -------------------------------


@pytest.mark.parametrize(
    ("push_format", "config_type", "layer_prefix", "artifact_type"),
    [
        (
            PUSH_FORMAT_MODELKIT,
            "application/vnd.kitops.modelkit.config.v1+json",
            "application/vnd.kitops.modelkit.",
            None,  # not asserted: kit versions differ
        ),
        (
            PUSH_FORMAT_MODELPACK,
            "application/vnd.cncf.model.config.v1+json",
            "application/vnd.cncf.model.",
            "application/vnd.cncf.model.manifest.v1+json",  # the CNCF model-spec's
        ),
    ],
)
def test_kit_push_reports_the_digest_the_registry_serves(
    tmp_path: Path, registry: Registry, push_format: str, config_type: str, layer_prefix: str, artifact_type: str | None
) -> None:
    repository = f"models/{push_format.lower()}"
    reference = f"{registry.host}/{repository}:run-1234"
    env = push_env(tmp_path, registry, push_format, reference, tools=("kit", "crane"))
    run = run_entrypoint(tmp_path, env)
    manifest = assert_pushed(run, registry, repository, "run-1234")
    assert manifest.get("mediaType", OCI_MANIFEST) == OCI_MANIFEST
    assert config(manifest)["mediaType"] == config_type
    if artifact_type is not None:
        assert manifest["artifactType"] == artifact_type
    assert layers(manifest) and all(layer["mediaType"].startswith(layer_prefix) for layer in layers(manifest))
    contents: list[bytes] = []  # the files in tar layers, and raw layers (a file each)
    for layer in layers(manifest):
        data = blob(registry, repository, layer["digest"])
        if ".tar" in layer["mediaType"]:
            contents.extend(tar_members(data).values())
        else:
            contents.append(data)
    assert OUTPUT_FILES["model.safetensors"] in contents
    assert OUTPUT_FILES["config.json"] in contents
    assert (run.output / "Kitfile").is_file()  # generated by kit init, packed as the ModelKit's config


def test_kit_missing_from_the_tools_is_a_push_failure(tmp_path: Path, registry: Registry) -> None:
    """Runs everywhere: the pod's tool copy lacks kit (crane only) → OutputPushFailed naming the path."""
    reference = f"{registry.host}/models/no-kit:run-1"
    run = run_entrypoint(tmp_path, push_env(tmp_path, registry, PUSH_FORMAT_MODELKIT, reference))
    assert run.result.returncode == EXIT_PUSH_FAILED
    assert run.summary["reason"] == REASON_PUSH_FAILED
    assert run.summary["evidence"].startswith("training complete; push failed: kit not found at ")
    assert registry.get("models/no-kit/manifests/run-1")[0] == 404


# -- failures: the tool's own words, the training's success still visible, no secret ----------------------


def assert_push_failed(run: Run, registry: Registry) -> str:
    assert run.result.returncode == EXIT_PUSH_FAILED, run.result.stdout + run.result.stderr
    assert (run.summary["verdict"], run.summary["reason"]) == ("failed", REASON_PUSH_FAILED)
    assert run.summary["exitCode"] == str(EXIT_PUSH_FAILED)
    assert run.summary["step"] == "1" and run.summary["loss"] == "9.25"
    assert not {TERM_OUTPUT_DIGEST, TERM_OUTPUT_REFERENCE, TERM_PUSHED_TIME} & run.summary.keys()
    evidence = run.summary["evidence"]
    assert evidence.startswith("training complete; push failed: crane: ")
    assert f"the trained output stays at {run.output}" in run.result.stdout
    assert registry.password not in run.termination + run.result.stdout + run.result.stderr
    for name, data in OUTPUT_FILES.items():  # the output is still there to push again
        assert (run.output / name).read_bytes() == data
    return evidence


def test_wrong_password_is_output_push_failed_with_the_registrys_words(tmp_path: Path, registry: Registry) -> None:
    reference = f"{registry.host}/models/denied:run-1"
    wrong = "not-" + registry.password
    run = run_entrypoint(tmp_path, push_env(tmp_path, registry, PUSH_FORMAT_IMAGE, reference, password=wrong))
    evidence = assert_push_failed(run, registry)
    assert "401 Unauthorized" in evidence
    assert wrong not in run.termination + run.result.stdout + run.result.stderr
    assert registry.get("models/denied/manifests/run-1")[0] == 404


def test_unreachable_registry_is_output_push_failed(tmp_path: Path, registry: Registry) -> None:
    reference = f"127.0.0.1:{free_closed_port()}/models/nowhere:run-1"
    run = run_entrypoint(tmp_path, push_env(tmp_path, registry, PUSH_FORMAT_IMAGE, reference))
    assert "connection refused" in assert_push_failed(run, registry)


# -- when there is no push ----------------------------------------------------------------------------------


def test_a_failed_training_pushes_nothing(tmp_path: Path, registry: Registry) -> None:
    reference = f"{registry.host}/models/failed:run-1"
    run = run_entrypoint(tmp_path, push_env(tmp_path, registry, PUSH_FORMAT_IMAGE, reference), trainer_exit=7)
    assert run.result.returncode == 7
    assert (run.summary["verdict"], run.summary["reason"]) == ("failed", "TrainerExitCode")
    assert "pushing" not in run.result.stdout and TERM_OUTPUT_DIGEST not in run.summary
    assert registry.get("models/failed/manifests/run-1")[0] == 404
    # exit 0 without `training complete!` is no success either
    run = run_entrypoint(
        tmp_path / "incomplete", push_env(tmp_path / "incomplete", registry, "Image", reference), log=""
    )
    assert run.summary["reason"] == "TrainingIncomplete"
    assert registry.get("models/failed/manifests/run-1")[0] == 404


def test_a_failed_postscript_pushes_nothing(tmp_path: Path, registry: Registry) -> None:
    reference = f"{registry.host}/models/post:run-1"
    run = run_entrypoint(tmp_path, push_env(tmp_path, registry, PUSH_FORMAT_IMAGE, reference), postscript="exit 9\n")
    assert (run.result.returncode, run.summary["reason"]) == (9, "PostscriptFailed")
    assert registry.get("models/post/manifests/run-1")[0] == 404


def test_only_rank_zero_pushes(tmp_path: Path, registry: Registry) -> None:
    reference = f"{registry.host}/models/ranks:run-1"
    run = run_entrypoint(tmp_path, push_env(tmp_path, registry, PUSH_FORMAT_IMAGE, reference) | {"NODE_RANK": "1"})
    assert run.result.returncode == 0
    assert (run.summary["verdict"], run.summary["reason"]) == ("succeeded", "TrainingComplete")
    assert TERM_OUTPUT_DIGEST not in run.summary
    assert "rank 1 does not push" in run.result.stdout
    assert registry.get("models/ranks/manifests/run-1")[0] == 404


def test_no_push_format_no_push(tmp_path: Path, registry: Registry) -> None:
    reference = f"{registry.host}/models/off:run-1"
    env = push_env(tmp_path, registry, PUSH_FORMAT_IMAGE, reference) | {ENV_PUSH_FORMAT: ""}
    run = run_entrypoint(tmp_path, env)
    assert run.result.returncode == 0 and TERM_OUTPUT_DIGEST not in run.summary
    assert registry.get("models/off/manifests/run-1")[0] == 404


# -- hostile text stays data --------------------------------------------------------------------------------


HOSTILE = ["$(touch {pwned})", "`touch {pwned}`", "'; touch {pwned}; '", '"; touch {pwned}; "', "a b\nc\td"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_output_dir_is_pushed_as_data(tmp_path: Path, registry: Registry, text: str) -> None:
    pwned = tmp_path / "pwned"
    tag = f"hostile-{HOSTILE.index(text)}"
    reference = f"{registry.host}/models/hostile:{tag}"
    env = push_env(tmp_path, registry, PUSH_FORMAT_IMAGE, reference)
    env[ENV_PUSH_WORK_DIR] = str(tmp_path / f"scratch, {text.format(pwned=pwned)}")  # crane splits at commas
    run = run_entrypoint(tmp_path, env, output_name=text.format(pwned=pwned))
    manifest = assert_pushed(run, registry, "models/hostile", tag)
    files = tar_members(blob(registry, "models/hostile", layers(manifest)[0]["digest"]))
    assert files["model.safetensors"] == OUTPUT_FILES["model.safetensors"]
    assert not pwned.exists()


HOSTILE_REFERENCES = [
    "{host}/models/x:$(touch {pwned})",
    "{host}/models/x:`touch {pwned}`",
    "{host}/models/x:t'; touch {pwned}; '",
    '{host}/models/x:t"; touch {pwned}; "',
    "{host}/models/x:t\noutputDigest: sha256:" + "0" * 64,
    "--insecure=false --new_tag={host}/models/x:t",
    "{host}/models/x y:t",
]


def assert_refused_as_data(run: Run, registry: Registry, pwned: Path) -> None:
    assert run.result.returncode == EXIT_PUSH_FAILED, run.result.stdout + run.result.stderr
    assert run.summary["reason"] == REASON_PUSH_FAILED
    assert run.termination.count("\n") == 6  # the six lines of a failure: nothing injected
    assert TERM_OUTPUT_DIGEST not in run.summary
    assert not pwned.exists()
    assert registry.get("models/x/tags/list")[0] == 404


@pytest.mark.parametrize("reference", HOSTILE_REFERENCES)
def test_hostile_reference_fails_as_data(tmp_path: Path, registry: Registry, reference: str) -> None:
    pwned = tmp_path / "pwned"
    text = reference.format(host=registry.host, pwned=pwned)
    run = run_entrypoint(tmp_path, push_env(tmp_path, registry, PUSH_FORMAT_IMAGE, text))
    assert_refused_as_data(run, registry, pwned)
    assert run.summary["evidence"].startswith("training complete; push failed: crane: ")


def test_hostile_reference_fails_as_data_with_kit(tmp_path: Path, registry: Registry) -> None:
    for index, reference in enumerate(HOSTILE_REFERENCES):
        case = tmp_path / str(index)
        pwned = case / "pwned"
        text = reference.format(host=registry.host, pwned=pwned)
        env = push_env(case, registry, PUSH_FORMAT_MODELKIT, text, tools=("kit", "crane"))
        assert_refused_as_data(run_entrypoint(case, env), registry, pwned)
