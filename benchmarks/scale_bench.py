"""The operator at scale, beside the peer and the floor, on one local control plane: numbers, never pass/fail.

  python benchmarks/scale_bench.py [--reactions 40] [--running 20] [--rounds 3] [--burst 1000]
                                   [--live 1000,5000] [--steps 1000,2000,5000] [--runs 20] [--idle 60]
  python benchmarks/scale_bench.py --quick      # a few minutes: 200 live, small bursts, one round

In one run, against one cluster (2 cores here, kwok GPU nodes), side by side (benchmarks/side_by_side.py)
for the floor (benchmarks/floor.py: one watch, a ConfigMap and a Job per FineTuneJob, nothing else), the
operator (each a process of its own watching one namespace) and the peer a platform team would run
instead (Kubeflow Trainer v2 + JobSet, e2e/peer.py: TrainJob -> JobSet -> Job), the same work for each:

* reaction: seconds from creating an object to its Job appearing in a watch (p50, p95), one at a time,
  and to its pod Running on a kwok GPU node (unsuspended, 1 ai100), in --rounds rounds alternating;
* burst: N objects created at once (suspended: the objects, not kwok's pods, are the work) -> the last
  Job seen; the API server's requests per object;
* live: --live objects each with its (suspended) Job, created into a fresh process: RSS when done, its
  peak meanwhile, the API server's requests per object; then SIGKILL and start again: seconds from the
  start to a new object's Job, RSS once caught up, its peak;
* ratios operator/peer and operator/floor of each.

And for the operator alone, as before:

* API calls of a single-node run, create -> Succeeded (the operator's own counters, per FineTuneJob);
* memory (RSS) with --with-job FineTuneJobs that have a Job and the rest finished and cleaned up (no Job
  left, as a busy platform keeps them), at each step of --steps, and its slope per cleaned-up one;
* restart over the last step: writes made (should be none), time until every object was looked at,
  time until a FineTuneJob created at start gets its Job; idle CPU over --idle seconds.

Results go to benchmarks/results/<out>-<date>.json and a picture to benchmarks/results/<out>.png (--out:
scale by default, the README's picture; scale-quick with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
import urllib3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import side_by_side as sbs  # noqa: E402
from benchmarks.contenders import FloorContender, OperatorContender, PeerContender  # noqa: E402

from e2e import build_toolchain  # noqa: E402
from e2e import localcluster as lc  # noqa: E402
from finetune_operator.api.status import FineTuneJobStatus  # noqa: E402
from finetune_operator.observe.status import Observation, derive_status  # noqa: E402
from tests.e2e.operator_process import OperatorProcess  # noqa: E402

GROUP, VERSION, PLURAL = "finetune.aidaptiv.io", "v1alpha1", "finetunejobs"
CRD = ROOT / "crds" / "finetune.aidaptiv.io_finetunejobs.yaml"
RESULTS = ROOT / "benchmarks" / "results"
LIGHT = {"schedulerName": "", "resources": {"requests": {"cpu": "1m"}, "limits": {"cpu": "10m"}}}
WRITES = ("create_job", "create_configmap", "create_service", "patch_status", "patch_job", "delete_job")


def finetunejob(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneJob", "metadata": {"name": name}, "spec": spec}


class Api:
    def __init__(self, kubeconfig: Path) -> None:
        self.client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.client.rest_client.pool_manager.connection_pool_kw["maxsize"] = 32
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.batch = kubernetes.client.BatchV1Api(self.client)

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body))

    def create_many(self, namespace: str, bodies: list[dict[str, Any]], workers: int = 16) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda body: self.create(namespace, body), bodies))

    def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})


class JobWatch:
    """When each Job of a namespace was first seen, from a watch in a thread of the benchmark."""

    def __init__(self, api: Api, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self.lock = threading.Condition()
        self.watch = kubernetes.watch.Watch()
        self.thread = threading.Thread(target=self._run, args=(api, namespace), daemon=True)
        self.thread.start()

    def _run(self, api: Api, namespace: str) -> None:
        try:
            for event in self.watch.stream(api.batch.list_namespaced_job, namespace, timeout_seconds=0):
                if event["type"] == "ADDED":
                    with self.lock:
                        self.seen.setdefault(event["object"].metadata.name, time.monotonic())
                        self.lock.notify_all()
        except urllib3.exceptions.ProtocolError:
            pass  # the connection closed under a stopped watch (its namespace deleted): nothing is waited for

    def wait(self, names: Iterable[str], timeout: float = 600) -> float:
        """When the last of these Jobs was seen."""
        wanted, deadline = set(names), time.monotonic() + timeout
        with self.lock:
            while not wanted <= self.seen.keys():
                if not self.lock.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"{len(wanted - self.seen.keys())} Jobs never appeared")
            return max(self.seen[name] for name in wanted)

    def stop(self) -> None:
        self.watch.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def writes(operator: OperatorProcess) -> dict[str, float]:
    made = operator.api_requests()
    return {op: made[op] for op in WRITES if made.get(op)}


def progress(what: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.2) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError("waited too long")
        time.sleep(step)
    return time.monotonic() - start


def cleaned_status(name: str) -> dict[str, Any]:
    """What the operator leaves on a FineTuneJob that succeeded and was cleaned up."""
    done = datetime(2026, 11, 1, tzinfo=UTC)
    job = {
        "metadata": {"name": "x"},
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    }
    job["status"]["completionTime"] = done.strftime("%Y-%m-%dT%H:%M:%SZ")
    status = derive_status(Observation(1, FineTuneJobStatus(), job, "x", done))
    status = derive_status(Observation(1, status, None, "x", done + timedelta(minutes=1), cleaned_up=True))
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def add_cleaned(api: Api, namespace: str, start: int, stop: int) -> None:
    names = [f"done-{index:05d}" for index in range(start, stop)]
    api.create_many(namespace, [finetunejob(name, **LIGHT) for name in names])
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: api.set_status(namespace, name, cleaned_status(name)), names))


def operator_in(cluster: lc.Cluster, namespace: str, workdir: Path) -> OperatorProcess:
    args = ("--namespace", namespace, "--metrics-address", "127.0.0.1", "--log-interval", "15")
    process = OperatorProcess(cluster.kubeconfig, workdir, args, dev=False)  # as deployed: no debug logs
    process.start(timeout=120)
    return process


def single_node_runs(api: Api, cluster: lc.Cluster, workdir: Path, count: int) -> dict[str, float]:
    """API writes and reads per FineTuneJob, create -> Succeeded (no TTL cleanup in the count)."""
    namespace = cluster.create_namespace()
    operator = operator_in(cluster, namespace, workdir / "runs")
    try:
        names = [f"run-{index}" for index in range(count)]
        api.create_many(namespace, [finetunejob(n, ttlSecondsAfterFinished=None, **LIGHT) for n in names])

        def all_succeeded() -> bool:
            listed = api.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
            return sum((i.get("status") or {}).get("phase") == "Succeeded" for i in listed) == count

        wait_for(all_succeeded, 600, 0.5)
        time.sleep(2)  # the last status writes land
        made = operator.api_requests()
    finally:
        operator.stop()
    return {op: round(value / count, 2) for op, value in sorted(made.items()) if op != "discover"}


#: What --quick sets (anything given on the command line wins).
QUICK = {
    "reactions": 6, "running": 3, "rounds": 1, "burst": 100, "live": "200",
    "steps": "200,400", "with_job": 200, "runs": 3, "idle": 10, "out": "scale-quick",
}  # fmt: skip
DEFAULTS = {
    "reactions": 40, "running": 20, "rounds": 3, "burst": 1000, "live": "1000,5000",
    "steps": "1000,2000,5000", "with_job": 1000, "runs": 20, "idle": 60, "out": "scale",
}  # fmt: skip


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"a short run for development: {QUICK}")
    parser.add_argument("--reactions", type=int, help="create -> Job, one at a time, per contender (default 40)")
    parser.add_argument("--running", type=int, help="create -> pod Running, per contender (default 20)")
    parser.add_argument("--rounds", type=int, help="rounds the reactions are split into, alternating (default 3)")
    parser.add_argument("--burst", type=int, help="objects created at once (default 1000)")
    parser.add_argument("--live", help="live objects of the memory and restart runs (default 1000,5000)")
    parser.add_argument("--steps", help="operator alone: FineTuneJobs in all at each step (default 1000,2000,5000)")
    parser.add_argument("--with-job", type=int, help="operator alone: those of them with a Job (default 1000)")
    parser.add_argument("--runs", type=int, help="operator alone: single-node runs counted for API calls (default 20)")
    parser.add_argument("--idle", type=int, help="operator alone: seconds of idle CPU sampling (default 60)")
    parser.add_argument(
        "--out", help="results/<out>-<date>.json and results/<out>.png (default scale: the README's picture)"
    )
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main() -> int:
    args = arguments()
    steps = [int(step) for step in args.steps.split(",")]
    counts = [int(count) for count in args.live.split(",")]
    local = lc.LocalCluster(lc.ClusterConfig(name=f"bench-{os.getpid()}", run_duration="1s", start_delay="0s"))
    cluster = local.up()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "arguments": {k: v for k, v in vars(args).items()},
        "peer_versions": {name: build_toolchain.versions()[name] for name in ("trainer", "jobset")},
    }
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(CRD))
        cluster.wait_established(f"{PLURAL}.{GROUP}")
        api = Api(cluster.kubeconfig)
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            side_api = sbs.Api(cluster.kubeconfig)
            peer = PeerContender(local)
            peer.peer.install()
            contenders = [
                OperatorContender(cluster.kubeconfig, workdir / "operator"),
                peer,
                FloorContender(cluster.kubeconfig, workdir / "floor"),
            ]
            try:
                progress("operator, peer and floor: reactions and burst")
                report |= sbs.compare(
                    side_api, cluster, contenders, args.reactions, args.running, args.burst, args.rounds
                )
                report["burst_finetunejobs"], report["reactions"] = args.burst, args.reactions
                report["ratios_to_floor"] = sbs.ratios_of_speed(report, "floor")
                report["ratios_to_peer"] = sbs.ratios_of_speed(report, "peer")
                save(report, partial=True)
                progress(f"operator, peer and floor: {counts} live")
                report["live"] = sbs.live(side_api, cluster, contenders, counts)
                save(report, partial=True)
            finally:
                peer.peer.stop()
            progress(f"{args.runs} single-node runs: API calls")
            report["single_node_run_api_calls_per_finetunejob"] = single_node_runs(api, cluster, workdir, args.runs)
            save(report, partial=True)
            progress(f"memory steps {steps}")
            report["scale"] = scale_steps(api, cluster, workdir, steps, args.idle, args.with_job)
    finally:
        local.down()
    out = save(report, partial=False)
    picture = RESULTS / f"{args.out}.png"
    draw(report, picture)
    print(json.dumps(report, indent=2))
    print(table(report))
    print(f"written: {out}, {picture}")
    return 0


def save(report: dict[str, Any], partial: bool) -> Path:
    """What is measured so far survives a later step that fails (a long run is not lost)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{report['arguments']['out']}-{report['date'][:10]}{'.partial' if partial else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    if not partial:
        out.with_name(f"{out.stem}.partial.json").unlink(missing_ok=True)
    return out


def scale_steps(
    api: Api, cluster: lc.Cluster, workdir: Path, steps: list[int], idle: int, with_job: int
) -> dict[str, Any]:
    """RSS with ``with_job`` FineTuneJobs that have a Job and the rest cleaned up; the last step restarts twice."""
    namespace = cluster.create_namespace()
    watch = JobWatch(api, namespace)
    operator = operator_in(cluster, namespace, workdir / "scale-0")
    time.sleep(5)  # started, its watches listed an empty namespace
    idle_rss = rss_mb(operator.process.pid)
    names = [f"held-{index:04d}" for index in range(with_job)]
    api.create_many(namespace, [finetunejob(name, suspend=True, **LIGHT) for name in names])
    watch.wait(names)

    def all_suspended() -> bool:
        listed = api.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        return sum((i.get("status") or {}).get("phase") == "Suspended" for i in listed) == with_job

    wait_for(all_suspended, 600, 0.5)  # its work done: the restarts below have nothing left to do
    operator.stop()
    rows, cleaned = [], 0
    for index, total in enumerate(steps):
        progress(f"step {total}: adding {total - with_job - cleaned} cleaned-up FineTuneJobs")
        add_cleaned(api, namespace, cleaned, total - with_job)
        cleaned = total - with_job
        operator = operator_in(cluster, namespace, workdir / f"scale-{index + 1}")
        try:
            looked = wait_for(lambda process=operator, count=total: process.known_finetunejobs() >= count, 600)
            time.sleep(5)  # settle: the last handlers return, the collector has run
            row = {"finetunejobs": total, "cleaned_up": cleaned, "rss_mb": rss_mb(operator.process.pid)}
            row |= {"all_looked_at_seconds": round(looked, 1), "writes": writes(operator)}
            if total == steps[-1]:
                before = cpu_seconds(operator.process.pid)
                time.sleep(idle)
                row["idle_cpu_percent_of_one_core"] = round(
                    100 * (cpu_seconds(operator.process.pid) - before) / idle, 2
                )
            rows.append(row)
        finally:
            operator.stop()
    # Restart over the last step with a new FineTuneJob created at once: when does it get its Job?
    operator = operator_in(cluster, namespace, workdir / "restart")
    try:
        start = time.monotonic()
        api.create(namespace, finetunejob("probe", suspend=True, **LIGHT))
        ready = watch.wait(["probe"], 300) - start
    finally:
        operator.stop()
        watch.stop()
    first, last = rows[0], rows[-1]
    slope = (last["rss_mb"] - first["rss_mb"]) * 1024 / max(1, last["cleaned_up"] - first["cleaned_up"])
    return {
        "rss_mb_idle": idle_rss,
        "steps": rows,
        "with_job": with_job,
        "rss_kb_per_cleaned_up_finetunejob": round(slope, 2),
        "restart_new_finetunejob_gets_job_seconds": round(ready, 2),
    }


def _pair(row: dict[str, Any], key: str) -> str:
    return f"{row[key]['p50']} s / {row[key]['p95']} s"


def _times(ratios: dict[str, Any], first: str, second: str | None = None) -> str:
    shown = [ratios.get(first)] + ([ratios.get(second)] if second else [])
    return " / ".join("–" if value is None else f"{value}×" for value in shown)


def side_by_side_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """Operator, peer and floor: the same work, with the ratios operator/peer and operator/floor."""
    ours, peer, floor = report["operator"], report["peer"], report["floor"]
    to_peer, to_floor = report["ratios_to_peer"], report["ratios_to_floor"]
    rows: list[tuple[str, ...]] = [
        (
            "reaction, create → Job exists, p50 / p95",
            _pair(ours, "reaction_seconds"),
            _pair(peer, "reaction_seconds"),
            _pair(floor, "reaction_seconds"),
            _times(to_peer, "reaction_p50", "reaction_p95"),
            _times(to_floor, "reaction_p50", "reaction_p95"),
        ),
        (
            "reaction, create → pod Running (1 ai100, kwok), p50 / p95",
            _pair(ours, "reaction_running_seconds"),
            _pair(peer, "reaction_running_seconds"),
            _pair(floor, "reaction_running_seconds"),
            _times(to_peer, "running_p50", "running_p95"),
            _times(to_floor, "running_p50", "running_p95"),
        ),
        (
            f"burst of {report['burst_finetunejobs']:,} suspended created at once → all Jobs exist",
            *(f"{row['burst_seconds']} s" for row in (ours, peer, floor)),
            _times(to_peer, "burst"),
            _times(to_floor, "burst"),
        ),
        (
            "API server requests per object in the burst (all verbs)",
            *(f"{row['burst_api_requests_per_object']['total']:g}" for row in (ours, peer, floor)),
            _times(to_peer, "burst_api_requests_per_object"),
            _times(to_floor, "burst_api_requests_per_object"),
        ),
    ]
    for count, found in (report.get("live") or {}).items():
        rows += live_rows(int(count), found)
    return rows


def live_rows(count: int, found: dict[str, Any]) -> list[tuple[str, ...]]:
    names = ("operator", "peer", "floor")
    to_peer, to_floor = found["ratios"].get("operator_to_peer", {}), found["ratios"].get("operator_to_floor", {})
    wanted = [
        (f"{count:,} live, each with its Job: created → all Jobs", "created_to_all_jobs_seconds", " s", None),
        (f"RSS with {count:,} live (fresh process, work done)", "rss_mb", " MB", "rss_mb"),
        (
            f"start-up peak: max RSS while {count:,} are created",
            "rss_mb_peak_while_created",
            " MB",
            "rss_mb_peak_while_created",
        ),
        (
            f"RSS right after a restart with {count:,} live (caught up)",
            "rss_mb_after_restart",
            " MB",
            "rss_mb_after_restart",
        ),
        (
            f"killed and restarted with {count:,} live → a new object's Job",
            "restart_new_object_job_seconds",
            " s",
            "restart_new_object_job_seconds",
        ),
    ]
    rows = [
        (
            what,
            *(f"{found[n][key]}{unit}" for n in names),
            _times(to_peer, ratio) if ratio else "",
            _times(to_floor, ratio) if ratio else "",
        )
        for what, key, unit, ratio in wanted
    ]
    rows.append(
        (
            f"API server requests per object, {count:,} created (all verbs / writes)",
            *(
                f"{found[n]['api_requests_per_object']['total']:g} / {found[n]['api_requests_per_object']['writes']:g}"
                for n in names
            ),
            _times(to_peer, "api_requests_per_object"),
            _times(to_floor, "api_requests_per_object"),
        )
    )
    return rows


def table(report: dict[str, Any]) -> str:
    """The README's Performance tables, from one run's report: side by side, then the operator alone."""
    header = ("what", "operator", "Trainer + JobSet", "floor", "operator / peer", "operator / floor")
    side = [header, ("---",) * len(header), *side_by_side_rows(report)]
    return "\n".join("| " + " | ".join(row) + " |" for row in side) + "\n\n" + operator_table(report)


def operator_table(report: dict[str, Any]) -> str:
    """The operator alone: its memory with finished FineTuneJobs, restart, idle CPU, API writes of a run."""
    ours = report["operator"]
    scale = report["scale"]
    first, last = scale["steps"][0], scale["steps"][-1]
    calls = report["single_node_run_api_calls_per_finetunejob"]
    creates = sum(calls.get(op, 0) for op in ("create_job", "create_configmap", "create_service"))
    restart_writes = sum(n for step in scale["steps"] for n in step["writes"].values())
    rows = [
        ("what", "operator", "goal"),
        ("---",) * 3,
        (f"RSS after the burst of {report['burst_finetunejobs']:,}", f"{ours.get('rss_mb_after_burst', '–')} MB", ""),
        (
            f"RSS idle / {first['finetunejobs']:,} / {last['finetunejobs']:,} "
            f"({last['finetunejobs'] - last['cleaned_up']:,} live, {last['cleaned_up']:,} done)",
            f"{scale.get('rss_mb_idle', '–')} / {first['rss_mb']} / {last['rss_mb']} MB",
            "200 MB at 5,000",
        ),
        (
            f"RSS per finished, cleaned-up FineTuneJob (slope {first['finetunejobs']:,} → {last['finetunejobs']:,})",
            f"{scale['rss_kb_per_cleaned_up_finetunejob']} KB",
            "5 KB",
        ),
        (
            f"restart over {last['finetunejobs']:,}: writes / a new FineTuneJob gets its Job",
            f"{restart_writes:g} / {scale['restart_new_finetunejob_gets_job_seconds']} s",
            "none / 30 s",
        ),
        (
            f"idle CPU with {last['finetunejobs']:,} FineTuneJobs",
            f"{last.get('idle_cpu_percent_of_one_core', '–')} % of a core",
            "< 1 %",
        ),
        (
            "API writes per single-node run, create → Succeeded",
            f"{calls.get('patch_status', 0):g} status patches + {creates:g} creates",
            "≤ 5 + 2",
        ),
    ]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


CONTENDERS = ("operator", "peer", "floor")


def draw(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (memory, live, speed) = plt.subplots(1, 3, figsize=(17, 4.5))
    draw_operator_memory(memory, report)
    draw_live(live, report)
    draw_speed(speed, report)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def draw_operator_memory(axes: Any, report: dict[str, Any]) -> None:
    rows = report["scale"]["steps"]
    idle = [(0, report["scale"]["rss_mb_idle"])] if "rss_mb_idle" in report["scale"] else []
    points = idle + [(r["finetunejobs"], r["rss_mb"]) for r in rows]
    axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label="operator")
    axes.axhline(200, color="grey", linestyle="--", label="goal: 200 MB at 5,000")
    axes.legend(loc="lower right")
    axes.set_xlabel(
        f"FineTuneJobs ({report['scale'].get('with_job', 1000)} with a Job, the rest finished and cleaned up)"
    )
    axes.set_ylabel("operator RSS (MB)")
    axes.set_ylim(bottom=0)
    axes.set_title("Operator memory with finished FineTuneJobs")


def draw_live(axes: Any, report: dict[str, Any]) -> None:
    """RSS with N live objects: fresh (its peak above it, hatched) and after a restart, side by side."""
    counts = list(report.get("live") or {})
    width = 0.13
    for index, count in enumerate(counts):
        found = report["live"][count]
        for offset, who in enumerate(CONTENDERS):
            x = index + (offset - 1) * 2.2 * width
            row = found[who]
            label = who if index == 0 else None
            bar = axes.bar(x - width / 2, row["rss_mb"], width, color=f"C{offset}", label=label)
            axes.bar(x - width / 2, row["rss_mb_peak_while_created"] - row["rss_mb"], width, bottom=row["rss_mb"],
                     color=bar[0].get_facecolor(), alpha=0.35, hatch="//")  # fmt: skip
            axes.bar(x + width / 2, row["rss_mb_after_restart"], width, color=f"C{offset}", alpha=0.6)
    axes.set_xticks(range(len(counts)), [f"{int(c):,} live" for c in counts])
    axes.set_ylabel("RSS (MB): fresh (+ peak hatched) | after restart (light)")
    axes.set_title("Memory with live objects, each with its Job")
    axes.legend()


def draw_speed(axes: Any, report: dict[str, Any]) -> None:
    live = report.get("live") or {}
    largest = max(live, key=int) if live else None
    labels = ["create → Job p50", "create → Job p95", "create → Running p50", f"burst {report['burst_finetunejobs']}"]
    if largest:
        labels.append(f"restart → Job ({int(largest):,} live)")
    width = 0.27
    for offset, who in enumerate(CONTENDERS):
        row = report[who]
        heights = [
            row["reaction_seconds"]["p50"],
            row["reaction_seconds"]["p95"],
            row["reaction_running_seconds"]["p50"],
            row["burst_seconds"],
        ]
        if largest:
            heights.append(live[largest][who]["restart_new_object_job_seconds"])
        axes.bar([i + (offset - 1) * width for i in range(len(heights))], heights, width, label=who, color=f"C{offset}")
    axes.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    axes.set_yscale("log")
    axes.set_ylabel("seconds (log)")
    axes.set_title("Operator, Trainer + JobSet, floor")
    axes.legend()


if __name__ == "__main__":
    sys.exit(main())
