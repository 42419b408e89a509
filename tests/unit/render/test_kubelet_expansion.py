"""User text reaches the container as written, through the kubelet's `$(VAR)` and `$$` expansion.

Found by a probe: `outputDir: /mnt/data/run$$1` stayed verbatim in env_config.yaml but became `run$1` in
FTO_OUTPUT_DIR and FTO_LOG_FILE, so the entrypoint judged another log than the trainer wrote; and the
entrypoint's own `fto-push.$$` became `fto-push.$`. tests/kubelet.py does what the kubelet does.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from finetune_operator.api.base import RANK_PLACEHOLDER
from finetune_operator.api.resource import FineTuneJob, InvalidFineTuneJob, load_finetunejob
from finetune_operator.render import configs, oci
from finetune_operator.render.entrypoint import ENTRYPOINT
from finetune_operator.render.expansion import literal
from finetune_operator.render.manifests import render
from tests.kubelet import container_command, container_environment, expand
from tests.rule_cases import finetunejob

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# Text rich in what the kubelet reads: dollars, references to variables the container defines, brackets.
kubelet_words = st.sampled_from(
    ["$", "$$", "$(", ")", "(", "$(NODE_RANK)", "$(FTO_OUTPUT_DIR)", "$(PATH)", "$(nope)", "$$(NODE_RANK)", "é", "/"]
)
text = st.lists(st.one_of(st.text(max_size=4), kubelet_words), max_size=10).map("".join)


KUBELET_VARIABLES = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}


@pytest.mark.parametrize(
    ("given", "expanded"),
    [
        ("$(VAR_A)-$(VAR_A)", "A-A"),
        ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
        ("f000-$$VAR_A", "f000-$VAR_A"),
        ("foo\\$(VAR_C)bar", "foo\\Cbar"),
        ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
        ("$(VAR_REF)", "$(VAR_A)"),
        ("foo$(VAR_EMPTY)bar", "foobar"),
        ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
        ("$?_boo_$!", "$?_boo_$!"),
        ("$(VAR_DNE)", "$(VAR_DNE)"),
        ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
        ("$$$$$$$(VAR_A)", "$$$A"),
        ("${VAR_A}", "${VAR_A}"),
        ("$(VAR_C)_______$(", "C_______$("),
        ("$(VAR_A)foobarzab$", "Afoobarzab$"),
        ("--$($($($($--", "--$($($($($--"),
        ("$(foo$$var)", "$(foo$$var)"),
        ("$é$(VAR_A)", "$éA"),
    ],
)
def test_the_expansion_of_the_tests_is_the_kubelets(given: str, expanded: str) -> None:
    """Cases of the Go implementation's own tests (expand_test.go), and a character beyond ASCII."""
    assert expand(given, KUBELET_VARIABLES) == expanded


@given(words=text)
@PROPERTY
def test_literal_text_is_what_the_kubelet_passes_on(words: str) -> None:
    assert expand(literal(words), {"NODE_RANK": "3", "FTO_OUTPUT_DIR": "/x", "PATH": "/bin"}) == words


def _stored(spec: dict[str, Any], name: str = "run") -> FineTuneJob | None:
    try:
        return load_finetunejob(finetunejob(spec, name=name, namespace="ml") | {})
    except InvalidFineTuneJob:
        return None


def _trainer(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return container


@given(output=text, log=text, env_path=text, nodes=st.sampled_from([1, 2]), rank=st.sampled_from(["0", "1"]))
@PROPERTY
def test_user_paths_reach_the_trainers_environment_as_written(
    output: str, log: str, env_path: str, nodes: int, rank: str
) -> None:
    paths = {"outputDir": "/" + output, "logName": (log or "l") + "x.log", "multiNodeEnvPath": "/" + env_path}
    ftj = _stored({"numNodes": nodes, "envConfig": {"pathSettings": paths}})
    assume(ftj is not None)
    assert ftj is not None
    ftj.metadata.uid = "0123456789"
    job = render(ftj)[-2]
    env = container_environment(_trainer(job), {"NODE_RANK": rank, "PET_NODE_RANK": rank})
    assert env["FTO_OUTPUT_DIR"] == paths["outputDir"]
    assert env["FTO_LOG_FILE"] == configs.log_file(ftj, None if nodes == 1 else rank)
    if nodes > 1:
        assert env["FTO_MULTI_NODE_ENV_FILE"] == f"{paths['multiNodeEnvPath']}.rank-{rank}"
        # The ConfigMap's one env_config, with this rank's number where the entrypoint's sed puts it.
        assert (env["FTO_ENV_CONFIG_TEMPLATE"], env["FTO_ENV_CONFIG"]) == (
            "/config/env/env_config.yaml",
            "/run/finetune-operator/env_config.yaml",
        )
        template = render(ftj)[-1]["data"]["env_config.yaml"]
        assert template.replace(RANK_PLACEHOLDER, rank) == configs.env_config(ftj, rank)


def test_the_probes_output_dir_reaches_the_entrypoint_as_written() -> None:
    ftj = _stored({"envConfig": {"pathSettings": {"outputDir": "/mnt/data/run$$1"}}})
    assert ftj is not None
    ftj.metadata.uid = "0123456789"
    container = _trainer(render(ftj)[0])
    assert container["env"][:2] == [
        {"name": "FTO_OUTPUT_DIR", "value": "/mnt/data/run$$$$1"},
        {"name": "FTO_LOG_FILE", "value": "/mnt/data/run$$$$1/output.run-01234567.log"},
    ]
    env = container_environment(container, {})
    assert (env["FTO_OUTPUT_DIR"], env["FTO_LOG_FILE"]) == (
        "/mnt/data/run$$1",
        "/mnt/data/run$$1/output.run-01234567.log",
    )


def test_the_entrypoint_reaches_the_shell_as_written() -> None:
    ftj = _stored({})
    assert ftj is not None
    job = render(ftj)[0]
    container = _trainer(job)
    assert "fto-push.$$" in ENTRYPOINT
    command = container_command(container, container_environment(container, {}))
    assert command == ["/bin/sh", "-c", ENTRYPOINT]


@given(source=text, local=text, tool=text)
@PROPERTY
def test_the_model_copy_and_tool_paths_reach_their_commands_as_written(source: str, local: str, tool: str) -> None:
    spec = {
        "model": {"sourcePath": "/mnt/data/" + source, "copyToLocal": True, "localPath": "/local/" + local},
        "volumes": [{"name": "data", "mountPath": "/mnt/data", "nfs": {"server": "nfs.local", "path": "/x"}}],
        "output": {
            "image": {
                "repository": "registry.example.com/team/m",
                "tools": {"kit": {"image": "mirror.local/kit:v1", "path": "/bin/" + tool}},
            }
        },
    }
    ftj = _stored(spec)
    assume(ftj is not None)
    assert ftj is not None
    init = {c["name"]: c for c in render(ftj)[0]["spec"]["template"]["spec"]["initContainers"]}
    loader = container_command(init["model-loader"], {})
    assert loader[-2:] == [ftj.spec.model.source(), ftj.spec.model.local_path]  # type: ignore[union-attr]
    assert loader[2] == oci.LOADER_SCRIPT
    assert container_command(init["push-tool-kit"], {})[2] == "/bin/" + tool
