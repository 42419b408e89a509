"""What the GitOps tools say of a FineTuneJob: Argo CD's Lua health check (deploy/gitops/argocd, run in
Lua 5.1 as Argo CD's gopher-lua runs it, every number a float) and Flux's CEL healthCheckExprs
(deploy/gitops/flux, in cel-python with Flux's order of evaluation, RFC-0009). Shared by the unit
tests (statuses the operator derives) and the e2e tests (FineTuneJobs the operator ran)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import celpy
import lupa.lua51
import yaml

GITOPS = Path(__file__).resolve().parents[1] / "deploy" / "gitops"
HEALTH_LUA = GITOPS / "argocd" / "health.lua"
FLUX_KUSTOMIZATION = GITOPS / "flux" / "kustomization-healthcheck.yaml"
TOP_LEVEL = {"apiVersion", "kind", "metadata", "spec", "status"}


def _to_lua(lua: Any, value: Any) -> Any:
    """A JSON value as Argo CD hands it to Lua: objects and arrays as tables, every number a float."""
    if isinstance(value, dict):
        table = lua.table()
        for key, item in value.items():
            table[key] = _to_lua(lua, item)
        return table
    if isinstance(value, list):
        table = lua.table()
        for index, item in enumerate(value, start=1):
            table[index] = _to_lua(lua, item)
        return table
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"not a JSON value: {value!r}")


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.lua51.LuaRuntime()
    lua.globals().obj = _to_lua(lua, obj)
    hs = lua.execute(HEALTH_LUA.read_text())
    return hs.status, hs.message


def flux_check() -> dict[str, str]:
    kustomization = yaml.safe_load(FLUX_KUSTOMIZATION.read_text())
    assert kustomization["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["spec"]["wait"] is True
    (check,) = kustomization["spec"]["healthCheckExprs"]
    return check


def flux_status(obj: dict[str, Any], check: dict[str, str]) -> str:
    """kustomize-controller's verdict (RFC-0009): a lagging observedGeneration is InProgress; else the first of
    inProgress, failed, current that holds; else InProgress. An expression that cannot be evaluated (no
    `status` yet) is an error: Flux retries until the Kustomization's timeout."""
    status = obj.get("status") or {}
    if "observedGeneration" in status and status["observedGeneration"] != obj["metadata"]["generation"]:
        return "InProgress"
    env = celpy.Environment()
    activation = {key: celpy.json_to_cel(value) for key, value in obj.items()}
    for key, verdict in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        if not check.get(key):
            continue
        # cel-go errors on a top-level variable the object lacks, even inside has(); cel-python says false.
        if any(re.search(rf"(?<![.\w]){name}\b", check[key]) for name in TOP_LEVEL - obj.keys()):
            return "Error"
        try:
            result = env.program(env.compile(check[key])).evaluate(activation)
        except celpy.CELEvalError:
            return "Error"
        if isinstance(result, celpy.CELEvalError):
            return "Error"
        if result:
            return verdict
    return "InProgress"
