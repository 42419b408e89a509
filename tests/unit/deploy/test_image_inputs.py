"""`scripts/image name`: the image's tag is a hash of exactly what the build reads.

`make image` rebuilds only when the tag changes, so a change of the Dockerfile or of anything the
.dockerignore lets into the build context must give a new tag, and nothing else may (byte code,
egg-info, other files of the repository). Runs the script on a copy of those files; no buildah.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CONTEXT = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for file in CONTEXT:
        shutil.copy(ROOT / file, tmp_path / file)
    skipped = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "operator", tmp_path / "operator", ignore=skipped)
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "image", tmp_path / "scripts" / "image")
    (tmp_path / "tests").mkdir()
    return tmp_path


def name(checkout: Path) -> str:
    result = subprocess.run(
        ["bash", str(checkout / "scripts" / "image"), "name"], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


def test_the_tag_is_stable_and_names_the_local_repository(checkout: Path) -> None:
    first = name(checkout)
    assert first == name(checkout)
    repository, _, tag = first.partition(":")
    assert repository == "localhost/finetune-operator"
    assert len(tag) == 12 and all(c in "0123456789abcdef" for c in tag)


@pytest.mark.parametrize("changed", ["Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "operator/new.py"])
def test_a_change_of_what_the_build_reads_gives_a_new_tag(checkout: Path, changed: str) -> None:
    before = name(checkout)
    path = checkout / changed
    path.write_text((path.read_text() if path.exists() else "") + "\n# changed\n")
    assert name(checkout) != before


def test_what_the_build_context_leaves_out_does_not_change_the_tag(checkout: Path) -> None:
    before = name(checkout)
    package = next((checkout / "operator").iterdir())
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (checkout / "operator" / "finetune_operator.egg-info").mkdir()
    (checkout / "operator" / "finetune_operator.egg-info" / "PKG-INFO").write_text("x")
    (checkout / "tests" / "test_x.py").write_text("x = 1\n")
    assert name(checkout) == before


def test_the_build_context_is_what_the_tag_hashes() -> None:
    """The files hashed by scripts/image are those .dockerignore lets in (plus the Dockerfile)."""
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] == "!"}
    assert allowed == {"pyproject.toml", "README.md", "operator"}
    script = (ROOT / "scripts" / "image").read_text()
    assert "sha256sum Dockerfile .dockerignore pyproject.toml README.md" in script
    assert "find operator -type f" in script
