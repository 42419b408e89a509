"""Local Kubernetes control plane for the e2e tests (see e2e/README.md).

``e2e.localcluster`` gathers the public names (the cluster, its handle, the test helpers; the
code is in the modules it names); ``e2e.build_toolchain`` builds the binaries from the Go
module proxy; ``e2e.kstatus`` runs the kstatus verdict tool.
"""
