"""The operator at scale, beside the floor, on one local control plane: numbers, never pass/fail.

  python benchmarks/scale_bench.py [--steps 1000,2000,5000] [--burst 1000] [--reactions 40] [--runs 20]

In one run, against one cluster (2 cores here), for the floor (benchmarks/floor.py: one watch, a
ConfigMap and a Job per FineTuneJob, nothing else) and the operator, each a process of its own
watching one namespace:

* reaction: seconds from creating a FineTuneJob to its Job appearing in a watch (p50, p95), one at
  a time; the operator's as ratios to the floor's;
* burst: N FineTuneJobs created at once (suspended: the objects, not kwok's pods, are the work) ->
  the last Job seen; the operator's time as a ratio to the floor's;
* API calls of a single-node run, create -> Succeeded (the operator's own counters, per FineTuneJob);
* memory (RSS) with 1,000 FineTuneJobs that have a Job and the rest finished and cleaned up (no Job
  left, as a busy platform keeps them), at each step of --steps, and its slope per cleaned-up one;
* restart over the last step: writes made (should be none), time until every object was looked at,
  time until a FineTuneJob created at start gets its Job; idle CPU over a minute.

Results go to benchmarks/results/scale-<date>.json and a picture to benchmarks/results/scale.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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

from e2e import localcluster as lc  # noqa: E402
from finetune_operator.api.status import FineTuneJobStatus  # noqa: E402
from finetune_operator.observe.status import Observation, derive_status  # noqa: E402
from tests.e2e.operator_process import OperatorProcess  # noqa: E402

GROUP, VERSION, PLURAL = "finetune.aidaptiv.io", "v1alpha1", "finetunejobs"
CRD = ROOT / "crds" / "finetune.aidaptiv.io_finetunejobs.yaml"
RESULTS = ROOT / "benchmarks" / "results"
LIGHT = {"schedulerName": "", "resources": {"requests": {"cpu": "1m"}, "limits": {"cpu": "10m"}}}
WITH_JOB = 1000  # FineTuneJobs that keep a (suspended) Job at every scale step
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


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def reaction(api: Api, watch: JobWatch, namespace: str, prefix: str, count: int) -> dict[str, float]:
    delays = []
    for index in range(-1, count):  # -1: a warm-up, not counted (connections, first watch event)
        name = f"{prefix}-react-{index}"
        start = time.monotonic()
        api.create(namespace, finetunejob(name, suspend=True, **LIGHT))
        if index >= 0:
            delays.append(watch.wait([name], 60) - start)
        else:
            watch.wait([name], 60)
    return {"p50": round(statistics.median(delays), 4), "p95": round(percentile(delays, 0.95), 4)}


def burst(api: Api, watch: JobWatch, namespace: str, prefix: str, count: int) -> float:
    names = [f"{prefix}-burst-{index}" for index in range(count)]
    start = time.monotonic()
    api.create_many(namespace, [finetunejob(name, suspend=True, **LIGHT) for name in names])
    return round(watch.wait(names) - start, 2)


class Floor:
    def __init__(self, kubeconfig: Path, namespace: str, log: Path) -> None:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.handle = log.open("w")
        argv = [sys.executable, str(ROOT / "benchmarks" / "floor.py"), "--namespace", namespace]
        self.process = subprocess.Popen(argv, stdout=self.handle, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while "watching" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.handle.close()


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
    process = OperatorProcess(cluster.kubeconfig, workdir, args)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1000,2000,5000", help="FineTuneJobs in all at each memory step")
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--reactions", type=int, default=40)
    parser.add_argument("--runs", type=int, default=20, help="single-node runs counted for API calls")
    parser.add_argument("--idle", type=int, default=60, help="seconds of idle CPU sampling")
    args = parser.parse_args()
    steps = [int(step) for step in args.steps.split(",")]
    local = lc.LocalCluster(lc.ClusterConfig(name=f"bench-{os.getpid()}", run_duration="1s", start_delay="0s"))
    cluster = local.up()
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cores": os.cpu_count()}
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(CRD))
        cluster.wait_established(f"{PLURAL}.{GROUP}")
        api = Api(cluster.kubeconfig)
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            progress("the floor and the operator: reaction and burst")
            report |= compare_with_floor(api, cluster, workdir, args)
            save(report, partial=True)
            progress(f"{args.runs} single-node runs: API calls")
            report["single_node_run_api_calls_per_finetunejob"] = single_node_runs(api, cluster, workdir, args.runs)
            save(report, partial=True)
            progress(f"memory steps {steps}")
            report["scale"] = scale_steps(api, cluster, workdir, steps, args.idle)
    finally:
        local.down()
    out = save(report, partial=False)
    draw(report, RESULTS / "scale.png")
    print(json.dumps(report, indent=2))
    print(table(report))
    print(f"written: {out}, {RESULTS / 'scale.png'}")
    return 0


def save(report: dict[str, Any], partial: bool) -> Path:
    """What is measured so far survives a later step that fails (a long run is not lost)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scale-{report['date'][:10]}{'.partial' if partial else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    if not partial:
        out.with_name(f"{out.stem}.partial.json").unlink(missing_ok=True)
    return out


def compare_with_floor(api: Api, cluster: lc.Cluster, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {"burst_finetunejobs": args.burst, "reactions": args.reactions}
    for who in ("floor", "operator"):
        namespace = cluster.create_namespace()
        watch = JobWatch(api, namespace)
        runner: Any = (
            Floor(cluster.kubeconfig, namespace, workdir / "floor.log")
            if who == "floor"
            else operator_in(cluster, namespace, workdir / "compare")
        )
        try:
            found[who] = {
                "reaction_seconds": reaction(api, watch, namespace, who, args.reactions),
                "burst_seconds": burst(api, watch, namespace, who, args.burst),
            }
            if who == "operator":
                found[who]["rss_mb_after_burst"] = rss_mb(runner.process.pid)
        finally:
            runner.stop()
            watch.stop()
    floor, ours = found["floor"], found["operator"]
    found["ratios_to_floor"] = {
        "reaction_p50": round(ours["reaction_seconds"]["p50"] / floor["reaction_seconds"]["p50"], 2),
        "reaction_p95": round(ours["reaction_seconds"]["p95"] / floor["reaction_seconds"]["p95"], 2),
        "burst": round(ours["burst_seconds"] / floor["burst_seconds"], 2),
    }
    return found


def scale_steps(api: Api, cluster: lc.Cluster, workdir: Path, steps: list[int], idle: int) -> dict[str, Any]:
    """RSS with 1,000 FineTuneJobs that have a Job and the rest cleaned up; the last step restarts twice."""
    namespace = cluster.create_namespace()
    watch = JobWatch(api, namespace)
    operator = operator_in(cluster, namespace, workdir / "scale-0")
    time.sleep(5)  # started, its watches listed an empty namespace
    idle_rss = rss_mb(operator.process.pid)
    names = [f"held-{index:04d}" for index in range(WITH_JOB)]
    api.create_many(namespace, [finetunejob(name, suspend=True, **LIGHT) for name in names])
    watch.wait(names)

    def all_suspended() -> bool:
        listed = api.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        return sum((i.get("status") or {}).get("phase") == "Suspended" for i in listed) == WITH_JOB

    wait_for(all_suspended, 600, 0.5)  # its work done: the restarts below have nothing left to do
    operator.stop()
    rows, cleaned = [], 0
    for index, total in enumerate(steps):
        progress(f"step {total}: adding {total - WITH_JOB - cleaned} cleaned-up FineTuneJobs")
        add_cleaned(api, namespace, cleaned, total - WITH_JOB)
        cleaned = total - WITH_JOB
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
        "rss_kb_per_cleaned_up_finetunejob": round(slope, 2),
        "restart_new_finetunejob_gets_job_seconds": round(ready, 2),
    }


def table(report: dict[str, Any]) -> str:
    """The README's Performance table, from one run's report."""
    floor, ours, ratio = report["floor"], report["operator"], report["ratios_to_floor"]
    scale = report["scale"]
    first, last = scale["steps"][0], scale["steps"][-1]
    calls = report["single_node_run_api_calls_per_finetunejob"]
    creates = sum(calls.get(op, 0) for op in ("create_job", "create_configmap", "create_service"))
    restart_writes = sum(n for step in scale["steps"] for n in step["writes"].values())
    rows = [
        ("what", "operator", "floor", "ratio", "goal"),
        ("---",) * 5,
        (
            "reaction, create → Job exists, p50 / p95",
            f"{ours['reaction_seconds']['p50']} s / {ours['reaction_seconds']['p95']} s",
            f"{floor['reaction_seconds']['p50']} s / {floor['reaction_seconds']['p95']} s",
            f"{ratio['reaction_p50']}× / {ratio['reaction_p95']}×",
            "1.5× / 3×",
        ),
        (
            f"burst of {report['burst_finetunejobs']:,} created at once → all Jobs exist",
            f"{ours['burst_seconds']} s",
            f"{floor['burst_seconds']} s",
            f"{ratio['burst']}×",
            "1.5×",
        ),
        (
            f"RSS idle / {first['finetunejobs']:,} live / {last['finetunejobs']:,} "
            f"({last['finetunejobs'] - last['cleaned_up']:,} live, {last['cleaned_up']:,} done)",
            f"{scale.get('rss_mb_idle', '–')} / {first['rss_mb']} / {last['rss_mb']} MB",
            "",
            "",
            "200 MB at 5,000",
        ),
        (
            f"RSS per finished, cleaned-up FineTuneJob (slope {first['finetunejobs']:,} → {last['finetunejobs']:,})",
            f"{scale['rss_kb_per_cleaned_up_finetunejob']} KB",
            "",
            "",
            "5 KB",
        ),
        (
            f"restart over {last['finetunejobs']:,}: writes / a new FineTuneJob gets its Job",
            f"{restart_writes:g} / {scale['restart_new_finetunejob_gets_job_seconds']} s",
            "",
            "",
            "none / 30 s",
        ),
        (
            f"idle CPU with {last['finetunejobs']:,} FineTuneJobs (one minute)",
            f"{last.get('idle_cpu_percent_of_one_core', '–')} % of a core",
            "",
            "",
            "< 1 %",
        ),
        (
            "API writes per single-node run, create → Succeeded",
            f"{calls.get('patch_status', 0):g} status patches + {creates:g} creates",
            "",
            "",
            "≤ 5 + 2",
        ),
    ]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def draw(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (memory, speed) = plt.subplots(1, 2, figsize=(11, 4))
    rows = report["scale"]["steps"]
    idle = [(0, report["scale"]["rss_mb_idle"])] if "rss_mb_idle" in report["scale"] else []
    points = idle + [(r["finetunejobs"], r["rss_mb"]) for r in rows]
    memory.plot([x for x, _ in points], [y for _, y in points], marker="o", label="operator")
    memory.axhline(200, color="grey", linestyle="--", label="goal: 200 MB at 5,000")
    memory.legend(loc="lower right")
    memory.set_xlabel(f"FineTuneJobs ({WITH_JOB} with a Job, the rest finished and cleaned up)")
    memory.set_ylabel("operator RSS (MB)")
    memory.set_ylim(bottom=0)
    memory.set_title("Memory")
    labels = ["reaction p50", "reaction p95", "burst"]
    floor, ours = report["floor"], report["operator"]
    values = {
        "floor": [floor["reaction_seconds"]["p50"], floor["reaction_seconds"]["p95"], floor["burst_seconds"]],
        "operator": [ours["reaction_seconds"]["p50"], ours["reaction_seconds"]["p95"], ours["burst_seconds"]],
    }
    width = 0.38
    for offset, (who, heights) in enumerate(values.items()):
        speed.bar([i + offset * width for i in range(3)], heights, width, label=who)
    speed.set_xticks([i + width / 2 for i in range(3)], labels)
    speed.set_yscale("log")
    speed.set_ylabel("seconds (log)")
    speed.set_title(f"Operator vs floor (burst of {report['burst_finetunejobs']} FineTuneJobs)")
    speed.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
