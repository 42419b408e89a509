"""The renderer's parts, each on its own: defaults of the attempt, user volumes, the securityContext
merge and the privileges it grants, the YAML writer byte for byte, the plan of a FineTuneJob that
cannot render, and the entrypoint's constants filled in."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_operator.api.base import RANK_PLACEHOLDER
from finetune_operator.api.resource import FineTuneJob, load_finetunejob
from finetune_operator.render import configs, entrypoint, manifests
from finetune_operator.render import plan as plan_module
from finetune_operator.render.configs import dump_yaml
from finetune_operator.render.manifests import DEFAULT_SECURITY_CONTEXT, privileges, security_context
from finetune_operator.render.objects import config_map_name
from finetune_operator.render.plan import Plan, Powers, plan
from tests.rule_cases import finetunejob

UID = "0f1e2d3c-4b5a-4968-8776-65544332211f"


def _model(spec: dict[str, Any], name: str = "run") -> FineTuneJob:
    body = finetunejob(spec, name=name, namespace="ml")
    body["metadata"]["uid"] = UID
    return load_finetunejob(body)


def test_the_first_attempt_is_the_default() -> None:
    ftj = _model({"numNodes": 2, "expConfig": {"processSettings": {"numGpus": 1}}})
    assert config_map_name(ftj) == "run-config-0f1e2d3c"
    assert config_map_name(ftj, 2) == "run-config-0f1e2d3c-2"
    assert manifests.config_map(ftj)["metadata"]["name"] == "run-config-0f1e2d3c"
    job = manifests.job(ftj)
    assert job["metadata"]["annotations"]["finetune.aidaptiv.io/attempt"] == "1"
    assert {v["configMap"]["name"] for v in job["spec"]["template"]["spec"]["volumes"] if "configMap" in v} == {
        "run-config-0f1e2d3c"
    }


def test_user_volumes_and_their_mounts() -> None:
    volumes = [
        {"name": "models", "mountPath": "/mnt/models", "readOnly": True, "persistentVolumeClaim": {"claimName": "pvc"}},
        {"name": "out", "mountPath": "/mnt/out", "subPath": "runs/a", "nfs": {"server": "nfs.local", "path": "/x"}},
    ]
    pod = manifests.job(_model({"volumes": volumes}))["spec"]["template"]["spec"]
    assert [v for v in pod["volumes"] if v["name"].startswith("data-")] == [
        {"name": "data-models", "persistentVolumeClaim": {"claimName": "pvc", "readOnly": True}},
        {"name": "data-out", "nfs": {"server": "nfs.local", "path": "/x", "readOnly": False}},
    ]
    mounts = pod["containers"][0]["volumeMounts"]
    assert [m for m in mounts if m["name"].startswith("data-")] == [
        {"name": "data-models", "mountPath": "/mnt/models", "readOnly": True},
        {"name": "data-out", "mountPath": "/mnt/out", "readOnly": False, "subPath": "runs/a"},
    ]


def test_the_security_context_is_the_defaults_overridden_key_by_key() -> None:
    assert security_context({}) == DEFAULT_SECURITY_CONTEXT
    assert security_context({"runAsUser": 1000, "capabilities": {"drop": ["NET_RAW"]}}) == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["NET_RAW"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 1000,
    }
    # Privileged needs escalation: the default goes, unless the user said so themselves.
    assert "allowPrivilegeEscalation" not in security_context({"privileged": True})
    assert security_context({"privileged": True, "allowPrivilegeEscalation": True})["allowPrivilegeEscalation"] is True


def test_the_security_context_shares_nothing_with_the_defaults_or_the_spec() -> None:
    given = {"capabilities": {"add": ["NET_ADMIN"]}}
    defaults = copy.deepcopy(DEFAULT_SECURITY_CONTEXT)
    merged = security_context(given)
    merged["capabilities"]["add"].append("SYS_ADMIN")
    plain = security_context({})
    plain["capabilities"]["drop"].append("NONE")
    plain["seccompProfile"]["type"] = "Unconfined"
    assert given == {"capabilities": {"add": ["NET_ADMIN"]}}
    assert defaults == DEFAULT_SECURITY_CONTEXT


@pytest.mark.parametrize(
    ("given", "found"),
    [
        ({}, []),
        ({"privileged": False, "capabilities": {"drop": ["ALL"]}}, []),
        ({"privileged": "true"}, []),  # not the boolean: the API server refuses it anyway
        ({"privileged": True}, ["privileged: true"]),
        ({"capabilities": {"add": ["NET_ADMIN"]}}, ["capabilities.add: ['NET_ADMIN']"]),
        ({"capabilities": {"add": []}}, []),
        ({"capabilities": ["add"]}, []),
        (
            {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
            ["privileged: true", "capabilities.add: ['SYS_ADMIN']"],
        ),
    ],
)
def test_privileges(given: dict[str, Any], found: list[str]) -> None:
    assert privileges(given) == found


def test_the_yaml_writer_byte_for_byte() -> None:
    data = {
        "z": "first",  # keys in the given order
        "path": "/mnt/é",  # unicode written as it is
        "prompt": "x\u2028y é",  # an odd line break: double-quoted, everything escaped
        "after": "ü",  # and unicode as it is again after that
        "script": "echo a\necho b\n",
        "long": "word " * 30,
        "list": [1, "0"],
    }
    assert dump_yaml(data) == (
        "z: first\n"
        "path: /mnt/é\n"
        'prompt: "x\\Ly \\xE9"\n'
        "after: ü\n"
        "script: |\n  echo a\n  echo b\n"
        f"long: '{'word ' * 30}'\n"
        "list:\n- 1\n- '0'\n"
    )


@pytest.mark.parametrize("text", ["a\x85" + "word " * 1000, "\u2029" + "é " * 3000])
def test_text_with_odd_line_breaks_is_written_as_pyyaml_writes_it_without_unicode(text: str) -> None:
    """Long enough to be folded: the writer changes nothing of PyYAML's double quotes but the escapes."""
    ours = dump_yaml({"k": text})
    plain = yaml.dump({"k": text}, Dumper=yaml.SafeDumper, allow_unicode=False, width=4096)
    assert ours == plain
    assert yaml.safe_load(ours) == {"k": text}


def test_a_finetunejob_that_cannot_render_is_a_problem_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ftj: FineTuneJob) -> list[dict[str, Any]]:
        raise ValueError("x" * 400)

    monkeypatch.setattr(plan_module, "render", broken)
    body = finetunejob({}, name="run", namespace="ml")
    assert plan(body, Powers()) == Plan(problems=["the FineTuneJob could not be rendered: ValueError: " + "x" * 300])


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            "ds:\n  data_path: org/d\x01\n",
            "spec.trainDataConfig: trainDataConfig is not valid YAML: the control character U+0001 at line 2, "
            "column 19 cannot be in YAML text (write it escaped inside double quotes, as \\x01)",
        ),
        (
            "ds: {data_path: x}\n\x9f",
            "spec.trainDataConfig: trainDataConfig is not valid YAML: the control character U+009F at line 2, "
            "column 1 cannot be in YAML text (write it escaped inside double quotes, as \\x9F)",
        ),
        (
            "ds: {data_path: \ufffe}",
            "spec.trainDataConfig: trainDataConfig is not valid YAML: the character U+FFFE at line 1, "
            "column 17 cannot be in YAML text (write it escaped inside double quotes, as \\uFFFE)",
        ),
    ],
)
def test_a_character_yaml_cannot_hold_in_train_data_config_is_named_where_it_is(raw: str, problem: str) -> None:
    """Found by a probe: such a FineTuneJob ended InvalidSpec with "could not be rendered: ReaderError"."""
    assert plan(finetunejob({"trainDataConfig": raw}, name="run", namespace="ml"), Powers()) == Plan(problems=[problem])


def test_a_privileged_trainer_is_a_problem_unless_allowed() -> None:
    body = finetunejob({"securityContext": {"privileged": True}}, name="run", namespace="ml")
    refused = plan(body, Powers())
    assert refused.ftj is None and len(refused.problems) == 1
    assert refused.problems[0].startswith("spec.securityContext: ")
    allowed = plan(body, Powers(privileged=True))
    assert (allowed.problems, allowed.ftj is not None) == ([], True)


@pytest.mark.parametrize(
    ("context", "found"),
    [
        ({"privileged": True}, ["privileged: true"]),
        ({"capabilities": {"add": ["NET_ADMIN"], "drop": []}}, ["capabilities.add: ['NET_ADMIN']"]),
        ({"seccompProfile": {"type": "Unconfined"}}, ["seccompProfile.type: Unconfined"]),
        ({"appArmorProfile": {"type": "Unconfined"}}, ["appArmorProfile.type: Unconfined"]),
        ({"seLinuxOptions": {"type": "spc_t"}}, ["seLinuxOptions.type: spc_t"]),
        (
            {"seLinuxOptions": {"user": "system_u", "role": "system_r"}},
            ["seLinuxOptions.user: system_u", "seLinuxOptions.role: system_r"],
        ),
        ({"procMount": "Unmasked"}, ["procMount: Unmasked"]),
        ({"windowsOptions": {"hostProcess": True}}, ["windowsOptions.hostProcess: true"]),
        # What baseline allows is the user's choice (the vendor image may need root).
        ({"runAsUser": 0, "allowPrivilegeEscalation": True, "capabilities": {"drop": []}}, []),
        ({"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}, []),
        ({"appArmorProfile": {"type": "RuntimeDefault"}, "seLinuxOptions": {"type": "container_t", "level": "s0"}}, []),
        ({"procMount": "Default", "seccompProfile": "odd", "seLinuxOptions": {"type": ""}}, []),
    ],
)
def test_what_pod_security_baseline_refuses_is_a_power(context: dict[str, Any], found: list[str]) -> None:
    assert manifests.privileges(context) == found


def test_a_baseline_refusal_is_a_problem_unless_allowed() -> None:
    body = finetunejob({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}, name="run", namespace="ml")
    (problem,) = plan(body, Powers()).problems
    assert problem.startswith("spec.securityContext: seccompProfile.type: Unconfined gives the trainer powers")
    assert "--allow-privileged" in problem
    assert plan(body, Powers(privileged=True)).problems == []


@pytest.mark.parametrize(
    ("tolerations", "found"),
    [
        ([{"operator": "Exists"}], ["a toleration with operator Exists and no key (every taint)"]),
        (
            [{"operator": "Exists", "effect": "NoSchedule"}],
            ["a toleration with operator Exists and no key (every taint)"],
        ),
        (
            [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
            ["a toleration of node-role.kubernetes.io/control-plane"],
        ),
        (
            [{"key": "node-role.kubernetes.io/master", "operator": "Exists"}],
            ["a toleration of node-role.kubernetes.io/master"],
        ),
        ([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], []),
        ([{"key": "dedicated", "operator": "Equal", "value": "ai100"}], []),
        ([], []),
    ],
)
def test_tolerations_of_every_taint_or_the_control_plane_are_found(
    tolerations: list[dict[str, Any]], found: list[str]
) -> None:
    assert manifests.tolerates_everything(tolerations) == found


def test_tolerating_every_taint_is_a_problem_unless_allowed() -> None:
    body = finetunejob({"tolerations": [{"operator": "Exists"}]}, name="run", namespace="ml")
    (problem,) = plan(body, Powers(privileged=True)).problems
    assert problem.startswith("spec.tolerations: a toleration with operator Exists and no key (every taint) would")
    assert "--allow-any-toleration" in problem and "allowAnyToleration" in problem
    assert plan(body, Powers(any_toleration=True)).problems == []


def test_helpers_take_the_users_identity_never_the_relaxations() -> None:
    context = {
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "Unconfined"},
        "capabilities": {"add": ["SYS_ADMIN"]},
        "allowPrivilegeEscalation": True,
        "readOnlyRootFilesystem": False,
    }
    spec = {
        "securityContext": context,
        "model": {"image": {"reference": "registry.example.com/m:v1"}, "copyToLocal": True},
    }
    ftj = load_finetunejob(finetunejob(spec, name="run", namespace="ml"))
    (loader,) = manifests.job(ftj)["spec"]["template"]["spec"]["initContainers"]
    assert loader["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "runAsNonRoot": True,
    }


def test_the_entrypoints_constants_are_filled_in() -> None:
    assert entrypoint._filled('run @A@ with "$@" and @B@', {"A": "x", "B": "7"}) == 'run x with "$@" and 7'
    with pytest.raises(AssertionError, match=r"^an unfilled @NAME@ in the entrypoint$"):
        entrypoint._filled("run @A@", {})
    # Only an @NAME@ is a placeholder: an @ of the shell or of an address is not.
    assert entrypoint._filled('mail me@host "$@" @a@', {}) == 'mail me@host "$@" @a@'
    with pytest.raises(AssertionError):
        entrypoint._filled("run @MODEL_DIR@", {"A": "x"})
    assert re.search("@[A-Z_]+@", entrypoint.ENTRYPOINT) is None


def test_the_configmap_holds_one_env_config_whatever_the_number_of_ranks() -> None:
    """Its size does not grow with numNodes (issue 20 #2: 64 ranks of long paths made 6.7 MB)."""
    paths = {"outputDir": "/" + "o" * 4000, "logName": "l" * 4000 + ".log", "multiNodeEnvPath": "/" + "m" * 4000}
    sizes = {}
    for nodes in (2, 64):
        spec = {
            "numNodes": nodes,
            "envConfig": {"pathSettings": paths},
            "expConfig": {"processSettings": {"numGpus": 1}},
        }
        data = manifests.config_map(_model(spec))["data"]
        assert [key for key in data if key.startswith("env_config")] == ["env_config.yaml"]
        assert data["env_config.yaml"].count(RANK_PLACEHOLDER) == 2  # the log's name and the wiring file's
        sizes[nodes] = sum(len(text.encode()) for text in data.values())
    assert sizes[64] == sizes[2]


def test_the_rank_placeholder_in_envconfig_is_refused() -> None:
    body = finetunejob(
        {"envConfig": {"pathSettings": {"nvmePath": f"/mnt/{RANK_PLACEHOLDER}"}}}, name="run", namespace="ml"
    )
    (problem,) = plan(body, Powers()).problems
    assert problem.endswith(
        f"envConfig cannot contain {RANK_PLACEHOLDER}: the operator writes each rank's number in its place"
    )


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )
)
@settings(max_examples=300, database=None, deadline=None)
def test_libyamls_writer_and_the_python_one_write_what_reads_back_the_same(data: Any) -> None:
    """The fast writer (libyaml) is used for text without odd line breaks: what it writes reads back,
    with the trainer's PyYAML, as the data it was given, as the Python writer's does. (Their bytes may
    differ in style, e.g. an empty key: the golden files hold the bytes of real FineTuneJobs.)"""
    document = {"k": data}
    if configs._has_odd_breaks(document):
        return
    fast = yaml.dump(
        document, Dumper=configs._FastDumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096
    )
    slow = yaml.dump(
        document, Dumper=configs._Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096
    )
    assert yaml.safe_load(fast) == yaml.safe_load(slow) == document
    assert configs.dump_yaml(document) == fast


def test_the_fast_writer_is_chosen_only_without_odd_line_breaks() -> None:
    assert configs._has_odd_breaks({"a": ["x", {"b": "y\u2028"}]})
    assert configs._has_odd_breaks({"a\x85": 1})
    assert not configs._has_odd_breaks({"a": ["x", {"b": "y\n", "c": 1.5, "d": None}]})
