#!/usr/bin/env python3
"""Build the local e2e toolchain from the Go module proxy.

Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok,
helm and kstatus (a small verdict tool of our own, on sigs.k8s.io/cli-utils), and for the
tests of the training container's push step crane and oci-registry (go-containerregistry's
in-memory registry with optional basic auth, a small main of our own), Kueue's manager, and the
peer of the benchmark, JobSet's and Kubeflow Trainer's managers (with their CRDs and webhook
configurations copied from their modules), with the Go toolchain on the machine, from the
wrapper modules under ``e2e/toolchain/<name>/`` (their go.mod/go.sum pin every version).

Where the machine can run the real node (root, cgroup v1; see ``e2e/node_build.py``) it also
builds the node's parts: kubelet, kube-proxy, containerd (with its runc shim and ctr), CoreDNS and our fake
device plugin from the Go module proxy, installs runc and the CNI plugins with apt, and makes the
node's images (a pause image from a static C program, the stand-in trainer on the project's local
Debian base). Elsewhere it says in one line why they are skipped. The binaries land in a cache directory outside the
repository, one per set of versions of the cluster's components::

    ${FTO_TOOLCHAIN_DIR:-~/.cache/finetune-operator/toolchain}/<k8s>-<etcd>-<kwok>-<helm>/bin

Each binary carries a stamp (hash of the Go version, the wrapper's go.mod/go.sum, the
package, the ldflags, and the wrapper's own sources if it has any), so a second run with
everything cached only checks stamps, and a new binary is built alone into an existing dir.

Usage::

    e2e/build_toolchain.py [build]          # build what is missing, print the bin dir
    e2e/build_toolchain.py build-node       # the same, and the real node's parts even if the machine cannot run them
    e2e/build_toolchain.py bin-dir           # print the bin dir (no build)
    e2e/build_toolchain.py pin-kubernetes v1.36.3   # regenerate the Kubernetes wrapper

Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parent
WRAPPERS_DIR = E2E_DIR / "toolchain"

#: Module whose version names each wrapper (the wrapper's only direct requirement).
WRAPPER_MODULES: dict[str, str] = {
    "kubernetes": "k8s.io/kubernetes",
    "etcd": "go.etcd.io/etcd/server/v3",
    "kwok": "sigs.k8s.io/kwok",
    "helm": "helm.sh/helm/v3",
}

#: Wrappers of test tools: pinned like the others, but not part of the cache dir's name, so
#: adding or moving one builds that binary alone instead of a whole new toolchain dir.
TOOL_MODULES: dict[str, tuple[str, str]] = {
    "cli-utils": ("kstatus", "sigs.k8s.io/cli-utils"),
    "go-containerregistry": ("go-containerregistry", "github.com/google/go-containerregistry"),
    # The real node (e2e/realnode.py): built only where it can run (see e2e/node_build.py).
    "containerd": ("containerd", "github.com/containerd/containerd/v2"),
    "coredns": ("coredns", "github.com/coredns/coredns"),
    "kubelet-api": ("deviceplugin", "k8s.io/kubelet"),
    # The queue controller platform teams admit training with (tests/e2e/test_kueue.py).
    "kueue": ("kueue", "sigs.k8s.io/kueue"),
    # promtool (the alert rules' unit tests) and the Prometheus server (tests/e2e/test_prometheus.py).
    "prometheus": ("prometheus", "github.com/prometheus/prometheus"),
    # The peer a platform team would run instead (e2e/peer.py, benchmarks/scale_bench.py): Kubeflow
    # Trainer's manager, and JobSet's, which Trainer's TrainJobs become.
    "jobset": ("jobset", "sigs.k8s.io/jobset"),
    "trainer": ("trainer", "github.com/kubeflow/trainer/v2"),
}

#: Tools the training container's push step calls that cannot be built here, and why (the tests
#: that need one skip with this reason while it is absent from the bin dir).
UNAVAILABLE_TOOLS: dict[str, str] = {
    "kit": (
        "the Go module proxy reachable here refuses github.com/kitops-ml/kitops "
        "and github.com/jozu-ai/kitops (403 'This module version is not available'), and no other package "
        "registry reachable here ships a kit binary (PyPI's kitops is a Python wrapper that calls it)"
    ),
}

#: kwok CRDs copied next to the binaries (kwok reads Stages, Logs and ClusterLogs from the API).
KWOK_CRDS: tuple[str, ...] = (
    "kwok.x-k8s.io_stages.yaml",
    "kwok.x-k8s.io_logs.yaml",
    "kwok.x-k8s.io_clusterlogs.yaml",
)

#: Kueue's files the e2e suite installs (e2e/kueue.py), copied from its module next to the binaries:
#: its CRDs, the conversion patches of some, and its webhook configurations.
KUEUE_FILES: tuple[str, ...] = (
    "config/components/crd/bases",
    "config/components/webhook/manifests.yaml",
)

#: The peer's files e2e/peer.py installs, copied from their modules next to the binaries: the CRDs and
#: the webhook configurations of JobSet and of Kubeflow Trainer (wrapper -> paths in its module).
PEER_FILES: dict[str, tuple[str, ...]] = {
    "jobset": ("config/components/crd/bases", "config/components/webhook/manifests.yaml"),
    "trainer": ("manifests/base/crds", "manifests/base/webhook/manifests.yaml"),
}

#: Binaries a cluster needs; ``ensure_toolchain`` checks for all of them.
BINARIES: tuple[str, ...] = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
    "kstatus",
    "kueue",
    "promtool",
    "prometheus",
    "jobset",
    "trainer-controller-manager",
)

#: Binaries of the real node (kubelet, kube-proxy, containerd, CoreDNS, the fake device plugin); checked by
#: ``is_node_built`` with the node's apt packages and images (``e2e/node_build.py``).
NODE_BINARIES: tuple[str, ...] = (
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "coredns",
    "fto-device-plugin",
)


class BuildError(RuntimeError):
    """A toolchain step failed; the message names the step and the reason."""


@dataclass(frozen=True)
class Target:
    """One binary built from one wrapper module."""

    binary: str
    wrapper: str
    package: str
    ldflags: tuple[str, ...] = field(default_factory=tuple)
    #: Files of the wrapper compiled into the binary (a wrapper with its own main package).
    sources: tuple[str, ...] = field(default_factory=tuple)
    #: Go build tags (``-tags``).
    tags: tuple[str, ...] = field(default_factory=tuple)
    #: Part of the real node: built only where the node can run, or when asked (``build-node``).
    node: bool = False


def log(message: str) -> None:
    print(f"[toolchain] {message}", file=sys.stderr, flush=True)


def read_require(wrapper: str, module: str) -> str:
    """Return the version of ``module`` required by the wrapper's go.mod."""
    gomod = WRAPPERS_DIR / wrapper / "go.mod"
    pattern = re.compile(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)")
    for line in gomod.read_text().splitlines():
        if "=>" in line:
            continue
        match = pattern.match(line)
        if match:
            return match.group(1)
    raise BuildError(f"{gomod}: no requirement on {module}")


def versions() -> dict[str, str]:
    """Pinned version of each wrapper, e.g. ``{"kubernetes": "v1.36.3", ..., "cli-utils": "v0.37.2"}``."""
    pinned = {name: read_require(name, module) for name, module in WRAPPER_MODULES.items()}
    pinned.update({name: read_require(wrapper, module) for name, (wrapper, module) in TOOL_MODULES.items()})
    return pinned


def cache_root() -> Path:
    override = os.environ.get("FTO_TOOLCHAIN_DIR")
    if override:
        return Path(override).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "finetune-operator" / "toolchain"


def version_key(pinned: dict[str, str] | None = None) -> str:
    pinned = pinned or versions()
    return "-".join(pinned[name] for name in WRAPPER_MODULES)


def toolchain_dir() -> Path:
    """Directory of this set of versions (holds ``bin/`` and ``share/``)."""
    return cache_root() / version_key()


def bin_dir() -> Path:
    return toolchain_dir() / "bin"


def share_dir() -> Path:
    return toolchain_dir() / "share"


def _k8s_version_ldflags(version: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return tuple(flags)


def targets() -> list[Target]:
    pinned = versions()
    k8s = pinned["kubernetes"]
    k8s_flags = _k8s_version_ldflags(k8s)
    helm_client_go = read_require("helm", "k8s.io/client-go")  # v0.MINOR.PATCH
    helm_k8s_minor = helm_client_go.lstrip("v").split(".")[1]
    helm_flags = (
        f"-X helm.sh/helm/v3/internal/version.version={pinned['helm']}",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
        f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={helm_k8s_minor}",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
        f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={helm_k8s_minor}",
    )
    kwok_flags = (
        f"-X sigs.k8s.io/kwok/pkg/consts.Version={pinned['kwok'].lstrip('v')}",
        f"-X sigs.k8s.io/kwok/pkg/consts.KubeVersion={k8s.lstrip('v')}",
    )
    etcd_flags = (f"-X go.etcd.io/etcd/api/v3/version.GitSHA={pinned['etcd']}",)
    kueue_flags = (f"-X sigs.k8s.io/kueue/pkg/version.GitVersion={pinned['kueue']}",)
    return [
        *_cluster_targets(k8s_flags, kwok_flags, helm_flags, etcd_flags, kueue_flags),
        *_prometheus_targets(pinned["prometheus"]),
        *_peer_targets(pinned),
        *_node_targets(pinned, k8s_flags),
    ]


#: Build tags of Prometheus: the static configs the tests scrape with need no service discovery
#: (leaving the cloud SDKs out more than halves the build), and the web UI's assets are not
#: embedded (the tests use the HTTP API only).
PROMETHEUS_TAGS = ("netgo", "remove_all_sd")


def prometheus_release(module_version: str) -> str:
    """The release a Prometheus Go module version names: ``v0.316.0`` is Prometheus 3.16.0."""
    match = re.fullmatch(r"v0\.(\d)(\d\d)\.(\d+)", module_version)
    if match is None:
        raise BuildError(f"not a Prometheus module version (v0.MNN.P): {module_version}")
    major, minor, patch = match.groups()
    return f"{major}.{int(minor)}.{patch}"


def _prometheus_targets(module_version: str) -> list[Target]:
    pkg = "github.com/prometheus/common/version"
    flags = (f"-X {pkg}.Version={prometheus_release(module_version)}", f"-X {pkg}.Revision={module_version}")
    return [
        Target(name, "prometheus", f"github.com/prometheus/prometheus/cmd/{name}", flags, tags=PROMETHEUS_TAGS)
        for name in ("promtool", "prometheus")
    ]


def _cluster_targets(
    k8s_flags: tuple[str, ...],
    kwok_flags: tuple[str, ...],
    helm_flags: tuple[str, ...],
    etcd_flags: tuple[str, ...],
    kueue_flags: tuple[str, ...],
) -> list[Target]:
    return [
        Target("etcd", "etcd", "go.etcd.io/etcd/server/v3", etcd_flags),
        Target("kwok", "kwok", "sigs.k8s.io/kwok/cmd/kwok", kwok_flags),
        Target("helm", "helm", "helm.sh/helm/v3/cmd/helm", helm_flags),
        Target("kube-apiserver", "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver", k8s_flags),
        Target("kube-controller-manager", "kubernetes", "k8s.io/kubernetes/cmd/kube-controller-manager", k8s_flags),
        Target("kube-scheduler", "kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler", k8s_flags),
        Target("kubectl", "kubernetes", "k8s.io/kubernetes/cmd/kubectl", k8s_flags),
        Target("kstatus", "kstatus", "finetune-operator.local/e2e/toolchain/kstatus", sources=("main.go",)),
        Target("crane", "go-containerregistry", "github.com/google/go-containerregistry/cmd/crane"),
        Target("kueue", "kueue", "sigs.k8s.io/kueue/cmd/kueue", kueue_flags),
        Target(
            "oci-registry",
            "go-containerregistry",
            "finetune-operator.local/e2e/toolchain/go-containerregistry/oci-registry",
            sources=("oci-registry/main.go",),
        ),
    ]


def _peer_targets(pinned: dict[str, str]) -> list[Target]:
    """JobSet's manager (its module's root package) and Kubeflow Trainer's (Trainer has no version stamp)."""
    jobset_flags = (f"-X sigs.k8s.io/jobset/pkg/version.GitVersion={pinned['jobset']}",)
    return [
        Target("jobset", "jobset", "sigs.k8s.io/jobset", jobset_flags),
        Target(
            "trainer-controller-manager", "trainer", "github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager"
        ),
    ]


#: Build tags of containerd's Makefile for static binaries without btrfs (its C headers are not
#: needed); the shim also leaves out gRPC, as upstream builds it.
CONTAINERD_TAGS = ("no_btrfs", "urfave_cli_no_docs", "osusergo", "netgo")


def _node_targets(pinned: dict[str, str], k8s_flags: tuple[str, ...]) -> list[Target]:
    containerd = pinned["containerd"]
    pkg = "github.com/containerd/containerd/v2"
    containerd_flags = (
        f"-X {pkg}/version.Version={containerd}",
        f"-X {pkg}/version.Revision={containerd}",
        f"-X {pkg}/version.Package=github.com/containerd/containerd/v2",
    )
    coredns_flags = (f"-X github.com/coredns/coredns/coremain.GitCommit={pinned['coredns']}",)
    return [
        Target("kubelet", "kubernetes", "k8s.io/kubernetes/cmd/kubelet", k8s_flags, node=True),
        Target("kube-proxy", "kubernetes", "k8s.io/kubernetes/cmd/kube-proxy", k8s_flags, node=True),
        Target("containerd", "containerd", f"{pkg}/cmd/containerd", containerd_flags, tags=CONTAINERD_TAGS, node=True),
        Target(
            "containerd-shim-runc-v2",
            "containerd",
            f"{pkg}/cmd/containerd-shim-runc-v2",
            containerd_flags,
            tags=(*CONTAINERD_TAGS, "no_grpc"),
            node=True,
        ),
        Target("ctr", "containerd", f"{pkg}/cmd/ctr", containerd_flags, tags=CONTAINERD_TAGS, node=True),
        Target("coredns", "coredns", "github.com/coredns/coredns", coredns_flags, node=True),
        Target(
            "fto-device-plugin",
            "deviceplugin",
            "finetune-operator.local/e2e/toolchain/deviceplugin",
            sources=("main.go",),
            node=True,
        ),
    ]


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        for candidate in ("/usr/local/go/bin/go", str(Path.home() / "go" / "bin" / "go")):
            if os.access(candidate, os.X_OK):
                return candidate
        raise BuildError("the Go toolchain (go) is not on PATH; install Go 1.26 or newer")
    return go


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -buildvcs=false -mod=readonly").strip()
    env.setdefault("GOTOOLCHAIN", "auto")
    return env


def _go_version(go: str) -> str:
    out = subprocess.run([go, "env", "GOVERSION"], check=True, capture_output=True, text=True, env=_go_env())
    return out.stdout.strip()


def _stamp(target: Target, go_version: str) -> str:
    digest = hashlib.sha256()
    wrapper = WRAPPERS_DIR / target.wrapper
    for part in (
        go_version,
        target.package,
        " ".join(target.ldflags),
        (wrapper / "go.mod").read_text(),
        (wrapper / "go.sum").read_text(),
        # Only wrappers with sources hash them: the stamps of the others stay as they were.
        *((wrapper / name).read_text() for name in target.sources),
        # Likewise build tags: only targets with tags hash them.
        *((" ".join(("tags", *target.tags)),) if target.tags else ()),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another build holding {path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_step(step: str, argv: Sequence[str], cwd: Path, logfile: Path) -> None:
    """Run a build command, reporting progress every minute; raise BuildError on failure."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("w") as out:
        out.write("$ " + " ".join(argv) + "\n")
        out.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=_go_env(), stdout=out, stderr=subprocess.STDOUT)
        start = time.monotonic()
        next_report = 60.0
        while True:
            try:
                rc = proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - start
                if elapsed >= next_report:
                    log(f"  {step}: still building ({elapsed / 60:.0f} min so far)")
                    next_report += 60.0
    if rc != 0:
        tail = "\n".join(logfile.read_text().splitlines()[-40:])
        raise BuildError(f"step {step!r} failed (exit {rc}); last lines of {logfile}:\n{tail}")


def _build_target(target: Target, go: str, go_version: str, bins: Path, logs: Path) -> str:
    """Build one binary unless its stamp matches; return "cached" or "built"."""
    stamps = bins / ".stamps"
    stamp_file = stamps / f"{target.binary}.sha256"
    wanted = _stamp(target, go_version)
    exe = bins / target.binary
    if exe.exists() and stamp_file.exists() and stamp_file.read_text().strip() == wanted:
        return "cached"
    tmp = bins / f".{target.binary}.tmp"
    ldflags = " ".join(("-s", "-w", *target.ldflags))
    tags = ["-tags", ",".join(target.tags)] if target.tags else []
    argv = [go, "build", "-trimpath", *tags, "-ldflags", ldflags, "-o", str(tmp), target.package]
    _run_step(target.binary, argv, WRAPPERS_DIR / target.wrapper, logs / f"{target.binary}.log")
    os.replace(tmp, exe)
    stamps.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(wanted + "\n")
    return "built"


def _module_dir(go: str, step: str, wrapper: str, module: str, logs: Path) -> Path:
    """Where the Go module cache holds the wrapper's version of ``module`` (downloaded if need be)."""
    _run_step(step, [go, "mod", "download", module], WRAPPERS_DIR / wrapper, logs / f"{step}.log")
    out = subprocess.run(
        [go, "list", "-m", "-f", "{{.Dir}}", module],
        cwd=WRAPPERS_DIR / wrapper,
        env=_go_env(),
        capture_output=True,
        text=True,
    )
    if out.returncode != 0 or not out.stdout.strip():
        raise BuildError(f"step {step!r} failed: go list -m {module}: {out.stderr.strip()}")
    return Path(out.stdout.strip())


def _copy_kwok_crds(go: str, logs: Path) -> str:
    dest = share_dir() / "kwok-crds"
    if all((dest / name).exists() for name in KWOK_CRDS):
        return "cached"
    src = _module_dir(go, "kwok-crds", "kwok", "sigs.k8s.io/kwok", logs) / "kustomize" / "crd" / "bases"
    dest.mkdir(parents=True, exist_ok=True)
    for name in KWOK_CRDS:
        if not (src / name).exists():
            raise BuildError(f"step 'kwok-crds' failed: {src / name} not found in the kwok module")
        shutil.copyfile(src / name, dest / name)
    return "copied"


def kueue_dir() -> Path:
    """Kueue's CRDs and webhook configurations, as its module ships them (``KUEUE_FILES``)."""
    return share_dir() / f"kueue-{versions()['kueue']}"


def _copy_kueue_files(go: str, logs: Path) -> str:
    return _copy_module_files(go, logs, "kueue", KUEUE_FILES, kueue_dir())


def peer_dir(wrapper: str) -> Path:
    """The files of one of the peer's modules (``PEER_FILES``), e.g. ``share/jobset-v0.11.1``."""
    return share_dir() / f"{wrapper}-{versions()[wrapper]}"


def _copy_module_files(go: str, logs: Path, wrapper: str, paths: Sequence[str], dest: Path) -> str:
    """Copy files or directories of a wrapper's module into ``dest`` (by their last name)."""
    if all((dest / Path(path).name).exists() for path in paths):
        return "cached"
    step = f"{wrapper}-files"
    _, module = TOOL_MODULES[wrapper]
    src = _module_dir(go, step, wrapper, module, logs)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in paths:
        found = src / path
        if not found.exists():
            raise BuildError(f"step {step!r} failed: {found} not found in the {wrapper} module")
        if found.is_dir():
            shutil.copytree(found, tmp / found.name)
        else:
            shutil.copyfile(found, tmp / found.name)
    for each in tmp.rglob("*"):  # the module cache is read-only; the copies need not be
        each.chmod(0o755 if each.is_dir() else 0o644)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return "copied"


def is_built() -> bool:
    """True when every binary, the kwok CRDs, Kueue's and the peer's files exist (stamps are not checked)."""
    bins = bin_dir()
    return (
        all((bins / name).exists() for name in BINARIES)
        and all((share_dir() / "kwok-crds" / name).exists() for name in KWOK_CRDS)
        and all((kueue_dir() / Path(path).name).exists() for path in KUEUE_FILES)
        and all(
            (peer_dir(wrapper) / Path(path).name).exists() for wrapper, paths in PEER_FILES.items() for path in paths
        )
    )


def is_node_built() -> bool:
    """True when the real node's binaries, apt packages and images are in place (stamps unchecked)."""
    from e2e import node_build  # the real node's non-Go parts; imported late (script use)

    bins = bin_dir()
    return all((bins / name).exists() for name in NODE_BINARIES) and node_build.is_ready(share_dir())


def build(only: Sequence[str] = (), node: bool | None = None) -> Path:
    """Build every missing or stale binary; return the bin dir. Raises BuildError.

    ``node``: also the real node's parts (True), not them (False), or them where the machine can
    run the node (None: root and cgroup v1; otherwise one line says why they are skipped).
    """
    from e2e import node_build

    if node is None:
        reason = node_build.unsupported_reason()
        node = reason is None
        if reason is not None and not only:
            log(f"real node: not built ({reason}); its tests will skip saying so")
    pinned = versions()
    go = _go()
    go_version = _go_version(go)
    root = toolchain_dir()
    bins = root / "bin"
    logs = root / "logs"
    bins.mkdir(parents=True, exist_ok=True)
    log(f"versions: {', '.join(f'{k} {v}' for k, v in pinned.items())}; {go_version}")
    log(f"bin dir: {bins}")
    total_start = time.monotonic()
    with _lock(root / ".build.lock"):
        for target in targets():
            if only and target.binary not in only:
                continue
            if target.node and not node and not only:
                continue
            start = time.monotonic()
            log(f"{target.binary}: checking ({target.package})")
            try:
                result = _build_target(target, go, go_version, bins, logs)
            except BuildError:
                raise
            except Exception as exc:  # a surprise (disk full, permissions): name the step
                raise BuildError(f"step {target.binary!r} failed: {exc}") from exc
            log(f"{target.binary}: {result} in {time.monotonic() - start:.1f}s")
        for name, reason in UNAVAILABLE_TOOLS.items():
            if not only or name in only:
                log(f"{name}: not built: {reason}")
        if not only:
            start = time.monotonic()
            result = _copy_kwok_crds(go, logs)
            log(f"kwok-crds: {result} in {time.monotonic() - start:.1f}s")
            start = time.monotonic()
            result = _copy_kueue_files(go, logs)
            log(f"kueue-files: {result} in {time.monotonic() - start:.1f}s")
            for wrapper, paths in PEER_FILES.items():
                start = time.monotonic()
                result = _copy_module_files(go, logs, wrapper, paths, peer_dir(wrapper))
                log(f"{wrapper}-files: {result} in {time.monotonic() - start:.1f}s")
        if node and not only:
            try:
                node_build.build(share_dir(), logs, log)
            except node_build.NodeBuildError as exc:
                raise BuildError(str(exc)) from exc
    log(f"toolchain ready in {time.monotonic() - total_start:.1f}s")
    return bins


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else "build"
    try:
        if command == "build":
            print(build(only=args))
        elif command == "build-node" and not args:
            print(build(node=True))
        elif command == "bin-dir":
            print(bin_dir())
        elif command == "versions":
            print(json.dumps(versions(), indent=2))
        elif command == "pin-kubernetes" and len(args) == 1:
            # Its own process: it uses this module's helpers, and this module does not import it back.
            return subprocess.run([sys.executable, "-m", "e2e.pin_kubernetes", args[0]], cwd=E2E_DIR.parent).returncode
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except BuildError as exc:
        log(f"FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(E2E_DIR.parent))  # the repo root: package "e2e" (node_build, pin-kubernetes)
    sys.exit(main())
