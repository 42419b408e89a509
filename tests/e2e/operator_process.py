"""The operator as a real process for e2e tests: started, health-checked, killed by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OperatorProcess:
    """`finetune-operator run` against a cluster, with its log in a file."""

    def __init__(self, kubeconfig: Path, log_dir: Path, extra_args: tuple[str, ...] = (), dev: bool = True) -> None:
        self.kubeconfig = kubeconfig
        self.dev = dev  # --dev: debug logs (tests); benchmarks run it as deployed
        self.log_dir = log_dir
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.metrics_port = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.starts}.log"

    def start(self, timeout: float = 60.0) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        health = f"http://127.0.0.1:{port}/healthz"
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.metrics_port = _free_port()
        command = [
            sys.executable,
            "-m",
            "finetune_operator.cli",
            "run",
            *(["--dev"] if self.dev else []),
            "--liveness",
            health,
        ]
        command += ["--metrics-port", str(self.metrics_port)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([*command, *self.extra_args], stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(health, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"the operator did not become healthy in {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL, as a crashed node would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait: kopf shuts down cleanly."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def api_requests(self) -> dict[str, float]:
        """The operator's own count of Kubernetes API requests, by operation (from /metrics)."""
        prefix = 'finetune_operator_api_requests_total{operation="'
        return {key[len(prefix) : -2]: value for key, value in self.samples().items() if key.startswith(prefix)}

    def known_finetunejobs(self) -> float:
        """FineTuneJobs the operator knows by phase: looked at, or left alone as settled (finished and
        cleaned up: those take no reconcile pass, so the reconcile counter never counts them)."""
        prefix = "finetune_operator_finetunejobs{"
        return sum(value for key, value in self.samples().items() if key.startswith(prefix))

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def samples(self) -> dict[str, float]:
        """The operator's /metrics as {'name{labels}': value}."""
        found: dict[str, float] = {}
        for line in self.metrics().splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                found[key] = float(value)
        return found

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""
