"""The local toolchain's binaries (helm, kubectl, kstatus) for tests: required in CI, a skip elsewhere."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from e2e.build_toolchain import UNAVAILABLE_TOOLS, bin_dir


def tool(name: str) -> str:
    """Path of a toolchain binary built by `e2e/cluster build`; CI fails without it, a laptop skips."""
    path = Path(bin_dir()) / name
    if path.is_file():
        return str(path)
    message = f"{path} is missing: run `e2e/cluster build`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def optional_tool(name: str) -> str:
    """Path of a tool that cannot be built here (`UNAVAILABLE_TOOLS`, e.g. kit): a skip with the reason, in CI too.

    A tool not listed there is required like any other (`tool`). A binary put into the bin dir by hand is used.
    """
    path = Path(bin_dir()) / name
    if path.is_file():
        return str(path)
    reason = UNAVAILABLE_TOOLS.get(name)
    if reason is None:
        return tool(name)
    pytest.skip(f"{name} is not in the toolchain: {reason}; a {name} binary at {path} runs this test")


def run_tool(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([tool(name), *args], capture_output=True, text=True, check=False, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"{name} {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result
