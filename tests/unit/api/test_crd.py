"""The generated CRD: up to date with the models, structural, and self-explaining."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from finetune_operator.api.crd import crd, crd_yaml
from finetune_operator.api.resource import load_finetunejob
from finetune_operator.api.spec import MUTABLE_FIELDS, FineTuneJobSpec
from tests.rule_cases import UPDATE_CASES, UpdateCase, finetunejob

CRD_FILE = Path(__file__).resolve().parents[3] / "crds" / "finetune.aidaptiv.io_finetunejobs.yaml"


def _schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_committed_crd_is_the_generated_one() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), (
        "crds/ is stale: run `finetune-operator crd > " + str(CRD_FILE.relative_to(CRD_FILE.parents[1])) + "`"
    )


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        assert "$ref" not in node, path
        assert "allOf" not in node and "oneOf" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert "default" not in node, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
            assert "type" not in node, path
        typed = (
            "type" in node or node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        )
        assert typed, f"{path} has no type"


def test_every_field_has_a_description() -> None:
    missing = [path for path, node in _walk(_schema()) if path and not node.get("description")]
    missing = [p for p in missing if not p.endswith("{}") and not p.endswith("[]") and p != ".metadata"]
    assert missing == []


def test_nullable_fields_use_nullable_not_any_of_null() -> None:
    specify = _schema()["properties"]["spec"]["properties"]["expConfig"]["properties"]["processSettings"]
    node = specify["properties"]["specifyGpus"]
    assert node["nullable"] is True
    assert node["type"] == "string"


def test_names_status_and_columns() -> None:
    spec = crd()["spec"]
    assert spec["names"]["shortNames"] == ["ftj"]
    assert spec["names"]["kind"] == "FineTuneJob"
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Nodes",
        "Progress",
        "Loss",
        "ETA",
        "Trend",
        "Age",
        "Output",
    ]
    # Output, pinned by digest, is long: `kubectl get -o wide` only.
    assert [c.get("priority", 0) for c in version["additionalPrinterColumns"]] == [0, 0, 0, 0, 0, 0, 0, 1]
    assert all("conditions" not in c["jsonPath"] for c in version["additionalPrinterColumns"])


def test_fields_that_shape_the_pod_are_immutable() -> None:
    rules = _schema()["properties"]["spec"]["x-kubernetes-validations"]
    frozen = {r["fieldPath"].lstrip(".") for r in rules if "oldSelf" in r["rule"]}
    every = {field.alias for field in FineTuneJobSpec.model_fields.values()}
    assert frozen == every - set(MUTABLE_FIELDS)
    assert {"expConfig", "envConfig", "resources", "image", "prescript", "volumes"} <= frozen
    assert "suspend" not in frozen


# `x.?a.?b.orValue(d)`, the optional syntax of the API server's CEL, which cel-python does not parse.
OPTIONAL_FIELD = re.compile(r"\b(self|oldSelf)((?:\.\?\w+)+)\.orValue\(([^()]*)\)")


def _without_optionals(rule: str) -> str:
    """The rule with each `x.?a.?b.orValue(d)` written as `(has(x.a) && has(x.a.b)) ? x.a.b : d`."""

    def plain(match: re.Match[str]) -> str:
        root, parts, default = match.group(1), match.group(2).split(".?")[1:], match.group(3)
        paths = [".".join([root, *parts[: index + 1]]) for index in range(len(parts))]
        return "((" + " && ".join(f"has({path})" for path in paths) + f") ? {paths[-1]} : {default})"

    return OPTIONAL_FIELD.sub(plain, rule)


def _refusals(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The messages of the CRD's transition rules (those with oldSelf) that refuse changing spec old into new."""
    env = celpy.Environment()
    activation = {"self": celpy.json_to_cel(new), "oldSelf": celpy.json_to_cel(old)}
    refused = []
    for rule in _schema()["properties"]["spec"]["x-kubernetes-validations"]:
        if "oldSelf" not in rule["rule"]:
            continue
        result = env.program(env.compile(_without_optionals(rule["rule"]))).evaluate(activation)
        assert not isinstance(result, celpy.CELEvalError), (rule["rule"], result)
        if not result:
            refused.append(rule["message"])
    return refused


def test_optional_fields_are_rewritten_for_cel_python() -> None:
    assert _without_optionals("self.?a.orValue(1) == oldSelf.?a.?b.orValue('x')") == (
        "((has(self.a)) ? self.a : 1) == ((has(oldSelf.a) && has(oldSelf.a.b)) ? oldSelf.a.b : 'x')"
    )


@pytest.mark.parametrize("case", UPDATE_CASES, ids=lambda c: c.id)
def test_transition_rules_accept_or_refuse_each_update_with_its_message(case: UpdateCase) -> None:
    """The generated CRD's own rules, evaluated by cel-python; the e2e sends the same updates to the API server."""
    for spec in (case.old, case.new):
        load_finetunejob(finetunejob(spec))  # each side is a valid FineTuneJob on its own
    refused = _refusals(case.old, case.new)
    if case.message is None:
        assert refused == []
    else:
        assert len(refused) == 1 and refused[0].startswith(case.message), refused


def test_cel_rules_have_messages() -> None:
    for path, node in _walk(_schema()):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule.get("message") or rule.get("messageExpression"), f"{path}: {rule['rule']}"


def test_crd_file_is_valid_yaml_with_one_document() -> None:
    assert len(list(yaml.safe_load_all(CRD_FILE.read_text()))) == 1
