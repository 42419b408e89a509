"""The CustomResourceDefinition, generated from the pydantic models (one source of truth).

pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3 subset: every node
typed, `$ref` inlined, `nullable: true` instead of `anyOf [.., null]`, int-or-string marked with
`x-kubernetes-int-or-string`, no `additionalProperties: false`, no defaults here (the models apply
them, so a stored object stays exactly what the user applied and GitOps tools see no drift).
"""

from __future__ import annotations

from typing import Any

import yaml

from finetune_operator.api import messages as msg
from finetune_operator.api.base import CEL_KEY, GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, cel, cel_literal
from finetune_operator.api.resource import DNS_1035_LABEL
from finetune_operator.api.spec import FineTuneJobSpec, immutability_rules
from finetune_operator.api.status import FineTuneJobStatus

CRD_NAME = f"{PLURAL}.{GROUP}"
_DROPPED = {"title", "default", "propertyNames", "examples"}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Phase of the training."},
    {
        "name": "Nodes",
        "type": "string",
        "jsonPath": ".status.nodes",
        "description": "Ranks running of the ranks asked for.",
    },
    {
        "name": "Progress",
        "type": "integer",
        "jsonPath": ".status.trainerStatus.progressPercentage",
        "description": "Completed training steps, in percent.",
    },
    {
        "name": "Loss",
        "type": "string",
        "jsonPath": '.status.trainerStatus.metrics[?(@.name=="loss")].value',
        "description": "Loss of the latest step.",
    },
    {
        "name": "ETA",
        "type": "string",
        "jsonPath": ".status.trainerStatus.estimatedRemainingTime",
        "description": "Estimated time to the end of training.",
    },
    {
        "name": "Trend",
        "type": "string",
        "jsonPath": ".status.trainerStatus.lossTrend",
        "description": "The loss over the run, as a sparkline (lowest ▁, highest █).",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Output",
        "type": "string",
        "jsonPath": ".status.output.reference",
        "description": "Where the fine-tuned model was pushed, pinned by digest.",
        "priority": 1,
    },
]


class SchemaError(ValueError):
    """The models produced a schema node that a structural CRD schema cannot express."""


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema node (and its children) as a structural OpenAPI v3 node."""
    node = _inline_refs(node, defs)
    out: dict[str, Any] = {}
    if "anyOf" in node:
        out.update(_collapse_any_of(node, defs))
    for key, value in node.items():
        if key in _DROPPED or key == "anyOf":
            continue
        if key == "properties":
            out["properties"] = {name: structural(child, defs) for name, child in value.items()}
        elif key == "items":
            out["items"] = structural(value, defs)
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = structural(value, defs)
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "required":
            out["required"] = list(value)
        else:
            out[key] = value
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out and "properties" not in out:
        # A free-form value of any type (such as loraTargetModules: a string or a list).
        pass
    elif "type" not in out and not out.get("x-kubernetes-int-or-string"):
        raise SchemaError(f"untyped schema node: {node!r}")
    return out


def _inline_refs(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None and len(node.get("allOf", [])) == 1:
        ref = node["allOf"][0].get("$ref")
    if ref is None:
        return node
    target = dict(defs[ref.rsplit("/", 1)[-1]])
    target_rules = target.get(CEL_KEY, [])
    siblings = {k: v for k, v in node.items() if k not in {"$ref", "allOf"}}
    merged = {**target, **siblings}
    if target_rules and CEL_KEY in siblings:
        merged[CEL_KEY] = target_rules + siblings[CEL_KEY]
    return _inline_refs(merged, defs)


def _collapse_any_of(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    options = [option for option in node["anyOf"] if option != {"type": "null"}]
    out: dict[str, Any] = {}
    if len(options) < len(node["anyOf"]):
        out["nullable"] = True
    if len(options) == 1:
        inner = structural(options[0], defs)
        if out.get("nullable") and "enum" in inner:
            # The API server refuses null for a nullable field with an enum, null in the enum or not:
            # the enum becomes a rule, and rules are not run on null.
            allowed = inner.pop("enum")
            rule = cel(
                f"self in [{', '.join(cel_literal(v) for v in allowed)}]",
                f"must be one of {', '.join(map(str, allowed))}",
            )
            inner[CEL_KEY] = [*inner.get(CEL_KEY, []), rule]
        # The field's own rules and description win over the referenced model's.
        out.update({k: v for k, v in inner.items() if k not in node or k == CEL_KEY})
        if CEL_KEY in inner and CEL_KEY in node:
            out[CEL_KEY] = inner[CEL_KEY] + node[CEL_KEY]
        return out
    types = sorted(_inline_refs(option, defs).get("type", "") for option in options)
    if types == ["integer", "string"]:
        # Exactly the form the API server accepts for int-or-string (no constraints inside).
        out["x-kubernetes-int-or-string"] = True
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        lengths = [o["maxLength"] for o in options if "maxLength" in o]
        if lengths:
            out["maxLength"] = lengths[0]  # bounds CEL's cost estimate for string(self[k])
        return out
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return out
    raise SchemaError(f"a union a structural schema cannot express: {node['anyOf']!r}")


def model_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = structural(raw, defs)
    schema.setdefault("description", (model.__doc__ or "").strip().splitlines()[0])
    return schema


def spec_schema() -> dict[str, Any]:
    schema = model_schema(FineTuneJobSpec)
    schema[CEL_KEY] = schema.get(CEL_KEY, []) + immutability_rules()
    return schema


def openapi_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": (
            "FineTuneJob fine-tunes a large language model with the Phison aiDAPTIV+ trainer: the operator "
            "renders the trainer's config files into a ConfigMap, runs a Job, and reports phase and progress."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object."},
            "kind": {"type": "string", "description": "Kind of this object: FineTuneJob."},
            # The API server allows nothing but the type here (metadata is its own).
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": model_schema(FineTuneJobStatus),
        },
        CEL_KEY: [
            cel(f"self.metadata.name.size() <= {msg.MAX_NAME_LENGTH}", msg.NAME_LENGTH),
            cel(
                "!has(self.spec.numNodes) || self.spec.numNodes <= 1 || (self.metadata.name.size() <= "
                f"{msg.MAX_MULTI_NODE_NAME} && self.metadata.name.matches('^{DNS_1035_LABEL}$'))",
                msg.MULTI_NODE_NAME,
            ),
        ],
    }


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition of FineTuneJob."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/name": "finetune-operator"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["all", "aidaptiv"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `finetune-operator crd` from the pydantic models. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120, allow_unicode=True)
