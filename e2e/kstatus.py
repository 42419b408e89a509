"""kstatus's verdict on Kubernetes objects, as Flux, kpt and Config Sync compute it.

``compute`` runs the ``kstatus`` tool of the toolchain (``e2e/toolchain/kstatus``, built by
``e2e/cluster build``), which applies ``sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute``
to each object: ``Current``, ``InProgress``, ``Failed``, ``Terminating`` (or ``Unknown``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import build_toolchain

CURRENT = "Current"
IN_PROGRESS = "InProgress"
FAILED = "Failed"
TERMINATING = "Terminating"


class KstatusError(RuntimeError):
    """The tool is missing, refused its input, or could not judge an object."""


def default_binary() -> Path:
    return build_toolchain.bin_dir() / "kstatus"


def compute(
    objects: Sequence[Mapping[str, Any]], binary: str | os.PathLike[str] | None = None
) -> list[tuple[str, str]]:
    """(status, message) of each object, in order."""
    exe = Path(binary) if binary is not None else default_binary()
    if not exe.is_file():
        raise KstatusError(f"{exe} is missing: run `e2e/cluster build`")
    proc = subprocess.run(
        [str(exe)], input=json.dumps(list(objects)), capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise KstatusError(f"kstatus failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return _verdicts(json.loads(proc.stdout), objects)


def _verdicts(answer: list[dict[str, str]], objects: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    if len(answer) != len(objects):
        raise KstatusError(f"kstatus answered {len(answer)} verdicts for {len(objects)} objects")
    for obj, verdict in zip(objects, answer, strict=True):
        if verdict.get("error"):
            name = obj.get("metadata", {}).get("name")
            raise KstatusError(f"kstatus cannot judge {obj.get('kind')} {name}: {verdict['error']}")
    return [(v["status"], v["message"]) for v in answer]
