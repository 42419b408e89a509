"""``LocalCluster``: brings the control plane of plain processes up and down, and restarts its parts.

The work dir holds ``pki/``, ``etcd-data/``, ``logs/<component>.log``, ``kubeconfig`` and
``state.json`` (ports, and for each process its pid, start time, argv, environment and health
URL: enough for ``down`` and for ``start_component`` from another process, e.g. the CLI).
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import time
from pathlib import Path
from typing import Any

from . import build_toolchain, commands, nodeconfig, processes, realnode
from .commands import Component, HealthTLS, Layout, Ports
from .common import COMPONENTS, E2E_DIR, ENV_MARKER, GPU_PRESENT_LABEL, ClusterError, clusters_root, log, wait_until
from .config import ClusterConfig, node_manifests
from .handle import Cluster
from .pki import admin_ssl, admin_ssl_any_name, insecure_ssl, make_pki, write_kubeconfig
from .processes import ProcessRecord, StateFile, is_same_process, pid_alive

#: Order of ``down``: clients first, then the API server, then etcd (each exits quicker so).
STOP_ORDER = (("kwok", "kube-scheduler", "kube-controller-manager"), ("kube-apiserver",), ("etcd",))


class LocalCluster:
    """A cluster of plain processes in a work dir; ``up``/``down``/``status``/``kill_component``/``start_component``."""

    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        self.workdir = (self.config.workdir or clusters_root() / self.config.name).resolve()
        self.pki = self.workdir / "pki"
        self.logs = self.workdir / "logs"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.state_file = self.workdir / "state.json"
        self.marker = f"{ENV_MARKER}={self.workdir}".encode()
        self.processes: list[ProcessRecord] = []
        self.ports: dict[str, int] = {}
        self.phase = "starting"
        #: The real node's part of state.json (slot, bridge, ports, images), if it has one.
        self.real_node_state: dict[str, Any] = {}

    @classmethod
    def attach(cls, workdir: Path) -> LocalCluster:
        """The cluster running in ``workdir`` (as recorded in its state.json)."""
        state = StateFile(workdir / "state.json").load()
        if state is None:
            raise ClusterError(f"no cluster state in {workdir}")
        local = cls(ClusterConfig(name=str(state.get("name", workdir.name)), workdir=workdir))
        local._load_records()
        return local

    @classmethod
    def of(cls, handle: Cluster) -> LocalCluster:
        """The ``LocalCluster`` behind a handle (to kill and restart its processes)."""
        if not handle.local or handle.workdir is None:
            raise ClusterError(f"{handle.kubeconfig} is not a local cluster of e2e/cluster: no processes to control")
        return cls.attach(handle.workdir)

    # -- state ---------------------------------------------------------------------------

    def save_state(self) -> None:
        self._save_state(self.phase)

    def _save_state(self, phase: str) -> None:
        self.phase = phase
        cfg = self.config
        StateFile(self.state_file).save(
            {
                "name": cfg.name,
                "phase": phase,
                "workdir": str(self.workdir),
                "kubeconfig": str(self.kubeconfig),
                "bin_dir": str(build_toolchain.bin_dir()),
                "versions": build_toolchain.versions(),
                "ports": self.ports,
                "processes": processes.records_as_dicts(self.processes),
                "config": {
                    "nodes": cfg.nodes,
                    "capacity": cfg.capacity.resources(),
                    "scheduler_names": list(cfg.scheduler_names),
                    "start_delay": cfg.start_delay,
                    "run_duration": cfg.run_duration,
                    "real_node": cfg.real_node,
                },
                "real_node": self.real_node_state,
            }
        )

    def load_state(self) -> dict[str, Any] | None:
        return StateFile(self.state_file).load()

    def _load_records(self) -> None:
        """Take processes, ports and phase from state.json: another process may have changed them."""
        state = self.load_state()
        if state is None:
            raise ClusterError(f"no cluster {self.config.name!r} at {self.workdir} (run e2e/cluster up)")
        self.processes = StateFile(self.state_file).records()
        self.ports = {str(k): int(v) for k, v in state.get("ports", {}).items()}
        self.phase = str(state.get("phase", "ready"))
        self.real_node_state = dict(state.get("real_node") or {})

    def handle(self) -> Cluster:
        state = self.load_state() or {}
        kubectl = Path(state.get("bin_dir") or build_toolchain.bin_dir()) / "kubectl"
        return Cluster(self.kubeconfig, str(kubectl), local=True, name=self.config.name, workdir=self.workdir)

    # -- processes -----------------------------------------------------------------------

    def start_process(self, component: Component) -> ProcessRecord:
        """Start a process of this cluster and record it in state.json (e.g. one of the real node's)."""
        return self._start(component)

    def _start(self, component: Component) -> ProcessRecord:
        record = processes.spawn(component, self.workdir, self.logs / f"{component.name}.log")
        names = [p.name for p in self.processes]
        if component.name in names:  # a restart: keep the order of up in state.json
            self.processes[names.index(component.name)] = record
        else:
            self.processes.append(record)
        self._save_state(self.phase)
        return record

    def tls(self, kind: HealthTLS) -> ssl.SSLContext | None:
        """The TLS context a health URL of this kind is reached with."""
        if kind == "admin":
            return admin_ssl(self.pki)
        if kind == "admin-ca":
            return admin_ssl_any_name(self.pki)
        return insecure_ssl() if kind == "insecure" else None

    def _wait_healthy(self, record: ProcessRecord, timeout: float) -> None:
        processes.wait_healthy(record, self.tls(record.health_tls), timeout)

    def _recorded_pids(self) -> dict[str, int]:
        """Live pids of the processes recorded in state.json (a reused pid is left alone)."""
        records = StateFile(self.state_file).records()
        return {r.name: r.pid for r in records if is_same_process(r.pid, r.starttime)}

    def _our_pids(self) -> list[int]:
        """Pids of processes of this cluster: recorded ones and any carrying our env marker."""
        return sorted(set(self._recorded_pids().values()) | processes.marker_pids(self.marker))

    def _stop_all(self) -> None:
        named: dict[int, str] = {pid: name for name, pid in self._recorded_pids().items()}
        for pid in self._our_pids():  # processes found by the env marker: name them by argv[0]
            named.setdefault(pid, processes.proc_name(pid))
        for group in STOP_ORDER:
            processes.stop_pids([pid for pid, name in named.items() if name in group])
        processes.stop_pids(self._our_pids())

    # -- up and down ---------------------------------------------------------------------

    def down(self, quiet: bool = False) -> None:
        """Stop every process of this cluster (by pid) and remove its work dir; a real node first,
        leaving no process, mount, bridge or cgroup of it behind."""
        pids = self._our_pids()  # also finds processes whose work dir was removed
        node = self._real_node()
        has_node = node.present()
        if not self.workdir.exists() and not pids and not has_node:
            if not quiet:
                log(f"no cluster {self.config.name!r} at {self.workdir}")
            return
        node_failed: Exception | None = None
        if has_node:
            if not quiet:
                log(f"stopping the real node of cluster {self.config.name!r}")
            try:
                node.down(self.handle() if self.is_api_ready() else None)
            except Exception as exc:  # stop the control plane all the same, then say so
                node_failed = exc
        pids = self._our_pids()
        if pids and not quiet:
            log(f"stopping pids {', '.join(map(str, pids))}")
        self._stop_all()
        if node_failed is not None:
            raise ClusterError(f"the real node did not stop cleanly: {node_failed}") from node_failed
        left = [p for p in self._our_pids() if pid_alive(p)]
        if left:
            raise ClusterError(f"processes {left} of cluster {self.config.name!r} did not stop")
        shutil.rmtree(self.workdir, ignore_errors=True)
        if not quiet:
            log(f"cluster {self.config.name!r} is down; removed {self.workdir}")

    def _real_node(self) -> realnode.RealNode:
        capacity = self.real_node_state.get("capacity") or (self.load_state() or {}).get("real_node", {}).get(
            "capacity"
        )
        return realnode.RealNode(
            self, nodeconfig.NodeCapacity(**capacity) if capacity else self.config.real_node_capacity
        )

    def is_api_ready(self) -> bool:
        """The API server answers /readyz (so the real node's pods can be deleted through it)."""
        state = self.load_state() or {}
        try:
            url = f"{commands.apiserver_url(Ports.from_dict(state['ports']))}/readyz"
        except (KeyError, TypeError, ValueError):
            return False
        return processes.http_ok(url, admin_ssl(self.pki))

    def is_healthy(self) -> bool:
        state = self.load_state()
        if not state or state.get("phase") != "ready":
            return False
        records = StateFile(self.state_file).records()
        if not all(pid_alive(r.pid) for r in records):
            return False
        try:
            url = f"{commands.apiserver_url(Ports.from_dict(state['ports']))}/readyz"
        except (KeyError, TypeError, ValueError):
            return False
        return processes.http_ok(url, admin_ssl(self.pki))

    def up(self, reuse: bool = False) -> Cluster:
        """Start the cluster (replacing any leftover of the same name); return its handle."""
        if reuse and self.is_healthy():
            log(f"cluster {self.config.name!r} is already up; reusing it")
            return self.handle()
        started = time.monotonic()
        if self.workdir.exists() or self._our_pids():
            log(f"removing leftover cluster {self.config.name!r} at {self.workdir}")
            self.down(quiet=True)
        bins = self._toolchain()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.processes = []
        try:
            self._up(Layout(bins, self.workdir))
            if self.config.real_node:
                self._save_state("starting")
                self._real_node().up(self.handle())
        except BaseException:
            log("start-up failed; stopping what was started (work dir kept for its logs)")
            if self._real_node().present():
                with contextlib.suppress(Exception):
                    self._real_node().down(self.handle() if self.is_api_ready() else None)
            self._stop_all()
            with contextlib.suppress(OSError):
                self._save_state("failed")
            raise
        self._save_state("ready")
        log(f"cluster {self.config.name!r} is up in {time.monotonic() - started:.1f}s; kubeconfig {self.kubeconfig}")
        return self.handle()

    # -- the real node -------------------------------------------------------------------

    def add_real_node(self, capacity: nodeconfig.NodeCapacity | None = None) -> Cluster:
        """Start the real node in this running cluster (once: a node already up is kept)."""
        self._load_records()
        if self.real_node_state:
            return self.handle()
        self.config.real_node = True
        if capacity is not None:
            self.config.real_node_capacity = capacity
        node = self._real_node()
        try:
            node.up(self.handle())
        except BaseException:
            log("the real node failed to start; undoing what it did")
            with contextlib.suppress(Exception):
                self.remove_real_node()
            raise
        self._save_state(self.phase)
        return self.handle()

    def remove_real_node(self) -> None:
        """Stop the real node and undo everything it did on this host; the control plane keeps running."""
        self._load_records()
        self._real_node().down(self.handle() if self.is_api_ready() else None)
        self.processes = [r for r in self.processes if r.name not in nodeconfig.NODE_COMPONENTS]
        self.real_node_state = {}
        self.config.real_node = False
        self._save_state(self.phase)

    def _toolchain(self) -> Path:
        if not build_toolchain.is_built():
            if not self.config.build:
                raise ClusterError("the toolchain is not built: run e2e/cluster build")
            log("toolchain missing: building it first (the first build takes a while)")
            build_toolchain.build()
        return build_toolchain.bin_dir()

    def _up(self, layout: Layout) -> None:
        make_pki(self.pki)
        ports = Ports.from_dict(processes.free_ports(Ports.names()))
        self.ports = ports.as_dict()
        write_kubeconfig(self.kubeconfig, commands.apiserver_url(ports), self.pki, self.config.name)
        self._wait_healthy(self._start(commands.etcd(layout, ports)), 60)
        self._wait_healthy(self._start(commands.apiserver(layout, ports)), self.config.ready_timeout)
        layout.scheduler_config.write_text(commands.scheduler_config(layout.kubeconfig, self.config.scheduler_names))
        clients = [self._start(build(layout, ports)) for build in (commands.controller_manager, commands.scheduler)]
        client = self.handle()
        client.kubectl_bin = str(layout.bins / "kubectl")
        self._install_kwok_objects(client)  # kwok reads its Stages at start-up
        layout.kwok_home.mkdir(exist_ok=True)
        clients.append(self._start(commands.kwok(layout, ports)))
        for record in clients:
            self._wait_healthy(record, 60)
        client.apply(self.node_manifests())
        self._wait_nodes(client)

    def _install_kwok_objects(self, client: Cluster) -> None:
        """kwok's CRDs (Stage, Logs, ClusterLogs) and the stages of e2e/kwok/stages.yaml."""
        for crd in sorted((build_toolchain.share_dir() / "kwok-crds").glob("*.yaml")):
            client.kubectl("apply", "--server-side", "-f", str(crd))
        client.wait_established()
        template = (E2E_DIR / "kwok" / "stages.yaml").read_text()
        stages = self.workdir / "stages.yaml"
        stages.write_text(commands.stages(template, self.config.start_delay, self.config.run_duration))
        client.kubectl("apply", "-f", str(stages))

    def _wait_nodes(self, client: Cluster) -> None:
        """Wait for the fake nodes to be Ready and for namespaces to get their ServiceAccount."""
        want = self.config.nodes

        def nodes_ready() -> bool:
            for record in self.processes:
                processes.check_running(record)
            data = client.get_json("nodes", "-l", f"{GPU_PRESENT_LABEL}=true")
            return len([n for n in (data or {}).get("items", []) if _node_ready(n)]) >= want

        wait_until(
            nodes_ready,
            timeout=self.config.ready_timeout,
            what=f"{want} Ready fake nodes",
            state=lambda: client.kubectl("get", "nodes", "-o", "wide", check=False).stdout,
        )
        wait_until(
            lambda: client.get_json("serviceaccount", "default", "-n", "default"),
            timeout=self.config.ready_timeout,
            what="ServiceAccount default/default",
        )

    def node_manifests(self) -> list[dict[str, Any]]:
        return node_manifests(self.config)

    # -- one component -------------------------------------------------------------------

    def _record(self, name: str) -> ProcessRecord:
        if name not in (*COMPONENTS, *nodeconfig.NODE_COMPONENTS):
            known = ", ".join((*COMPONENTS, *nodeconfig.NODE_COMPONENTS))
            raise ClusterError(f"unknown component {name!r}; one of {known}")
        self._load_records()
        found = next((r for r in self.processes if r.name == name), None)
        if found is None:
            raise ClusterError(f"cluster {self.config.name!r} has no recorded {name} process")
        return found

    def kill_component(self, name: str) -> bool:
        """SIGKILL one process of the cluster by its recorded pid; False if it was not running."""
        record = self._record(name)
        killed = processes.kill(record)
        log(f"{'killed' if killed else 'not running:'} {name} (pid {record.pid})")
        return killed

    def start_component(self, name: str, timeout: float | None = None) -> ProcessRecord:
        """Start one process again with the argv and environment of ``up``; wait until it is healthy."""
        record = self._record(name)
        if is_same_process(record.pid, record.starttime):
            raise ClusterError(f"{name} still runs (pid {record.pid}): kill it first")
        if not record.health_url:  # state.json of an older e2e/localcluster: no env or health URL kept
            raise ClusterError(f"cluster {self.config.name!r} was started by an older e2e/cluster: run `up` again")
        started = self._start(record.component())
        self._wait_healthy(started, self.config.ready_timeout if timeout is None else timeout)
        return started

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Wait until every process answers on its health URL (e.g. the API server after etcd came back)."""
        self._load_records()
        for record in self.processes:
            self._wait_healthy(record, self.config.ready_timeout if timeout is None else timeout)

    # -- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What is known about this cluster: processes alive, API ready, nodes."""
        state = self.load_state()
        if state is None:
            return {"name": self.config.name, "exists": self.workdir.exists(), "running": False}
        records = StateFile(self.state_file).records()
        healthy = self.is_healthy()
        info: dict[str, Any] = {
            "name": state["name"],
            "phase": state["phase"],
            "workdir": state["workdir"],
            "kubeconfig": state["kubeconfig"],
            "api": f"https://127.0.0.1:{state['ports'].get('apiserver')}",
            "processes": {r.name: {"pid": r.pid, "alive": pid_alive(r.pid)} for r in records},
            "api_ready": healthy,
            "running": healthy,
        }
        if healthy:
            info["nodes"] = [
                {"name": n["metadata"]["name"], "allocatable": n["status"].get("allocatable", {})}
                for n in self.handle().fake_nodes()
            ]
        if state.get("real_node"):
            self.real_node_state = dict(state["real_node"])
            info["real_node"] = self._real_node().status(self.handle() if healthy else None)
        return info


def _node_ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def reap_stale_clusters(prefix: str = "pytest-") -> list[str]:
    """Tear down clusters named ``<prefix><pid>`` whose owning process ``pid`` is gone.

    Test sessions name their cluster after their own pid, so concurrent sessions do not
    share one, and a session killed before its teardown is cleaned up by the next one.
    """
    reaped: list[str] = []
    root = clusters_root()
    if not root.is_dir():
        return reaped
    for workdir in sorted(root.iterdir()):
        owner = workdir.name.removeprefix(prefix)
        if workdir.name.startswith(prefix) and owner.isdigit() and not pid_alive(int(owner)):
            log(f"reaping leftover cluster {workdir.name!r} (its pytest process {owner} is gone)")
            LocalCluster(ClusterConfig(name=workdir.name, workdir=workdir)).down(quiet=True)
            reaped.append(workdir.name)
    return reaped
