"""The operator from its own container image, run as the operator chart runs it, on the local cluster.

`scripts/image build` (`make image`) builds the repository's Dockerfile with buildah on a local
Debian base (no registry can be reached here); this test runs that image with podman (runc) as a
real container: its own mount, PID, IPC and UTS namespaces, the image's entrypoint as PID 1, and
what the chart's Deployment asks of the pod — the chart's arguments, the non-root user, a read-only
root filesystem with the chart's writable /tmp, all capabilities dropped, no privilege escalation,
the default seccomp profile, the memory and CPU limits — and, like a kubelet, the chart
ServiceAccount's token and the cluster's CA mounted at /var/run/secrets/kubernetes.io/serviceaccount
with KUBERNETES_SERVICE_HOST/PORT set, so the operator logs in with the in-cluster config.

What differs from a pod (all forced by this machine, none by the image): the container shares the
host's network namespace, because the API server listens on the host's 127.0.0.1; so the chart's
`--liveness http://0.0.0.0:PORT/healthz` is given 127.0.0.1 instead, and the metrics address comes
from the chart's `extraArgs` (nothing here may listen beyond loopback); the ports are the chart's
`health.port`/`metrics.port` set to free ones. KUBERNETES_SERVICE_HOST is the API server's own address
(no kube-proxy, no Service IP); the token comes from the TokenRequest API but is not bound to a pod;
the emptyDir is a fresh host directory (its sizeLimit is enforced by kubelet eviction, absent here);
rlimits are set explicitly (podman's defaults need CAP_SYS_RESOURCE, which this machine withholds).
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from e2e import localcluster as lc
from tests.e2e.test_install import CHART, Release, helm

ROOT = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The runtime that works here: crun refuses this machine's hybrid cgroup layout, runc does not.
PODMAN = ("podman", "--runtime", "runc")
# podman's own default (containers.conf); more would need CAP_SYS_RESOURCE.
NPROC_LIMIT = 32768

# Pod fields that only decide where and whether a pod is scheduled or pulled: nothing to run here.
SCHEDULING_ONLY = {"affinity", "nodeSelector", "tolerations", "priorityClassName", "imagePullSecrets"}
# Container fields translated below; any other one fails the test (the chart grew something to mirror).
CONTAINER_FIELDS = {
    "name",
    "image",
    "imagePullPolicy",
    "args",
    "env",
    "ports",
    "livenessProbe",
    "readinessProbe",
    "securityContext",
    "resources",
    "volumeMounts",
}
BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bytes(quantity: str) -> int:
    for suffix, factor in BINARY_SUFFIXES.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def _cpus(quantity: str) -> str:
    return str(int(quantity[:-1]) / 1000) if quantity.endswith("m") else quantity


# -- the image ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image(operator_image: str) -> str:
    """The image of this checkout (the session's ``operator_image``)."""
    return operator_image


# -- the chart ------------------------------------------------------------------------------


class ImageRelease(Release):
    """The chart installed with no replica of its own: the container below is its one replica."""

    def __init__(self, cluster: lc.Cluster, namespace: str, name: str) -> None:
        super().__init__(cluster, namespace, name)
        self.health_port = _free_port()
        self.metrics_port = _free_port()

    def pod_spec(self) -> dict[str, Any]:
        """The Deployment's pod spec exactly as the chart rendered it (no API server defaults)."""
        manifests = yaml.safe_load_all(helm(self.cluster, "get", "manifest", self.name, "-n", self.namespace))
        (deployment,) = [m for m in manifests if m and m.get("kind") == "Deployment"]
        return dict(deployment["spec"]["template"]["spec"])


@pytest.fixture
def release(cluster: lc.Cluster, crd: None, without_shared_operator: None) -> Iterator[ImageRelease]:
    namespace = cluster.create_namespace()
    installed = ImageRelease(cluster, namespace, f"fto-img-{uuid.uuid4().hex[:6]}")
    settings = (
        f"peering.name={installed.peering}",
        "replicaCount=0",
        f"health.port={installed.health_port}",
        f"metrics.port={installed.metrics_port}",
        "extraArgs={--metrics-address,127.0.0.1}",
    )
    sets = [arg for setting in settings for arg in ("--set", setting)]
    helm(cluster, "install", installed.name, str(CHART), "-n", namespace, "--wait", "--timeout", "120s", *sets)
    try:
        yield installed
    finally:
        helm(cluster, "uninstall", installed.name, "-n", namespace, "--wait")
        cluster.delete_namespace(namespace)


# -- the container --------------------------------------------------------------------------


class ImageContainer:
    """The chart's pod spec as a podman container of the image, on the host's network."""

    def __init__(self, release: ImageRelease, image: str, workdir: Path) -> None:
        self.release, self.image, self.workdir = release, image, workdir
        self.pod_name = f"{release.name}-finetune-operator-image"
        self.cidfile = workdir / "container.id"
        self.log_path = workdir / "operator.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.spec = release.pod_spec()
        (self.container,) = self.spec["containers"]
        self.ports = {port["name"]: int(port["containerPort"]) for port in self.container["ports"]}
        self.started = 0.0
        self.healthy_after = 0.0

    # The pod's identity, as a kubelet gives it: a token of its ServiceAccount and the cluster's CA.
    def _service_account_files(self) -> Path:
        cluster, namespace = self.release.cluster, self.release.namespace
        account = self.spec["serviceAccountName"]
        assert account == self.release.account
        token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
        root_ca = cluster.get_json("configmap", "kube-root-ca.crt", "-n", namespace)
        assert root_ca is not None, "kube-controller-manager published no kube-root-ca.crt"
        directory = self.workdir / "serviceaccount"
        directory.mkdir()
        for name, text in (("token", token), ("ca.crt", root_ca["data"]["ca.crt"]), ("namespace", namespace)):
            (directory / name).write_text(text)
            (directory / name).chmod(0o644)  # a projected volume's default mode
        return directory

    def _api_server(self) -> tuple[str, int]:
        admin = yaml.safe_load(self.release.cluster.kubeconfig.read_text())
        current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
        server = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
        url = urlsplit(server["cluster"]["server"])
        assert url.hostname is not None and url.port is not None, url
        return url.hostname, url.port

    def _security_args(self) -> list[str]:
        pod = dict(self.spec["securityContext"])
        container = dict(self.container["securityContext"])
        assert pod.pop("seccompProfile") == {"type": "RuntimeDefault"}  # podman's default profile
        user, group = int(pod.pop("runAsUser")), int(pod.pop("runAsGroup"))
        if pod.pop("runAsNonRoot"):
            assert user != 0  # what the kubelet checks before it starts the container
        assert not pod, f"pod securityContext fields not mirrored here: {sorted(pod)}"
        args = [f"--user={user}:{group}"]
        if container.pop("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]  # no tmpfs of podman's own on /run, /var/tmp
        if not container.pop("allowPrivilegeEscalation"):
            args.append("--security-opt=no-new-privileges")
        args += [f"--cap-drop={cap}" for cap in container.pop("capabilities").pop("drop")]
        assert not container, f"container securityContext fields not mirrored here: {sorted(container)}"
        return args

    def _volume_args(self) -> list[str]:
        volumes = {volume["name"]: volume for volume in self.spec["volumes"]}
        args = []
        for mount in self.container["volumeMounts"]:
            volume = volumes.pop(mount["name"])
            assert set(volume) == {"name", "emptyDir"}, f"only emptyDir volumes are mirrored here: {volume}"
            source = self.workdir / f"volume-{mount['name']}"
            source.mkdir()
            source.chmod(0o777)  # as the kubelet makes an emptyDir
            args.append(f"--mount=type=bind,source={source},destination={mount['mountPath']}")
        assert not volumes, f"volumes not mounted: {sorted(volumes)}"
        return args

    def _resource_args(self) -> list[str]:
        limits = self.container["resources"].get("limits", {})  # requests only schedule
        assert set(limits) <= {"cpu", "memory"}, limits
        args = []
        if "memory" in limits:
            args.append(f"--memory={_bytes(limits['memory'])}")
        if "cpu" in limits:
            args.append(f"--cpus={_cpus(limits['cpu'])}")
        return args

    def _env_args(self) -> list[str]:
        args = []
        for variable in self.container.get("env", []):
            if variable.get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.name"}}:
                args.append(f"--env={variable['name']}={self.pod_name}")
            else:
                assert set(variable) == {"name", "value"}, f"env not mirrored here: {variable}"
                args.append(f"--env={variable['name']}={variable['value']}")
        host, port = self._api_server()
        return [*args, f"--env=KUBERNETES_SERVICE_HOST={host}", f"--env=KUBERNETES_SERVICE_PORT={port}"]

    def chart_args(self) -> list[str]:
        """The chart's arguments, with its 0.0.0.0 health address on loopback (host network here)."""
        args = [str(arg) for arg in self.container["args"]]
        return [arg.replace("http://0.0.0.0:", "http://127.0.0.1:") for arg in args]

    def command(self) -> list[str]:
        unknown = set(self.container) - CONTAINER_FIELDS
        assert not unknown, f"container fields not mirrored here: {sorted(unknown)}"
        assert "command" not in self.container  # the image's ENTRYPOINT runs
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], NPROC_LIMIT)
        return [
            *PODMAN,
            "run",
            "--rm",
            f"--cidfile={self.cidfile}",
            f"--name={self.pod_name}",
            f"--hostname={self.pod_name}",
            "--network=host",
            "--pull=never",
            f"--ulimit=nofile={nofile}:{nofile}",
            f"--ulimit=nproc={nproc}:{nproc}",
            *self._security_args(),
            *self._resource_args(),
            *self._volume_args(),
            f"--mount=type=bind,source={self._service_account_files()},destination={SERVICE_ACCOUNT_DIR},ro=true",
            *self._env_args(),
            self.image,
            *self.chart_args(),
        ]

    def url(self, port_name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[port_name]}{path}"

    def get(self, port_name: str, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(self.url(port_name, path), timeout=5) as response:
            return int(response.status), response.read().decode()

    def start(self, timeout: float = 120.0) -> None:
        """Runs the container and waits for the chart's probe (/healthz on the health port) to answer."""
        command = self.command()
        (self.workdir / "podman-run.json").write_text(json.dumps(command, indent=1))
        probe = self.container["readinessProbe"]["httpGet"]
        self.started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the container exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.get(probe["port"], probe["path"])[0] == 200:
                    self.healthy_after = time.monotonic() - self.started
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the operator in the container did not become healthy in {timeout}s:\n{self.log()}")

    def container_id(self) -> str:
        return self.cidfile.read_text().strip()

    def inspect(self) -> dict[str, Any]:
        found = subprocess.run(
            [*PODMAN, "inspect", self.container_id()], capture_output=True, text=True, check=True, timeout=60
        )
        (details,) = json.loads(found.stdout)
        return dict(details)

    def process_status(self) -> dict[str, str]:
        """/proc/PID/status of the container's PID 1, seen from the host."""
        pid = int(self.inspect()["State"]["Pid"])
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}

    def stop(self) -> int | None:
        """As a kubelet does: SIGTERM, then SIGKILL after the pod's grace period (30 s by default)."""
        if self.process is None:
            return None
        grace = int(self.spec.get("terminationGracePeriodSeconds", 30))
        if self.process.poll() is None and self.cidfile.exists():
            subprocess.run(
                [*PODMAN, "stop", f"--time={grace}", self.container_id()],
                capture_output=True,
                check=False,
                timeout=grace + 60,
            )
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
            raise

    def remove(self) -> None:
        if self.cidfile.exists():
            subprocess.run(
                [*PODMAN, "rm", "--force", "--ignore", self.container_id()],
                capture_output=True,
                check=False,
                timeout=120,
            )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""


@pytest.fixture
def container(release: ImageRelease, image: str, tmp_path: Path) -> Iterator[ImageContainer]:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: `scripts/image deps` installs it")
    running = ImageContainer(release, image, tmp_path)
    try:
        yield running
    finally:
        try:
            running.stop()
        finally:
            running.remove()


def _phase(cluster: lc.Cluster, namespace: str, name: str) -> str | None:
    found = cluster.get_json("finetunejob", name, "-n", namespace) or {}
    return (found.get("status") or {}).get("phase")


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_image_runs_a_finetunejob_to_succeeded_as_the_chart_runs_it(
    cluster: lc.Cluster, release: ImageRelease, container: ImageContainer, namespace: str
) -> None:
    container.start()
    print(f"\noperator from the image {container.image}: /healthz answered {container.healthy_after:.2f} s after run")

    # What the container got: the image's non-root user, no capability, no new privileges, seccomp.
    status = container.process_status()
    assert status["Uid"].split()[0] == status["Gid"].split()[0] == "10001", status
    assert status["CapEff"] == status["CapBnd"] == "0000000000000000", status
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
    details = container.inspect()
    assert details["Config"]["User"] == "10001:10001"
    assert [mount["Destination"] for mount in details["Mounts"] if mount["RW"]] == ["/tmp"]

    manifest = ROOT / "examples" / "basic.yaml"
    cluster.kubectl("apply", "-n", namespace, "-f", str(manifest))
    name = str(yaml.safe_load(manifest.read_text())["metadata"]["name"])
    cluster.wait_for(
        lambda: _phase(cluster, namespace, name) == "Succeeded" or None,
        what=f"FineTuneJob {namespace}/{name} to reach Succeeded (operator in the container)",
        timeout=120,
        state=lambda: cluster.describe("ftj", name, "-n", namespace) + "\n--- container log ---\n" + container.log(),
    )

    # The operator in the container did it: it is the peering's only peer, as PID 1 of its namespace.
    peering = cluster.get_json("clusterkopfpeering", release.peering)
    assert peering is not None
    peers = list((peering.get("status") or {}).keys())
    assert peers and all(peer.startswith(f"{container.pod_name}/1/") for peer in peers), peers

    # Its health and metrics ports answer; the metrics count the FineTuneJob it took to Succeeded.
    assert container.get("health", "/healthz")[0] == 200
    code, metrics = container.get("metrics", "/metrics")
    assert code == 200
    assert _metric(metrics, 'finetune_operator_finetunejobs{phase="Succeeded"}') == 1.0, metrics
    assert (_metric(metrics, 'controller_runtime_reconcile_total{controller="finetunejob",result="success"}') or 0) > 0

    log = container.log()
    assert "Forbidden" not in log and "forbidden" not in log, log[-6000:]
    assert "Read-only file system" not in log and "Permission denied" not in log, log[-6000:]

    # SIGTERM to PID 1 (podman stop, as a kubelet would) ends the operator cleanly within the grace period.
    assert container.stop() == 0, container.log()[-6000:]
