"""The operator's Grafana dashboard as code (grafana-foundation-sdk): deploy/monitoring/ and the chart's copy.

`make monitoring` writes both JSON files; tests/unit/deploy/test_dashboard.py fails while they are
stale, and checks that every query parses and names only metrics the operator exports. The chart
ships its copy (files/) as a ConfigMap labelled ``grafana_dashboard: "1"`` (metrics.grafanaDashboard).
Usage: python scripts/dashboard.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, common, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import prometheus as prom_models

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_FILE = ROOT / "deploy" / "monitoring" / "finetune-operator-dashboard.json"
CHART_COPY = ROOT / "deploy" / "helm" / "finetune-operator" / "files" / "finetune-operator-dashboard.json"
UID = "finetune-operator"

DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
#: The FineTuneJobs of the namespaces picked, and the operator's own series of the jobs picked (other
#: controller-runtime operators export controller_runtime_* and leader_election_master_status too).
NS = 'namespace=~"$namespace"'
OPERATOR = 'job=~"$job"'
RECONCILER = f'{OPERATOR},controller="finetunejob"'
TRAINING = "{{namespace}}/{{name}}"

Panel = timeseries.Panel | stat.Panel | bargauge.Panel | table.Panel


def increase(selector: str, window: str) -> str:
    """What a counter of the operator's added in ``window``, by series.

    The operator's labelled counters appear at their first count (a namespace's first failure is a new
    series at 1), and ``increase()`` reads a series' first sample as its start, not as a count: a
    series new in the window counts with all it holds (it started at 0 within it), the others by
    ``increase()``. ``* 1`` drops the name, so that ``or`` matches the series of both sides.
    """
    return f"(({selector} unless {selector} offset {window}) * 1 or increase({selector}[{window}]))"


def query(expr: str, legend: str = "__auto", instant: bool = False, ref: str = "A") -> prom.Dataquery:
    made = prom.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    return made.instant() if instant else made.range()


def graph(title: str, description: str, unit: str, *queries: prom.Dataquery, width: int = 8) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
    for each in queries:
        panel = panel.with_target(each)
    return panel.span(width).height(8)


def bars(title: str, description: str, unit: str, each: prom.Dataquery, width: int = 8) -> bargauge.Panel:
    """One bar per series, its latest value (an instant query)."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .with_target(each)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .display_mode(common_models.BarGaugeDisplayMode.BASIC)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(width)
        .height(8)
    )


def trainings_row() -> list[Panel]:
    phases = (
        stat.Panel()
        .title("Trainings by phase")
        .description("FineTuneJobs of the namespaces picked, by phase (finished ones until they are cleaned up).")
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"count by (phase) (max by (namespace, name, phase) (finetune_operator_finetunejob_phase{{{NS}}}))",
                "{{phase}}",
                instant=True,
            )
        )
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .span(8)
        .height(8)
    )
    listing = (
        table.Panel()
        .title("FineTuneJobs")
        .description("Each FineTuneJob the operator follows and its phase.")
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"max by (namespace, name, phase) (finetune_operator_finetunejob_phase{{{NS}}}) == 1",
                instant=True,
            ).format(prom_models.PromQueryFormat.TABLE)
        )
        .span(8)
        .height(8)
    )
    failures = bars(
        "Failures by reason",
        "FineTuneJobs that went Failed in the time range, by namespace and reason (the Failed condition's).",
        "short",
        query(
            f"sum by (namespace, reason) {increase(f'finetune_operator_failures_total{{{NS}}}', '$__range')}",
            "{{namespace}}: {{reason}}",
            instant=True,
        ),
    )
    wait = graph(
        "Queue wait",
        "Time from a FineTuneJob's creation (or its last eviction) to its start, over the last hour.",
        "s",
        *(
            query(
                f"histogram_quantile({q}, sum by (le) "
                f"{increase(f'finetune_operator_queue_wait_seconds_bucket{{{NS}}}', '1h')})",
                f"p{round(q * 100)}",
                ref=ref,
            )
            for q, ref in ((0.5, "A"), (0.9, "B"))
        ),
        width=24,
    )
    return [phases, listing, failures, wait]


def progress_row() -> list[Panel]:
    def per_training(metric: str) -> str:
        return f"max by (namespace, name) ({metric}{{{NS}}})"

    progress = (
        bars(
            "Progress",
            "Completed training steps of each running training.",
            "percent",
            query(per_training("finetune_operator_training_progress_percent"), TRAINING, instant=True),
        )
        .min(0)
        .max(100)
    )
    loss = graph(
        "Loss",
        "The latest loss in each training's log: a curve that falls is a training that learns.",
        "none",
        query(per_training("finetune_operator_training_loss"), TRAINING),
    )
    tokens = graph(
        "Tokens per second",
        "Training throughput in each training's log.",
        "short",
        query(per_training("finetune_operator_training_tokens_per_second"), TRAINING),
    )
    eta = bars(
        "ETA",
        "Estimated time to the end of each running training.",
        "s",
        query(per_training("finetune_operator_training_remaining_seconds"), TRAINING, instant=True),
    )
    stalled = (
        stat.Panel()
        .title("Stalled trainings")
        .description("Running trainings whose log shows no new step (Progressing=False, reason NoProgress).")
        .datasource(DATASOURCE)
        .with_target(query(f"sum({per_training('finetune_operator_training_stalled')})", "stalled", instant=True))
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .span(8)
        .height(8)
    )
    checkpoints = bars(
        "Checkpoints",
        "Checkpoints each training saved so far.",
        "short",
        query(per_training("finetune_operator_training_checkpoints"), TRAINING, instant=True),
    )
    save = bars(
        "Last checkpoint save",
        "How long each training's last checkpoint took to save.",
        "s",
        query(per_training("finetune_operator_training_last_checkpoint_duration_seconds"), TRAINING, instant=True),
    )
    return [progress, loss, tokens, eta, stalled, checkpoints, save]


def usage_row() -> list[Panel]:
    by_namespace = bars(
        "GPU-hours by namespace",
        "Accelerator-hours the trainings of each namespace used in the time range, by resource "
        "(pods' running time × their requests, across attempts and ranks).",
        "h",
        query(
            "sum by (namespace, resource) "
            f"{increase(f'finetune_operator_accelerator_seconds_total{{{NS}}}', '$__range')} / 3600",
            "{{namespace}} {{resource}}",
            instant=True,
        ),
    )
    in_use = graph(
        "Accelerators in use",
        "Accelerator-seconds per second: how many accelerators each namespace's trainings hold.",
        "short",
        query(
            f"sum by (namespace, resource) (rate(finetune_operator_accelerator_seconds_total{{{NS}}}"
            "[$__rate_interval]))",
            "{{namespace}} {{resource}}",
        ),
    )
    per_training = bars(
        "GPU-hours per training",
        "Accelerator-hours each FineTuneJob used so far, by resource.",
        "h",
        query(
            f"max by (namespace, name, resource) (finetune_operator_training_accelerator_seconds{{{NS}}}) / 3600",
            "{{namespace}}/{{name}} {{resource}}",
            instant=True,
        ),
    )
    return [by_namespace, in_use, per_training]


def operator_row() -> list[Panel]:
    rate = "[$__rate_interval]"
    reconciles = graph(
        "Reconciles",
        "Reconcile passes per second, by result.",
        "ops",
        query(f"sum by (result) (rate(controller_runtime_reconcile_total{{{RECONCILER}}}{rate}))", "{{result}}"),
    )
    errors = graph(
        "Reconcile errors",
        "Failed reconcile passes per second (retried with backoff).",
        "ops",
        query(f"sum(rate(controller_runtime_reconcile_errors_total{{{RECONCILER}}}{rate}))", "errors"),
    )
    latency = graph(
        "Reconcile latency",
        "Time per reconcile pass.",
        "s",
        *(
            query(
                f"histogram_quantile({q}, sum by (le) "
                f"(rate(controller_runtime_reconcile_time_seconds_bucket{{{RECONCILER}}}{rate})))",
                f"p{round(q * 100)}",
                ref=ref,
            )
            for q, ref in ((0.5, "A"), (0.99, "B"))
        ),
    )
    leader = graph(
        "Leader",
        "1 on the active replica, 0 on one standing by (kopf peering). No series without peering.",
        "none",
        query(f"max by (instance, name) (leader_election_master_status{{{OPERATOR}}})", "{{instance}} {{name}}"),
        width=12,
    )
    requests = graph(
        "Kubernetes API requests",
        "Calls the operator makes to the API server, per second, by operation.",
        "reqps",
        query(f"sum by (operation) (rate(finetune_operator_api_requests_total{{{OPERATOR}}}{rate}))", "{{operation}}"),
        width=12,
    )
    return [reconciles, errors, latency, leader, requests]


def variables() -> list[dash.DatasourceVariable | dash.QueryVariable]:
    def listed(name: str, label: str, source: str) -> dash.QueryVariable:
        return (
            dash.QueryVariable(name)
            .label(label)
            .datasource(DATASOURCE)
            .query(f"label_values({source}, {name})")
            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(models.VariableOption(selected=True, text="All", value="$__all"))
        )

    return [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        listed("job", "Operator job", "finetune_operator_finetunejobs"),
        listed("namespace", "Namespace", "finetune_operator_finetunejob_phase"),
    ]


def build() -> dict[str, object]:
    board = (
        dash.Dashboard("FineTune operator")
        .uid(UID)
        .tags(["finetune-operator", "kubernetes"])
        .description(
            "FineTuneJobs: phases, failures, queue wait, progress, loss, GPU-hours, checkpoints; the operator's health."
        )
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
    )
    for variable in variables():
        board = board.with_variable(variable)
    rows = (
        ("Trainings", trainings_row()),
        ("Training progress", progress_row()),
        ("GPU-hours", usage_row()),
        ("Operator", operator_row()),
    )
    for title, panels in rows:
        board = board.with_row(dash.Row(title))
        for panel in panels:
            board = board.with_panel(panel)
    encoded: dict[str, object] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return encoded


def dashboard_json() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def generated() -> dict[Path, str]:
    text = dashboard_json()
    return {DASHBOARD_FILE: text, CHART_COPY: text}


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
