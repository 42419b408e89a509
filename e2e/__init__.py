"""Local Kubernetes control plane for the e2e tests (see e2e/README.md).

``e2e.localcluster`` starts and stops the cluster and holds the test helpers;
``e2e.build_toolchain`` builds its binaries from the Go module proxy.
"""
