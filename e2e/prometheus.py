"""A real Prometheus (the toolchain's, built by e2e/build_toolchain.py) as a process on 127.0.0.1.

It scrapes the targets it is given (static configs: the toolchain's build has no service discovery),
evaluates rule files (the shipped alert rules), keeps its data in a directory of the caller (a test's
tmp dir), and is stopped by its pid. Its HTTP API is the whole interface: ``query``, ``query_range``,
``alerts``, ``metric_names``. No Alertmanager: an alert's state is read from the API.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from . import build_toolchain, processes
from .commands import Component
from .common import ClusterError, log

T = TypeVar("T")


class PrometheusError(ClusterError):
    """Prometheus did not start, or its API answered with an error."""


def config(jobs: Mapping[str, Sequence[str]], rule_files: Sequence[Path], interval: str) -> dict[str, Any]:
    """prometheus.yml: one static scrape job per name (``host:port`` targets), the rule files evaluated as often."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(path.resolve()) for path in rule_files],
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": list(targets)}]} for name, targets in jobs.items()
        ],
    }


class Prometheus:
    """``prometheus`` scraping ``jobs`` ({job name: [host:port, ...]}), its data and log under ``home``."""

    def __init__(
        self, home: Path, jobs: Mapping[str, Sequence[str]], rule_files: Sequence[Path] = (), interval: str = "1s"
    ) -> None:
        self.home = home
        self.jobs = jobs
        self.rule_files = rule_files
        self.interval = interval
        self.port = 0
        self.record: processes.ProcessRecord | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        binary = build_toolchain.bin_dir() / "prometheus"
        if not binary.is_file():
            raise PrometheusError(f"{binary} is missing: run `e2e/cluster build`")
        self.home.mkdir(parents=True, exist_ok=True)
        settings = self.home / "prometheus.yml"
        settings.write_text(yaml.safe_dump(config(self.jobs, self.rule_files, self.interval)))
        self.port = processes.free_port()
        argv = [
            str(binary),
            f"--config.file={settings}",
            f"--storage.tsdb.path={self.home / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        component = Component("prometheus", argv, f"{self.url}/-/ready", "none", {})
        self.record = processes.spawn(component, self.home, self.home / "prometheus.log")
        processes.wait_healthy(self.record, None, timeout)
        log(f"Prometheus is up (pid {self.record.pid}, {self.url})")

    def stop(self) -> None:
        if self.record is not None and processes.is_same_process(self.record.pid, self.record.starttime):
            processes.stop_pids([self.record.pid])
        self.record = None

    def log(self) -> str:
        try:
            return (self.home / "prometheus.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # -- its HTTP API ---------------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a /api/v1 answer; PrometheusError with its ``error`` when it failed."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            answer = json.loads(error.read() or b"{}")
        if answer.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant vector: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[dict[str, Any]]:
        """A range: ``[{"metric": {...}, "values": [[t, "v"], ...]}, ...]``."""
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step)
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now: ``[{"labels": {...}, "state": "firing", ...}, ...]``."""
        return list(self.api("alerts")["alerts"])

    def metric_names(self, selector: str, start: float) -> set[str]:
        """Names of the series matching ``selector`` stored since ``start``."""
        names = self.api("label/__name__/values", **{"match[]": selector, "start": f"{start:.3f}"})
        return set(names)

    def wait_for(self, found: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
        """The first non-empty answer of ``found`` (polled); TimeoutError naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.record is not None, "Prometheus is not running"
            processes.check_running(self.record)
            answer = found()
            if answer:
                return answer
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus: no {what} after {timeout:.0f}s; its log:\n{self.log()}")
            time.sleep(0.5)
