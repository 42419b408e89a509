"""The real node's parts that are not Go binaries: Debian packages and the node's two images.

* ``runc`` and the CNI plugins (bridge, host-local, loopback) from Debian (``containernetworking-plugins``),
  ``nft`` for kube-proxy's nftables mode (``nftables``), and ``gcc``/``libc6-dev`` for the pause
  binary: installed with apt when missing (root only);
* the pause image: ``e2e/toolchain/pause/pause.c`` built with ``gcc -static``, one layer;
* the stand-in trainer image (``e2e/standin/phisonai2.py`` as ``/usr/local/bin/phisonai2``, a PyYAML
  wheel from PyPI, a tiny model at the chart's default ``modelNameOrPath``) as one layer on the
  project's local Debian base (``scripts/image base``: debootstrap, cached under ~/.cache);
* a crane image (the toolchain's crane at ``/ko-app/crane``, as upstream's, on the same base) for the
  training pod's push step.

Both images are OCI archives in ``<toolchain>/share/node/`` (``images.json`` names them); the node
imports them into containerd at start (``ctr images import``), so no registry is needed. Each is
made again only when its inputs change (their hash is the image's tag). Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from e2e import ociarchive

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parent
PAUSE_SOURCE = E2E_DIR / "toolchain" / "pause" / "pause.c"
STANDIN_SOURCE = E2E_DIR / "standin" / "phisonai2.py"
IMAGE_SCRIPT = REPO_ROOT / "scripts" / "image"

#: Debian packages of the node: what each provides (checked before apt runs).
APT_PACKAGES: dict[str, tuple[str, ...]] = {
    "runc": ("/usr/sbin/runc",),
    "containernetworking-plugins": ("/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback"),
    # kube-proxy's nftables mode runs nft (sigs.k8s.io/knftables); 1.0.6 in bookworm (it needs >= 1.0.1).
    "nftables": ("/usr/sbin/nft",),
    "gcc": ("/usr/bin/gcc",),
    "libc6-dev": ("/usr/lib/x86_64-linux-gnu/libc.a",),
}
CNI_BIN_DIR = "/usr/lib/cni"
RUNC = "/usr/sbin/runc"

PAUSE_REPOSITORY = "localhost/fto/pause"
TRAINER_REPOSITORY = "localhost/fto/stand-in-trainer"
#: crane for the training pod's push step (spec.output.image.tools.crane), at the path of the
#: upstream image (ko's /ko-app/crane), on the same Debian base (the init container copies it with cp).
CRANE_REPOSITORY = "localhost/fto/crane"
CRANE_PATH = "ko-app/crane"
#: The images the node imports (images.json keys).
IMAGE_KINDS = ("pause", "trainer", "crane")
#: PyYAML in the trainer image (the trainer reads its configs with PyYAML: YAML 1.1).
PYYAML = "PyYAML==6.0.3"
PYTHON_SITE = "usr/local/lib/python3.11/dist-packages"
#: The chart's default modelNameOrPath: a FineTuneJob without a model finds this tiny one.
MODEL_DIR = "mnt/data/models/TinyLlama-1.1B-Chat-v1.0"
#: Bump when the way an image is made changes (its tag follows).
PAUSE_RECIPE = "1"
TRAINER_RECIPE = "1"
CRANE_RECIPE = "1"

Log = Callable[[str], None]


class NodeBuildError(RuntimeError):
    """A step of the node's build failed; the message says which and why."""


def unsupported_reason() -> str | None:
    """Why this machine cannot run the real node, or None when it can."""
    if os.environ.get("FTO_REAL_NODE", "").lower() in ("0", "false", "no", "off"):
        return "FTO_REAL_NODE=0 turns it off"
    if os.uname().sysname != "Linux":
        return f"not Linux ({os.uname().sysname})"
    if os.geteuid() != 0:
        return "not root: the kubelet and containerd need root (mounts, cgroups, network namespaces)"
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    v1 = {field for line in mounts if line.split()[2:3] == ["cgroup"] for field in line.split()[3].split(",")}
    missing = [c for c in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids") if c not in v1]
    if missing:
        return (
            f"no cgroup v1 hierarchies for {', '.join(missing)} (e2e/realnode runs the kubelet on cgroup v1 "
            "hierarchies, as on the CI machine; cgroup v2 alone is not supported yet)"
        )
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    return None


def _missing_packages() -> list[str]:
    return [name for name, paths in APT_PACKAGES.items() if not all(os.path.exists(p) for p in paths)]


def install_packages(log: Log) -> None:
    missing = _missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise NodeBuildError(f"the real node needs the Debian packages {', '.join(missing)}: install them as root")
    log(f"real node: installing {' '.join(missing)} (apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise NodeBuildError(f"{' '.join(argv)} failed: {proc.stderr.strip()[-2000:]}")
    still = _missing_packages()
    if still:
        raise NodeBuildError(f"apt installed {' '.join(missing)} but {', '.join(still)} still lack their files")


def node_dir(share: Path) -> Path:
    return share / "node"


def images_file(share: Path) -> Path:
    return node_dir(share) / "images.json"


def images(share: Path) -> dict[str, dict[str, str]]:
    """``{"pause": {"name", "archive", "key"}, "trainer": {...}}`` as the last build recorded them."""
    try:
        return dict(json.loads(images_file(share).read_text()))
    except (OSError, ValueError):
        return {}


def is_ready(share: Path) -> bool:
    recorded = images(share)
    return not _missing_packages() and all(
        kind in recorded and Path(recorded[kind]["archive"]).is_file() for kind in IMAGE_KINDS
    )


def _digest(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


def _record(share: Path, kind: str, name: str, archive: Path, key: str) -> None:
    recorded = images(share)
    recorded[kind] = {"name": name, "archive": str(archive), "key": key}
    path = images_file(share)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(recorded, indent=2) + "\n")
    os.replace(tmp, path)


def _current(share: Path, kind: str, key: str) -> bool:
    found = images(share).get(kind)
    return bool(found and found.get("key") == key and Path(found["archive"]).is_file())


def _run(argv: list[str], step: str, logfile: Path, cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.write_text(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        raise NodeBuildError(f"step {step!r} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def pause_image(share: Path, logs: Path, log: Log) -> str:
    gcc = _run(["gcc", "--version"], "pause", logs / "pause.log").splitlines()[0]
    key = _digest(PAUSE_SOURCE.read_bytes(), gcc, PAUSE_RECIPE)[:12]
    if _current(share, "pause", key):
        return "cached"
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "pause"
        _run(["gcc", "-static", "-O2", "-s", "-o", str(binary), str(PAUSE_SOURCE)], "pause", logs / "pause.log")
        image = ociarchive.empty_image().add_layer(
            [ociarchive.FileEntry("pause", binary.read_bytes(), 0o755)], f"gcc -static {PAUSE_SOURCE.name}"
        )
    image = image.with_config(Entrypoint=["/pause"], User="65535:65535")
    name = f"{PAUSE_REPOSITORY}:{key}"
    archive = node_dir(share) / "pause.oci.tar"
    ociarchive.write_archive(image, name, archive)
    _record(share, "pause", name, archive, key)
    log(f"real node: pause image {name}")
    return "built"


def image_cache_dir() -> Path:
    """Where ``scripts/image`` keeps its OCI archives (the base's, the operator image's)."""
    return Path(
        os.environ.get("FTO_IMAGE_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "finetune-operator" / "image"
    )


def operator_image_archive(name: str) -> Path:
    """The OCI archive ``scripts/image build`` wrote for the operator image ``name`` (its tag is the
    hash of its inputs), e.g. to import it into the real node's containerd."""
    return image_cache_dir() / f"finetune-operator-{name.rsplit(':', 1)[1]}.oci.tar"


def _base_archive(logs: Path) -> Path:
    """The project's local Debian base (``scripts/image base``: buildah, debootstrap; cached)."""
    out = _run(["bash", str(IMAGE_SCRIPT), "base"], "trainer-base", logs / "trainer-base.log").strip().splitlines()
    name = out[-1] if out else ""
    if ":" not in name:
        raise NodeBuildError(f"scripts/image base printed no image name: {out!r}")
    archive = image_cache_dir() / f"base-{name.rsplit(':', 1)[1]}.oci.tar"
    if not archive.is_file():
        raise NodeBuildError(f"scripts/image base made {name} but its archive {archive} is missing")
    return archive


def _pyyaml_wheel(share: Path, logs: Path) -> Path:
    wheels = node_dir(share) / "wheels"
    found = sorted(wheels.glob("PyYAML-6.0.3-*.whl")) or sorted(wheels.glob("pyyaml-6.0.3-*.whl"))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "python3", "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
            "--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--implementation", "cp",
            "--abi", "cp311", "--dest", str(wheels), PYYAML,
        ],
        "trainer-pyyaml",
        logs / "trainer-pyyaml.log",
    )  # fmt: skip
    found = sorted(wheels.glob("*.whl"))
    if not found:
        raise NodeBuildError(f"pip download {PYYAML} left no wheel in {wheels}")
    return found[0]


def _wheel_entries(wheel: Path) -> list[ociarchive.FileEntry]:
    entries = []
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            mode = 0o755 if info.filename.endswith(".so") else 0o644
            entries.append(ociarchive.FileEntry(f"{PYTHON_SITE}/{info.filename}", archive.read(info), mode))
    return entries


def model_files() -> dict[str, bytes]:
    """A tiny stand-in for TinyLlama: what the stand-in trainer reads (config.json) and a weight file."""
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "stand_in": True}
    return {
        "config.json": json.dumps(config, indent=2).encode() + b"\n",
        "tokenizer_config.json": b'{"model_max_length": 2048}\n',
        "model.safetensors": b"stand-in weights\n",
    }


def trainer_image(share: Path, logs: Path, log: Log) -> str:
    wheel = _pyyaml_wheel(share, logs)
    script_key = _digest(IMAGE_SCRIPT.read_bytes())  # the base follows scripts/image's recipe
    model = model_files()
    key = _digest(
        STANDIN_SOURCE.read_bytes(),
        wheel.name,
        wheel.read_bytes(),
        script_key,
        json.dumps({k: v.hex() for k, v in model.items()}, sort_keys=True),
        TRAINER_RECIPE,
    )[:12]
    if _current(share, "trainer", key):
        return "cached"
    base = ociarchive.read_archive(_base_archive(logs))
    entries = [
        ociarchive.FileEntry("usr/local/bin/phisonai2", STANDIN_SOURCE.read_bytes(), 0o755),
        *_wheel_entries(wheel),
        *(ociarchive.FileEntry(f"{MODEL_DIR}/{name}", data) for name, data in model.items()),
    ]
    image = base.add_layer(entries, "e2e/node_build.py: the stand-in trainer phisonai2, PyYAML, a tiny model")
    labels = {"org.opencontainers.image.description": "stand-in for the aiDAPTIV+ trainer phisonai2 (e2e tests)"}
    image = image.with_config(Cmd=["phisonai2", "--help"], Labels=labels)
    name = f"{TRAINER_REPOSITORY}:{key}"
    archive = node_dir(share) / "stand-in-trainer.oci.tar"
    ociarchive.write_archive(image, name, archive)
    _record(share, "trainer", name, archive, key)
    log(f"real node: stand-in trainer image {name} ({archive.stat().st_size // 1_000_000} MB archive)")
    return "built"


def crane_image(share: Path, logs: Path, log: Log) -> str:
    """The toolchain's crane (a static Go binary) at /ko-app/crane on the Debian base (cp for the copy)."""
    crane = share.parent / "bin" / "crane"
    if not crane.is_file():
        raise NodeBuildError(f"{crane} is missing: build it first (e2e/cluster build)")
    key = _digest(crane.read_bytes(), _digest(IMAGE_SCRIPT.read_bytes()), CRANE_RECIPE)[:12]
    if _current(share, "crane", key):
        return "cached"
    base = ociarchive.read_archive(_base_archive(logs))
    image = base.add_layer([ociarchive.FileEntry(CRANE_PATH, crane.read_bytes(), 0o755)], "e2e/node_build.py: crane")
    image = image.with_config(Cmd=[f"/{CRANE_PATH}", "version"])
    name = f"{CRANE_REPOSITORY}:{key}"
    archive = node_dir(share) / "crane.oci.tar"
    ociarchive.write_archive(image, name, archive)
    _record(share, "crane", name, archive, key)
    log(f"real node: crane image {name}")
    return "built"


def build(share: Path, logs: Path, log: Log) -> None:
    """Install the node's packages and make its images (each only when missing or stale)."""
    node_dir(share).mkdir(parents=True, exist_ok=True)
    steps: list[tuple[str, Callable[[], str | None]]] = [
        ("node-packages", lambda: install_packages(log)),
        ("pause-image", lambda: pause_image(share, logs, log)),
        ("trainer-image", lambda: trainer_image(share, logs, log)),
        ("crane-image", lambda: crane_image(share, logs, log)),
    ]
    for step, action in steps:
        start = time.monotonic()
        try:
            result = action() or "present"
        except NodeBuildError:
            raise
        except Exception as exc:  # a surprise (disk full, a tool missing): name the step
            raise NodeBuildError(f"step {step!r} failed: {type(exc).__name__}: {exc}") from exc
        log(f"{step}: {result} in {time.monotonic() - start:.1f}s")
