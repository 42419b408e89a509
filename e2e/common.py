"""What every part of the local cluster shares: names, errors, logging, bounded polling."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

E2E_DIR = Path(__file__).resolve().parent

PREFIX = "e2e.finetune.aidaptiv.io"
START_DELAY_ANNOTATION = f"{PREFIX}/start-delay"
RUN_DURATION_ANNOTATION = f"{PREFIX}/run-duration"
FAIL_ANNOTATION = f"{PREFIX}/fail"
EXIT_CODE_ANNOTATION = f"{PREFIX}/exit-code"
FAIL_MESSAGE_ANNOTATION = f"{PREFIX}/fail-message"
COMPLETE_MESSAGE_ANNOTATION = f"{PREFIX}/complete-message"
HOLD_ANNOTATION = f"{PREFIX}/hold"
#: Label put on cluster-scoped objects a test helper creates for a namespace (for cleanup).
NAMESPACE_LABEL = f"{PREFIX}/namespace"
#: Annotation kwok selects its nodes by.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_PRESENT_LABEL = "phison.com/ai100-present"

#: Selector keys of the namespace lists in the pod stages (see e2e/kwok/stages.yaml).
HOLD_NAMESPACES_KEY = ".metadata.namespace"
FAIL_NAMESPACES_KEY = ".metadata | .namespace"
POD_END_STAGES = ("e2e-pod-complete", "e2e-pod-fail", "e2e-pod-fail-namespace")

#: Put in the environment of every process of a cluster, so leftovers are found without state.json.
ENV_MARKER = "FTO_E2E_CLUSTER_DIR"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ClusterError(RuntimeError):
    """The cluster could not be started, reached or stopped; the message says why."""


class ProcessExited(ClusterError):
    """A process of the cluster exited while it should run (``wait_until`` stops at once)."""


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def clusters_root() -> Path:
    override = os.environ.get("FTO_CLUSTERS_DIR")
    if override:
        return Path(override).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "finetune-operator" / "clusters"


def parse_duration_ms(text: str) -> int:
    """``"3s"``, ``"500ms"``, ``"2m"`` or a bare number of seconds -> milliseconds."""
    text = text.strip()
    units = (("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000))
    for suffix, factor in units:
        if text.endswith(suffix) and not (suffix == "s" and text.endswith("ms")):
            return round(float(text[: -len(suffix)]) * factor)
    return round(float(text) * 1000)


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float = 120.0,
    interval: float = 0.5,
    what: str = "condition",
    state: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; raise TimeoutError naming ``what``.

    ``state`` is called on timeout and its text goes into the error, to show the objects.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except ProcessExited:
            raise
        except Exception as exc:  # keep polling; report the last error on timeout
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{_detail(state, last_error)}")
        time.sleep(interval)


def _detail(state: Callable[[], str] | None, last_error: Exception | None) -> str:
    detail = ""
    if state is not None:
        try:
            detail = "\n" + state()
        except Exception as exc:
            detail = f"\n(could not get state: {exc})"
    if last_error is not None:
        detail += f"\nlast error: {last_error}"
    return detail
