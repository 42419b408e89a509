"""The same work for the operator, the peer (Kubeflow Trainer + JobSet) and the floor, on one cluster:
the phases of benchmarks/scale_bench.py that compare them. Only one of them runs during a phase, in a
namespace of its own; where the order could favour one (reactions, live objects) it rotates.

* reactions: create one object, then the next once its Job exists (suspended objects), or once its pod
  Runs on a kwok GPU node (unsuspended: the pod asks for 1 ``phison.com/ai100``); p50 and p95 over
  ``rounds`` rounds, the three alternating;
* burst: N suspended objects created at once -> the last Job seen; the API server's requests per object;
* live: L suspended objects, each with its Job, created into a fresh process: RSS once the work is done
  (the API server quiet), the largest RSS sampled meanwhile, the API server's requests per object; then
  the process is SIGKILLed and started again with them live: seconds from its start to the Job of an
  object created at that moment (through the peer's webhooks: created again until they answer), RSS
  once it has caught up, and the largest RSS meanwhile.

Requests per object: deltas of the API server's ``apiserver_request_total`` over the phase, leases,
nodes and non-resource URLs left out, the benchmark's own creates taken off, divided by the objects;
they include what kube-controller-manager does for the Jobs (the same for all three).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
import urllib3
from benchmarks.contenders import Contender, PeerContender, RssSampler, delta, request_counts, wait_quiet
from kubernetes.client.exceptions import ApiException

from e2e import localcluster as lc

#: The verbs of ``apiserver_request_total`` that write.
WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION")


class Api:
    def __init__(self, kubeconfig: Any) -> None:
        self.client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.client.rest_client.pool_manager.connection_pool_kw["maxsize"] = 32
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.batch = kubernetes.client.BatchV1Api(self.client)
        self.core = kubernetes.client.CoreV1Api(self.client)

    def create(self, contender: Contender, namespace: str, body: dict[str, Any]) -> None:
        group, version, plural = contender.kind
        self.custom.create_namespaced_custom_object(group, version, namespace, plural, body)

    def create_many(self, contender: Contender, namespace: str, bodies: list[dict[str, Any]]) -> None:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda body: self.create(contender, namespace, body), bodies))

    def create_when_served(self, contender: Contender, namespace: str, body: dict[str, Any], timeout: float) -> None:
        """Create, again while the API server cannot reach the peer's webhooks (its managers starting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.create(contender, namespace, body)
                return
            except ApiException as error:
                if error.status != 500 or "webhook" not in str(error.body) or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)


class Watch:
    """When each Job of a namespace was first seen, and when a pod of each Job was first Running."""

    def __init__(self, api: Api, namespace: str) -> None:
        self.jobs: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.lock = threading.Condition()
        self.watches = [kubernetes.watch.Watch(), kubernetes.watch.Watch()]
        threads = [
            threading.Thread(target=self._jobs, args=(api, namespace), daemon=True),
            threading.Thread(target=self._pods, args=(api, namespace), daemon=True),
        ]
        for thread in threads:
            thread.start()

    def _jobs(self, api: Api, namespace: str) -> None:
        try:
            for event in self.watches[0].stream(api.batch.list_namespaced_job, namespace, timeout_seconds=0):
                if event["type"] == "ADDED":
                    self._saw(self.jobs, event["object"].metadata.name)
        except urllib3.exceptions.ProtocolError:
            pass  # the connection closed under a stopped watch (its namespace deleted): nothing is waited for

    def _pods(self, api: Api, namespace: str) -> None:
        try:
            for event in self.watches[1].stream(api.core.list_namespaced_pod, namespace, timeout_seconds=0):
                pod = event["object"]
                job = (pod.metadata.labels or {}).get("job-name")
                if job and pod.status and pod.status.phase == "Running":
                    self._saw(self.running, job)
        except urllib3.exceptions.ProtocolError:
            pass

    def _saw(self, seen: dict[str, float], name: str) -> None:
        with self.lock:
            seen.setdefault(name, time.monotonic())
            self.lock.notify_all()

    def wait(self, names: Iterable[str], timeout: float = 600, running: bool = False) -> float:
        """When the last of these Jobs was seen (or had a pod Running)."""
        seen = self.running if running else self.jobs
        wanted, deadline = set(names), time.monotonic() + timeout
        with self.lock:
            while not wanted <= seen.keys():
                if not self.lock.wait(timeout=max(0.0, deadline - time.monotonic())):
                    what = "pods Running" if running else "Jobs"
                    raise TimeoutError(f"{len(wanted - seen.keys())} {what} never appeared")
            return max(seen[name] for name in wanted)

    def stop(self) -> None:
        for watch in self.watches:
            watch.stop()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def spread(delays: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(delays), 4), "p95": round(percentile(delays, 0.95), 4), "n": len(delays)}


def reactions(
    api: Api, watch: Watch, contender: Contender, namespace: str, prefix: str, count: int, running: bool
) -> list[float]:
    """Seconds from creating each object to its Job (or its pod Running), one object at a time."""
    delays = []
    for index in range(-1, count):  # -1: a warm-up, not counted (connections, first watch event)
        name = f"{prefix}-{'run' if running else 'react'}-{index + 1}"
        start = time.monotonic()
        api.create(contender, namespace, contender.body(name, suspend=not running))
        seen = watch.wait([contender.job_of(name)], 120, running=running)
        if index >= 0:
            delays.append(seen - start)
    return delays


def per_object(requests: dict[str, float], contender: Contender, objects: int) -> dict[str, Any]:
    """The API server's requests of a phase per object, the benchmark's own creates taken off."""
    mine = f"POST {contender.kind[2]}"
    counted = dict(requests)
    counted[mine] = counted.get(mine, 0.0) - objects
    counted = {key: value for key, value in counted.items() if value > 0}
    each = {key: round(value / objects, 2) for key, value in sorted(counted.items())}
    by_request = {key: value for key, value in each.items() if value}  # not the other controllers' rare re-watches
    writes = sum(v for k, v in counted.items() if k.split()[0] in WRITE_VERBS)
    return {
        "total": round(sum(counted.values()) / objects, 2),
        "writes": round(writes / objects, 2),
        "by_request": by_request,
    }


def progress(what: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {what}", flush=True)


def in_namespace(cluster: lc.Cluster, api: Api, work: Callable[[str, Watch], dict[str, Any]]) -> dict[str, Any]:
    """Run one phase in a fresh namespace with a watch on it; the namespace is deleted after (and waited
    for: the peer's managers watch every namespace, what is left would weigh on the next phase)."""
    namespace = cluster.create_namespace()
    watch = Watch(api, namespace)
    try:
        return work(namespace, watch)
    finally:
        watch.stop()
        try:
            cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=600s", timeout=660, check=False)
        except Exception as error:
            progress(f"namespace {namespace} not gone: {error}")
        wait_quiet(cluster)  # the garbage collector's work on what was in it is not the next phase's


def rotated(contenders: list[Contender], turn: int) -> list[Contender]:
    shift = turn % len(contenders)
    return contenders[shift:] + contenders[:shift]


def compare(
    api: Api, cluster: lc.Cluster, contenders: list[Contender], reacting: int, running: int, bursting: int, rounds: int
) -> dict[str, Any]:
    """Reactions (to the Job, to the pod Running) in rounds, the three alternating; a burst in the first."""
    delays: dict[str, dict[str, list[float]]] = {c.name: {"job": [], "running": []} for c in contenders}
    found: dict[str, dict[str, Any]] = {c.name: {} for c in contenders}
    for turn in range(rounds):
        for contender in rotated(contenders, turn):

            def work(
                namespace: str, watch: Watch, contender: Contender = contender, turn: int = turn
            ) -> dict[str, Any]:
                contender.start(namespace)
                try:
                    prefix = f"r{turn}"
                    mine = delays[contender.name]
                    mine["job"] += reactions(
                        api, watch, contender, namespace, prefix, max(1, reacting // rounds), False
                    )
                    mine["running"] += reactions(
                        api, watch, contender, namespace, prefix, max(1, running // rounds), True
                    )
                    if turn == 0:
                        found[contender.name] |= burst(api, cluster, watch, contender, namespace, bursting)
                finally:
                    contender.stop()
                return {}

            progress(f"round {turn + 1}/{rounds}: {contender.name}")
            in_namespace(cluster, api, work)
    for contender in contenders:
        mine = delays[contender.name]
        found[contender.name] |= {
            "reaction_seconds": spread(mine["job"]),
            "reaction_running_seconds": spread(mine["running"]),
        }
    return found


def burst(
    api: Api, cluster: lc.Cluster, watch: Watch, contender: Contender, namespace: str, count: int
) -> dict[str, Any]:
    names = [f"burst-{index}" for index in range(count)]
    wait_quiet(cluster)  # what the reactions' pods still cause (their ends, the status after) is not the burst's
    before = request_counts(cluster)
    start = time.monotonic()
    api.create_many(contender, namespace, [contender.body(name, suspend=True) for name in names])
    seconds = watch.wait([contender.job_of(name) for name in names], 1800) - start
    wait_quiet(cluster)
    requests = delta(request_counts(cluster), before)
    return {
        "burst_seconds": round(seconds, 2),
        "burst_api_requests_per_object": per_object(requests, contender, count),
        "rss_mb_after_burst": contender.rss_mb(),
    }


def live(api: Api, cluster: lc.Cluster, contenders: list[Contender], counts: list[int]) -> dict[str, Any]:
    """For each count: RSS with that many live objects (fresh, peak, after a restart) and the restart."""
    found: dict[str, Any] = {}
    for turn, count in enumerate(counts):
        found[str(count)] = {}
        for contender in rotated(contenders, turn):
            progress(f"{count} live: {contender.name}")

            def work(
                namespace: str, watch: Watch, contender: Contender = contender, count: int = count
            ) -> dict[str, Any]:
                return live_one(api, cluster, watch, contender, namespace, count)

            found[str(count)][contender.name] = in_namespace(cluster, api, work)
        found[str(count)]["ratios"] = ratios_of_live(found[str(count)])
    return found


def live_one(
    api: Api, cluster: lc.Cluster, watch: Watch, contender: Contender, namespace: str, count: int
) -> dict[str, Any]:
    contender.start(namespace)
    try:
        time.sleep(2)  # started, its watches listed an empty namespace
        row: dict[str, Any] = {"rss_mb_idle": contender.rss_mb()}
        sampler = RssSampler(contender)
        before = request_counts(cluster)
        start = time.monotonic()
        names = [f"live-{index:05d}" for index in range(count)]
        api.create_many(contender, namespace, [contender.body(name, suspend=True) for name in names])
        row["created_to_all_jobs_seconds"] = round(watch.wait([contender.job_of(n) for n in names], 3600) - start, 1)
        row["settled_seconds"] = round(time.monotonic() - start + wait_quiet(cluster), 1)
        row["api_requests_per_object"] = per_object(delta(request_counts(cluster), before), contender, count)
        row["rss_mb"] = contender.rss_mb()
        row["rss_mb_peak_while_created"] = sampler.stop()
        if isinstance(contender, PeerContender):
            row["rss_mb_by_process"] = contender.rss_by_process_mb()
        row |= restart(api, cluster, watch, contender, namespace)
        row["restart_api_requests_per_live_object"] = round(row["restart_api_requests"] / count, 2)
        if isinstance(contender, PeerContender):
            row["rss_mb_by_process_after_restart"] = contender.rss_by_process_mb()
        return row
    finally:
        contender.stop()


def restart(api: Api, cluster: lc.Cluster, watch: Watch, contender: Contender, namespace: str) -> dict[str, Any]:
    """SIGKILL, start again; seconds from the start to the Job of an object created at that moment."""
    contender.kill()
    before = request_counts(cluster)
    starting = threading.Thread(target=contender.start, args=(namespace,), daemon=True)
    start = time.monotonic()
    starting.start()
    sampler = RssSampler(contender, interval=0.1)
    api.create_when_served(contender, namespace, contender.body("probe", suspend=True), 300)
    ready = watch.wait([contender.job_of("probe")], 600) - start
    starting.join()
    wait_quiet(cluster)
    requests = delta(request_counts(cluster), before)
    mine = f"POST {contender.kind[2]}"
    made = sum(v for k, v in requests.items() if k != mine)
    return {
        "restart_new_object_job_seconds": round(ready, 2),
        "rss_mb_after_restart": contender.rss_mb(),
        "rss_mb_peak_after_restart": sampler.stop(),
        "restart_api_requests": made,
    }


def ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 2) if theirs else None


def ratios_of_live(rows: dict[str, Any]) -> dict[str, Any]:
    keys = ("rss_mb", "rss_mb_peak_while_created", "rss_mb_after_restart", "restart_new_object_job_seconds")
    ours = rows["operator"]
    made: dict[str, Any] = {}
    for other in ("peer", "floor"):
        if other in rows:
            made[f"operator_to_{other}"] = {key: ratio(ours[key], rows[other][key]) for key in keys}
            made[f"operator_to_{other}"]["api_requests_per_object"] = ratio(
                ours["api_requests_per_object"]["total"], rows[other]["api_requests_per_object"]["total"]
            )
    return made


def ratios_of_speed(found: dict[str, Any], other: str) -> dict[str, Any]:
    ours, theirs = found["operator"], found[other]
    return {
        "reaction_p50": ratio(ours["reaction_seconds"]["p50"], theirs["reaction_seconds"]["p50"]),
        "reaction_p95": ratio(ours["reaction_seconds"]["p95"], theirs["reaction_seconds"]["p95"]),
        "running_p50": ratio(ours["reaction_running_seconds"]["p50"], theirs["reaction_running_seconds"]["p50"]),
        "running_p95": ratio(ours["reaction_running_seconds"]["p95"], theirs["reaction_running_seconds"]["p95"]),
        "burst": ratio(ours["burst_seconds"], theirs["burst_seconds"]),
        "burst_api_requests_per_object": ratio(
            ours["burst_api_requests_per_object"]["total"], theirs["burst_api_requests_per_object"]["total"]
        ),
    }
