"""Prometheus in the toolchain: promtool and the server, built from the pinned module with its release stamped."""

from __future__ import annotations

import pytest

from e2e import build_toolchain
from tests.toolchain import run_tool


def test_the_module_version_names_the_release() -> None:
    assert build_toolchain.versions()["prometheus"] == "v0.316.0"
    assert build_toolchain.prometheus_release("v0.316.0") == "3.16.0"
    assert build_toolchain.prometheus_release("v0.300.12") == "3.0.12"
    with pytest.raises(build_toolchain.BuildError, match=r"not a Prometheus module version \(v0.MNN.P\): v3.16.0"):
        build_toolchain.prometheus_release("v3.16.0")


def test_both_binaries_are_built_without_service_discovery_and_required() -> None:
    by_name = {t.binary: t for t in build_toolchain.targets()}
    for name in ("promtool", "prometheus"):
        target = by_name[name]
        assert (target.wrapper, target.package) == ("prometheus", f"github.com/prometheus/prometheus/cmd/{name}")
        assert target.tags == ("netgo", "remove_all_sd")
        assert target.ldflags == (
            "-X github.com/prometheus/common/version.Version=3.16.0",
            "-X github.com/prometheus/common/version.Revision=v0.316.0",
        )
        assert not target.node
        assert name in build_toolchain.BINARIES


@pytest.mark.parametrize("name", ["promtool", "prometheus"])
def test_the_built_binary_reports_its_release(name: str) -> None:
    assert run_tool(name, "--version").stdout.startswith(f"{name}, version 3.16.0 (branch: , revision: v0.316.0)")
