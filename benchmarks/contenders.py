"""The three controllers benchmarks/scale_bench.py measures side by side, behind one shape, and what it
measures them with: the processes' RSS sampled in a thread, and the API server's own request counters.

* ``floor``: benchmarks/floor.py, the least a Python controller pays (one watch, a ConfigMap and a Job);
* ``operator``: ``finetune-operator run`` watching one namespace;
* ``peer``: Kubeflow Trainer v2 and JobSet (e2e/peer.py), TrainJob -> JobSet -> Job, on the runtime of
  1 ai100; watching the whole cluster, as they are shipped (each phase has a namespace of its own and
  the others are stopped while one is measured).

Each makes one batch Job per object: the floor's and the operator's are named after the FineTuneJob,
the peer's ``<TrainJob>-node-0``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from e2e.peer import AI100, Peer, rss_kb, trainjob  # noqa: E402

from e2e import localcluster as lc  # noqa: E402
from tests.e2e.operator_process import OperatorProcess  # noqa: E402

FTJ = ("finetune.aidaptiv.io", "v1alpha1", "finetunejobs")
TRAINJOB = ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
LIGHT = {"schedulerName": "", "resources": {"requests": {"cpu": "1m"}, "limits": {"cpu": "10m"}}}
#: A FineTuneJob whose pod runs on a kwok GPU node asks for what the peer's runtime asks for.
ON_GPU = {
    "schedulerName": "",
    "resources": {"requests": {"cpu": "1m", AI100: "1"}, "limits": {"cpu": "10m", AI100: "1"}},
}
#: Requests of the API server's counters that belong to no controller's work: leases (every component's
#: heartbeat), kwok's node status, and non-resource URLs (/metrics, /readyz: this benchmark's own reads).
BACKGROUND_RESOURCES = ("leases", "nodes", "")


def finetunejob(name: str, suspend: bool) -> dict[str, Any]:
    spec = {"suspend": suspend, **(LIGHT if suspend else ON_GPU)}
    return {"apiVersion": f"{FTJ[0]}/{FTJ[1]}", "kind": "FineTuneJob", "metadata": {"name": name}, "spec": spec}


class Contender:
    """One controller: started for one namespace, killed and started again, stopped; its objects."""

    name = ""
    kind = FTJ

    def start(self, namespace: str) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def body(self, name: str, suspend: bool) -> dict[str, Any]:
        return finetunejob(name, suspend)

    def job_of(self, name: str) -> str:
        return name

    def rss_mb(self) -> float:
        return round(sum(rss_kb(pid) for pid in self.pids()) / 1024, 1)


class FloorContender(Contender):
    name = "floor"

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        self.kubeconfig, self.workdir = kubeconfig, workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, namespace: str) -> None:
        self.starts += 1
        log = self.workdir / f"floor-{self.starts}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, str(ROOT / "benchmarks" / "floor.py"), "--namespace", namespace]
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while "watching" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _end(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.process = None

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process is not None else []


class OperatorContender(Contender):
    name = "operator"

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        self.kubeconfig, self.workdir = kubeconfig, workdir
        self.process: OperatorProcess | None = None
        self.namespace = ""

    def start(self, namespace: str) -> None:
        if self.process is None or self.namespace != namespace:
            args = ("--namespace", namespace, "--metrics-address", "127.0.0.1", "--log-interval", "15")
            self.process = OperatorProcess(self.kubeconfig, self.workdir / namespace, args, dev=False)  # as deployed
            self.namespace = namespace
        self.process.start(timeout=120)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def pids(self) -> list[int]:
        running = self.process is not None and self.process.process is not None
        return [self.process.process.pid] if running and self.process.process.poll() is None else []  # type: ignore[union-attr]


class PeerContender(Contender):
    name = "peer"
    kind = TRAINJOB

    def __init__(self, local: lc.LocalCluster) -> None:
        self.peer = Peer(local)

    def start(self, namespace: str) -> None:
        self.peer.start()

    def kill(self) -> None:
        self.peer.kill()

    def stop(self) -> None:
        self.peer.stop(keep_webhooks=True)  # no one else creates the peer's kinds meanwhile

    def pids(self) -> list[int]:
        return self.peer.pids()

    def body(self, name: str, suspend: bool) -> dict[str, Any]:
        return trainjob(name, suspend=suspend)

    def job_of(self, name: str) -> str:
        return f"{name}-node-0"

    def rss_by_process_mb(self) -> dict[str, float]:
        return {name: round(kb / 1024, 1) for name, kb in self.peer.rss_kb().items()}


class RssSampler:
    """The largest RSS of a contender's processes, sampled every ``interval`` seconds in a thread."""

    def __init__(self, contender: Contender, interval: float = 0.2) -> None:
        self.contender, self.interval = contender, interval
        self.peak = 0.0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.contender.rss_mb())
            time.sleep(self.interval)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return self.peak


def request_counts(cluster: lc.Cluster) -> dict[str, float]:
    """The API server's ``apiserver_request_total`` summed by "VERB resource[/subresource]", without
    the background (``BACKGROUND_RESOURCES``)."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in _split_labels(labels_text))
        resource = labels.get("resource", "").strip('"')
        if resource in BACKGROUND_RESOURCES:
            continue
        sub = labels.get("subresource", "").strip('"')
        key = f"{labels.get('verb', '').strip(chr(34))} {resource}{'/' + sub if sub else ''}"
        counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def _split_labels(text: str) -> list[str]:
    """``a="x",b="y,z"`` -> ``['a="x"', 'b="y,z"']`` (a comma inside quotes stays)."""
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    if current:
        parts.append(current)
    return parts


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after if after[key] - before.get(key, 0.0) > 0}


def wait_quiet(cluster: lc.Cluster, window: float = 3.0, most: float = 2.0, timeout: float = 300.0) -> float:
    """Until the API server served at most ``most`` requests (background left out) in ``window`` seconds:
    the controller's work on what was created is done. Returns the seconds waited."""
    start = time.monotonic()
    before = request_counts(cluster)
    while time.monotonic() - start < timeout:
        time.sleep(window)
        now = request_counts(cluster)
        if sum(delta(now, before).values()) <= most:
            break
        before = now
    return round(time.monotonic() - start, 1)
