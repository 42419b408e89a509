"""The spec models: chart defaults, every rule accepted and refused with its message."""

from __future__ import annotations

import pytest

from finetune_operator.api.resource import InvalidFineTuneJob, load_finetunejob
from finetune_operator.api.spec import FineTuneJobSpec, parse_train_data_config
from tests.chart_defaults import CHART_DATASETS, CHART_ENV_CONFIG, CHART_EXP_CONFIG
from tests.rule_cases import (
    LONG_NAME,
    MULTI_NODE_BAD_NAMES,
    MULTI_NODE_NAME_CASE,
    NAME_CASE,
    RULE_CASES,
    RuleCase,
    finetunejob,
)


def test_empty_spec_has_the_chart_defaults() -> None:
    spec = FineTuneJobSpec()
    assert spec.exp_config.model_dump() == CHART_EXP_CONFIG
    assert spec.env_config.model_dump() == CHART_ENV_CONFIG
    assert spec.backoff_limit == 1
    assert spec.restart_policy == "Never"
    assert spec.ttl_seconds_after_finished == 60
    assert spec.scheduler_name == "hami-scheduler"
    assert spec.image.reference == "docker.io/library/aidaptiv:vNXUN_2_05BA0"
    assert spec.image.pull_policy == "IfNotPresent"
    assert spec.suspend is False
    assert spec.active_deadline_seconds is None
    gpu = {"otterscale.com/vgpu": 1, "otterscale.com/vgpumem-percentage": 60, "phison.com/ai100": 1}
    assert spec.resources.requests == gpu
    assert spec.resources.limits == gpu


def test_security_context_is_not_privileged_by_default_but_privileged_on_request() -> None:
    assert FineTuneJobSpec().security_context == {}
    asked = FineTuneJobSpec.model_validate({"securityContext": {"privileged": True}})
    assert asked.security_context == {"privileged": True}


def test_shared_memory_is_on_and_bounded_by_default() -> None:
    assert FineTuneJobSpec().shared_memory.enabled is True
    assert FineTuneJobSpec().shared_memory.size_limit == "16Gi"  # bounded: it is node memory


def test_default_train_data_is_the_charts_dataset() -> None:
    assert FineTuneJobSpec().datasets() == [CHART_DATASETS]


def _problems(spec: dict, name: str = "rule-case") -> str:
    with pytest.raises(InvalidFineTuneJob) as caught:
        load_finetunejob(finetunejob(spec, name=name))
    return str(caught.value)


@pytest.mark.parametrize("case", RULE_CASES, ids=lambda c: c.id)
def test_rule_accepts_good_and_refuses_bad_with_its_message(case: RuleCase) -> None:
    load_finetunejob(finetunejob(case.good))
    assert case.message in _problems(case.bad)


def test_name_longer_than_a_label_value_is_refused() -> None:
    load_finetunejob(finetunejob({}, name="a" * 63))
    assert NAME_CASE.message in _problems({}, name=LONG_NAME)


def test_messages_name_the_field() -> None:
    problems = _problems({"expConfig": {"processSettings": {"numGpus": 3}}})
    assert problems.startswith("spec.expConfig.processSettings.numGpus: ")
    problems = _problems({"trainData": [{"name": "ds", "dataPath": "x", "userPrompt": "no placeholder"}]})
    assert problems == "spec.trainData[0].userPrompt: userPrompt must contain the placeholder {question}"


def test_unknown_field_is_refused_with_its_path() -> None:
    problems = _problems({"expConfig": {"runSettings": {"perDeviceBatchSize": 4}}})
    assert problems == "spec.expConfig.runSettings.perDeviceBatchSize: unknown field (check its spelling and place)"


def test_strategy_keeps_the_users_letter_case() -> None:
    ftj = load_finetunejob(finetunejob({"trainData": [{"name": "ds", "dataPath": "x", "strategy": "Rag"}]}))
    assert ftj.spec.datasets() == [
        {"ds": {"data_path": "x", "strategy": "Rag", "user_prompt": "{question}", "exp_type": "train"}}
    ]


def test_specify_gpus_must_be_text_not_a_number() -> None:
    assert "specifyGpus" in _problems({"expConfig": {"processSettings": {"specifyGpus": 0}}})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [", "trainDataConfig is not valid YAML"),
        ("- just\n- a list\n", "must map each dataset name"),
        ("ds:\n  strategy: qa\n", "trainDataConfig dataset 'ds' has no data_path"),
        ("ds:\n  data_path: x\n  user_prompt: hi\n", "user_prompt must contain the placeholder {question}"),
        ("ds:\n  data_path: x\n  strategy: chat\n", "strategy must be one of qa"),
        ("ds:\n  data_path: x\n---\nds:\n  data_path: y\n", "names dataset 'ds' twice"),
        ("# only a comment\n", "holds no dataset"),
    ],
)
def test_raw_train_data_config_problems(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_train_data_config(text)
    assert message in str(caught.value)


def test_raw_train_data_config_with_two_datasets_in_one_document_is_split() -> None:
    text = "a:\n  data_path: x  # data_path in a comment\nb:\n  data_path: y\n"
    assert parse_train_data_config(text) == [{"a": {"data_path": "x"}}, {"b": {"data_path": "y"}}]


def _alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join([*lines, f"ds:\n  data_path: x\n  user_prompt: *a{levels}"]) + "\n"


def test_yaml_aliases_cannot_make_train_data_config_explode() -> None:
    """Found by a probe: 678 bytes of nested aliases took 21 s and 1.5 GB to render (one level more: MemoryError)."""
    bomb = _alias_bomb(8)
    assert len(bomb) < 1000
    problems = _problems({"trainDataConfig": bomb})
    assert "trainDataConfig is not valid YAML: trainDataConfig expands to more than 20000 values" in problems
    # A few aliases that stay small are fine, as YAML allows them.
    small = "ds: &d\n  data_path: x\n  user_prompt: '{question}'\nother: *d\n"
    assert [next(iter(d)) for d in load_finetunejob(finetunejob({"trainDataConfig": small})).spec.datasets()] == [
        "ds",
        "other",
    ]


def test_deeply_nested_train_data_config_is_refused_not_a_recursion_error() -> None:
    assert "nested more than 64 levels deep" in _problems({"trainDataConfig": "[" * 3000})


def test_a_huge_quantity_exponent_costs_nothing_and_is_refused() -> None:
    """Found by a probe: `1e999999` cost 104 s of CPU; `1e1000000` raised decimal.Overflow."""
    for value in ("1e999999", "1e1000000", "1e9223372036854775807"):
        problems = _problems(
            {"resources": {"requests": {"example.com/foo": value}, "limits": {"example.com/foo": value}}}
        )
        assert "must be between 0 and 9223372036854775807" in problems
    assert "valid Kubernetes quantity" in _problems({"resources": {"requests": {"cpu": "1e99999999999999999999"}}})


@pytest.mark.parametrize("name", MULTI_NODE_BAD_NAMES)
def test_a_multi_node_name_must_be_a_short_dns_label(name: str) -> None:
    load_finetunejob(finetunejob(MULTI_NODE_NAME_CASE.good, name="a" * 60))
    load_finetunejob(finetunejob({"numNodes": 1}, name=name))  # one node: any valid name
    assert MULTI_NODE_NAME_CASE.message in _problems(MULTI_NODE_NAME_CASE.bad, name=name)


def test_rank_zeros_address_in_any_form_that_resolves_to_it() -> None:
    ok = {"numNodes": 2, "expConfig": {"processSettings": {"multiNodeSettings": {"masterAddr": ""}}}}
    for address in ("run-0.run", "run-0.run.ns", "run-0.run.ns.svc", "run-0.run.ns.svc.cluster.local"):
        ok["expConfig"]["processSettings"]["multiNodeSettings"]["masterAddr"] = address
        load_finetunejob(finetunejob(ok, name="run", namespace="ns"))
    ok["expConfig"]["processSettings"]["multiNodeSettings"]["masterAddr"] = "run-0.run.other.svc"
    with pytest.raises(InvalidFineTuneJob, match=r"rank 0 is run-0\.run\.ns\.svc"):
        load_finetunejob(finetunejob(ok, name="run", namespace="ns"))
