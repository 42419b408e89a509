"""The operator's alert rules, written once here: a plain Prometheus rules file and the chart's PrometheusRule.

`make monitoring` writes both; tests/unit/deploy/test_alert_rules.py fails while either is stale, runs
`promtool check rules` on the file and `promtool test rules` on the unit tests of every alert
(tests/unit/deploy/alerts/), and the chart's PrometheusRule rendered with its default values must be
the plain file. A threshold is written ``[[name]]``: the plain file gets its default (``THRESHOLDS``),
the chart template a value of ``metrics.prometheusRule`` (``values.yaml`` holds the same defaults).
Usage: python scripts/alert_rules.py [--check]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = ROOT / "deploy" / "monitoring" / "finetune-operator-rules.yaml"
CHART = ROOT / "deploy" / "helm" / "finetune-operator"
TEMPLATE_FILE = CHART / "templates" / "prometheusrule.yaml"
GROUP = "finetune-operator"
VALUES = ".Values.metrics.prometheusRule"

#: Defaults of the thresholds, as values.yaml has them under metrics.prometheusRule. ``job`` is the
#: label Prometheus gives the operator's metrics: a ServiceMonitor of the chart's metrics Service names
#: them after the Service (the plain manifests' release is ``finetune-operator``).
THRESHOLDS: dict[str, str] = {
    "job": "finetune-operator-metrics",
    "pendingFor": "15m",
    "queuedFor": "2h",
    "noProgressFor": "10m",
    "operatorDownFor": "5m",
    "notLeadingFor": "2m",
    "reconcileErrors": "10",
    "reconcileErrorsWindow": "10m",
}

#: How the chart fills a threshold: the value itself, and the job from the release when it is empty.
CHART_THRESHOLDS: dict[str, str] = {
    **{name: f"{{{{ {VALUES}.{name} }}}}" for name in THRESHOLDS},
    "job": f'{{{{ {VALUES}.job | default (printf "%s-metrics" (include "finetune-operator.fullname" .)) }}}}',
}


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str
    summary: str
    description: str
    #: A threshold's name (``[[...]]``), or None: firing at the first evaluation that matches.
    for_: str | None = None


ALERTS: tuple[Alert, ...] = (
    Alert(
        "FineTuneJobFailed",
        'max by (namespace, name) (finetune_operator_finetunejob_phase{phase="Failed"}) == 1',
        "warning",
        "FineTuneJob {{ $labels.namespace }}/{{ $labels.name }} failed",
        "The training will not be retried. `kubectl describe finetunejob -n {{ $labels.namespace }} "
        "{{ $labels.name }}` shows why (its Failed condition keeps the reason and the log's last lines). "
        "The alert resolves when the FineTuneJob is deleted.",
    ),
    Alert(
        "FineTuneJobPendingTooLong",
        'max by (namespace, name) (finetune_operator_finetunejob_phase{phase="Pending"}) == 1',
        "warning",
        "FineTuneJob {{ $labels.namespace }}/{{ $labels.name }} has been Pending for more than [[pendingFor]]",
        "Its pods do not start: no node has the accelerators it asks for, or an image or volume is missing. "
        "The FineTuneJob's conditions and Events, and its pods' Events, say which.",
        for_="pendingFor",
    ),
    Alert(
        "FineTuneJobQueuedTooLong",
        'max by (namespace, name) (finetune_operator_finetunejob_phase{phase="Queued"}) == 1',
        "warning",
        "FineTuneJob {{ $labels.namespace }}/{{ $labels.name }} has been Queued for more than [[queuedFor]]",
        "Its queue (Kueue) has not admitted it: the queue's quota is taken by other trainings.",
        for_="queuedFor",
    ),
    Alert(
        "FineTuneJobNoProgress",
        "max by (namespace, name) (finetune_operator_training_stalled) == 1",
        "warning",
        "FineTuneJob {{ $labels.namespace }}/{{ $labels.name }} has made no progress for more than [[noProgressFor]]",
        "It is Running, but its log shows no new training step (condition Progressing=False, reason "
        "NoProgress). The operator does not fail it: look at the trainer.",
        for_="noProgressFor",
    ),
    Alert(
        "FineTuneOperatorDown",
        'absent(up{job="[[job]]"} == 1)',
        "critical",
        "No finetune-operator replica has been scraped for [[operatorDownFor]]",
        "No target of job [[job]] is up: FineTuneJobs are not reconciled and trainings are not followed.",
        for_="operatorDownFor",
    ),
    Alert(
        "FineTuneOperatorNotLeading",
        'max by (name) (leader_election_master_status{job="[[job]]"}) == 0',
        "critical",
        "No finetune-operator replica of peering {{ $labels.name }} has been active for [[notLeadingFor]]",
        "Every replica stands by (leader_election_master_status is 0 on each): none acts on FineTuneJobs.",
        for_="notLeadingFor",
    ),
    Alert(
        "FineTuneOperatorReconcileErrors",
        "sum by (controller) (increase(controller_runtime_reconcile_errors_total"
        '{job="[[job]]",controller="finetunejob"}[[[reconcileErrorsWindow]]])) > [[reconcileErrors]]',
        "warning",
        "More than [[reconcileErrors]] failed reconciles of FineTuneJobs in [[reconcileErrorsWindow]]",
        "The operator retries them with backoff; its log says what failed (often the API server or RBAC).",
    ),
)

_THRESHOLD = re.compile(r"\[\[(\w+)\]\]")


def fill(text: str, thresholds: Mapping[str, str]) -> str:
    """``text`` with each ``[[name]]`` replaced by its threshold."""
    return _THRESHOLD.sub(lambda match: thresholds[match.group(1)], text)


def groups(thresholds: Mapping[str, str], annotation: Callable[[str], str] = lambda text: text) -> dict[str, Any]:
    """The rule groups, thresholds filled in; ``annotation`` maps the annotations' text first."""
    rules = []
    for alert in ALERTS:
        rule: dict[str, Any] = {"alert": alert.name, "expr": fill(alert.expr, thresholds)}
        if alert.for_ is not None:
            rule["for"] = thresholds[alert.for_]
        rule["labels"] = {"severity": alert.severity}
        rule["annotations"] = {
            "summary": fill(annotation(alert.summary), thresholds),
            "description": fill(annotation(alert.description), thresholds),
        }
        rules.append(rule)
    return {"groups": [{"name": GROUP, "rules": rules}]}


def _dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=1000, allow_unicode=True)


def rules_file() -> str:
    header = "# Generated by `make monitoring` (scripts/alert_rules.py). Do not edit.\n"
    return header + _dump(groups(THRESHOLDS))


def _helm_literal(text: str) -> str:
    """Prometheus's own templates (``{{ $labels.name }}``) kept from Helm as raw strings."""
    return re.sub(r"\{\{.*?\}\}", lambda match: "{{`" + match.group(0) + "`}}", text)


def chart_template() -> str:
    head = (
        "{{- /* Generated by `make monitoring` (scripts/alert_rules.py). Do not edit. */ -}}\n"
        "{{- if and .Values.metrics.enabled .Values.metrics.prometheusRule.enabled }}\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        '  name: {{ include "finetune-operator.fullname" . }}\n'
        "  namespace: {{ .Release.Namespace }}\n"
        "  labels:\n"
        '    {{- include "finetune-operator.labels" . | nindent 4 }}\n'
        "    {{- with .Values.metrics.prometheusRule.labels }}\n"
        "    {{- toYaml . | nindent 4 }}\n"
        "    {{- end }}\n"
        "spec:\n"
    )
    body = _dump(groups(CHART_THRESHOLDS, _helm_literal))
    return head + "".join(f"  {line}\n" for line in body.splitlines()) + "{{- end }}\n"


def generated() -> dict[Path, str]:
    return {RULES_FILE: rules_file(), TEMPLATE_FILE: chart_template()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the files on disk are stale")
    args = parser.parse_args()
    stale = [path for path, text in generated().items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run `make monitoring`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
