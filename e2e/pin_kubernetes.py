"""Regenerate the Kubernetes wrapper module for another release: ``e2e/build_toolchain.py pin-kubernetes vX.Y.Z``
(which runs ``python -m e2e.pin_kubernetes vX.Y.Z``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request

from e2e import build_toolchain


def pin_kubernetes(version: str) -> None:
    """Rewrite e2e/toolchain/kubernetes/go.mod for ``version`` and run ``go mod tidy``.

    k8s.io/kubernetes replaces its staging modules with local directories, which only
    works in the main module, so the wrapper replaces each staging module with the
    matching published v0.X.Y version. The list is taken from the release's own go.mod.
    """
    go = build_toolchain._go()
    proxy = (os.environ.get("GOPROXY") or "https://proxy.golang.org").split(",")[0].split("|")[0]
    if proxy in ("direct", "off"):
        raise build_toolchain.BuildError("pin-kubernetes needs a module proxy in GOPROXY")
    with urllib.request.urlopen(f"{proxy}/k8s.io/kubernetes/@v/{version}.mod", timeout=60) as resp:
        upstream = resp.read().decode()
    staging = sorted(set(re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", upstream, re.MULTILINE)))
    if not staging:
        raise build_toolchain.BuildError(f"no staging replaces found in k8s.io/kubernetes@{version} go.mod")
    go_line = re.search(r"^go (\S+)", upstream, re.MULTILINE)
    staging_version = "v0." + version.lstrip("v").split(".", 1)[1]
    lines = [
        "// Wrapper module pinning the Kubernetes release built for the local e2e control plane.",
        "// Regenerate with: e2e/build_toolchain.py pin-kubernetes vX.Y.Z",
        "module finetune-operator.local/e2e/toolchain/kubernetes",
        "",
        f"go {go_line.group(1) if go_line else '1.26.0'}",
        "",
        f"require k8s.io/kubernetes {version}",
        "",
        "replace (",
        *(f"\t{mod} => {mod} {staging_version}" for mod in staging),
        ")",
        "",
    ]
    wrapper = build_toolchain.WRAPPERS_DIR / "kubernetes"
    (wrapper / "go.mod").write_text("\n".join(lines))
    (wrapper / "go.sum").write_text("")
    env = {**build_toolchain._go_env(), "GOFLAGS": "-mod=mod"}  # tidy must write go.mod and go.sum
    subprocess.run([go, "mod", "tidy"], cwd=wrapper, env=env, check=True)
    build_toolchain.log(f"pinned Kubernetes {version} ({len(staging)} staging modules at {staging_version})")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        pin_kubernetes(args[0])
    except build_toolchain.BuildError as exc:
        build_toolchain.log(f"FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
