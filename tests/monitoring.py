"""What the shipped dashboard and alert rules query, and what the operator's /metrics declares.

The unit tests check the names of the first against the operator's metrics made in-process; the e2e
test (tests/e2e/test_prometheus.py) against the /metrics of a real operator process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = ROOT / "deploy" / "monitoring" / "finetune-operator-rules.yaml"
DASHBOARD_FILE = ROOT / "deploy" / "monitoring" / "finetune-operator-dashboard.json"

#: Series Prometheus makes itself for each target: the rules may use them, the operator never serves them.
PROMETHEUS_OWN = frozenset({"up"})

#: Grafana's variables, replaced by what Grafana would put there before Prometheus parses a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "6h", "$__interval": "15s"}

_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*\w+\)$")

#: Sample names each metric type adds to the family name of a `# TYPE` line (text format 0.0.4).
_SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "untyped": ("",),
}


def rule_queries() -> dict[str, str]:
    """Alert name -> its expression."""
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board.get("panels") or []:
        found.append(panel)
        found.extend(panel.get("panels") or [])  # a collapsed row holds its panels
    return found


def dashboard_queries() -> dict[str, str]:
    """'<panel title> <refId>' (or 'variable <name>') -> the PromQL it runs, Grafana's variables still in."""
    board = json.loads(DASHBOARD_FILE.read_text())
    queries = {
        f"{panel['title']} {target['refId']}": target["expr"]
        for panel in _panels(board)
        for target in panel.get("targets") or []
    }
    for variable in (board.get("templating") or {}).get("list") or []:
        if variable["type"] == "query":
            match = _LABEL_VALUES.match(variable["query"])
            assert match, f"variable {variable['name']}: not label_values(<selector>, <label>): {variable['query']}"
            queries[f"variable {variable['name']}"] = match.group("selector")
    return queries


def as_prometheus_sees_it(query: str, **picked: str) -> str:
    """``query`` as Grafana sends it: its own variables filled, and the dashboard's as ``picked`` (else left in)."""
    for variable, value in {**GRAFANA_VARIABLES, **{f"${name}": value for name, value in picked.items()}}.items():
        query = query.replace(variable, value)
    return query


def metric_names(query: str) -> set[str]:
    """Every metric a PromQL expression selects (raises ValueError where it does not parse)."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {query!r}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(as_prometheus_sees_it(query)), visit)
    return names


def used_names() -> set[str]:
    """The operator's metrics that the dashboard and the rules query (Prometheus's own left out)."""
    queries = [*rule_queries().values(), *dashboard_queries().values()]
    return {name for query in queries for name in metric_names(query)} - PROMETHEUS_OWN


def declared_names(exposition: str) -> set[str]:
    """Every sample name a /metrics text may carry, from its `# TYPE` lines (also for families without samples)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            names.update(family + suffix for suffix in _SUFFIXES[kind])
    return names
