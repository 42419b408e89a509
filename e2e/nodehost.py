"""What a real node changes on the host, and how each change is undone: the bridge, the cgroups, the
mounts, kube-proxy's network namespace, the kernel settings the kubelet sets, and the few
machine-wide paths the kubelet and containerd hard-code.

Several real nodes (of several clusters) may run on one machine; each takes a *slot* (its bridge
``fto-br<slot>`` and subnet) under a machine-wide lock in ``/run/finetune-operator``. The kernel
settings the kubelet changes at start (``vm.overcommit_memory``, ``kernel.panic``, ...) are recorded
there before the first node starts and restored when the last one stops.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .common import ClusterError, log

RUN_DIR = Path(os.environ.get("FTO_RUN_DIR", "/run/finetune-operator"))
#: Kernel settings the kubelet sets at start (containerManager's setupKernelTunables) when they differ.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
#: Machine-wide paths of the kubelet (its device manager hard-codes /var/lib/kubelet/device-plugins)
#: and of containerd's shims (/run/containerd/s): removed when the last real node stops, if empty.
SHARED_DIRS = (
    Path("/var/lib/kubelet/device-plugins"),
    Path("/var/lib/kubelet"),
    Path("/run/containerd/s"),
    Path("/run/containerd"),
    Path("/var/lib/cni/results"),
    Path("/var/lib/cni"),
)
#: Files the kubelet leaves in SHARED_DIRS (no other program writes there on this machine).
SHARED_FILES = (
    Path("/var/lib/kubelet/device-plugins/kubelet.sock"),
    Path("/var/lib/kubelet/device-plugins/DEPRECATION"),
    Path("/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"),
)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """One node at a time changes what all real nodes share (slots, kernel settings)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with (RUN_DIR / "lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- links -------------------------------------------------------------------------------------


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def links() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir())


def bridge_ports(bridge: str) -> list[str]:
    directory = Path("/sys/class/net", bridge, "brif")
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def _write_sysctl(path: Path, value: str) -> None:
    with contextlib.suppress(OSError):
        path.write_text(value)


def create_bridge(name: str, address: str) -> None:
    """The node's bridge with its address: no forwarding from it (whatever ip_forward says), no IPv6."""
    run("ip", "link", "add", "name", name, "type", "bridge")
    try:
        _write_sysctl(Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1")
        _write_sysctl(Path(f"/proc/sys/net/ipv4/conf/{name}/forwarding"), "0")
        run("ip", "addr", "add", address, "dev", name)
        run("ip", "link", "set", name, "up")
    except ClusterError:
        delete_bridge(name)
        raise


def delete_bridge(name: str) -> None:
    """The bridge and any veth still attached to it (a pod whose network was never torn down)."""
    for port in bridge_ports(name):
        run("ip", "link", "delete", port, check=False)
    if link_exists(name):
        run("ip", "link", "delete", name)


# -- kube-proxy's network namespace ------------------------------------------------------------


def nsenter(netns: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command in the network namespace bound on ``netns`` (its mounts and all else: the host's)."""
    return run("nsenter", f"--net={netns}", "--", *argv, check=check)


def create_proxy_netns(netns: Path, link: str, bridge: str, address: str) -> None:
    """A network namespace bound on the file ``netns``, joined to the bridge by a veth pair: ``link``
    (the host's end, a port of the bridge) and ``eth0`` inside with ``address`` (CIDR). Inside, IPv4
    forwarding is on (kube-proxy DNATs a pod's packet to another pod: forwarded back out of eth0) and
    IPv6 off; its only route is the bridge's subnet, so nothing it forwards can leave this machine.
    Undone by deleting ``link`` (the pair goes with it) and unmounting ``netns``, once no process is
    left in it (then the kernel frees the namespace and every rule and conntrack entry in it)."""
    netns.touch()
    run("unshare", f"--net={netns}", "true")
    try:
        run("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", str(netns))
        _write_sysctl(Path(f"/proc/sys/net/ipv6/conf/{link}/disable_ipv6"), "1")
        run("ip", "link", "set", link, "master", bridge)
        run("ip", "link", "set", link, "up")
        # /proc/sys/net is the namespace of the process that opens it: written from inside.
        nsenter(netns, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 "
                "&& echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 "
                "&& echo 1 > /proc/sys/net/ipv4/ip_forward")  # fmt: skip
        nsenter(netns, "ip", "link", "set", "lo", "up")
        nsenter(netns, "ip", "addr", "add", address, "dev", "eth0")
        nsenter(netns, "ip", "link", "set", "eth0", "up")
    except ClusterError:
        delete_proxy_netns(netns, link)
        raise


def delete_proxy_netns(netns: Path, link: str) -> None:
    """Delete the veth pair and unbind the namespace (freed when its last process has gone)."""
    if link_exists(link):
        run("ip", "link", "delete", link, check=False)
    if netns.exists():
        if str(netns) in mounts_under(netns):
            run("umount", str(netns), check=False)
        with contextlib.suppress(OSError):
            netns.unlink()


def netns_inode(netns: Path) -> int:
    """The namespace's inode number (``net:[N]`` in /proc/PID/ns/net and in mountinfo)."""
    return os.stat(netns).st_ino


def netns_holders(inode: int) -> list[str]:
    """What still keeps the network namespace ``net:[inode]`` alive, by exact listing: processes in it,
    open file descriptors of it, and bind mounts of it (empty: the kernel has freed it, and with it
    every nftables rule, route and conntrack entry it had)."""
    name = f"net:[{inode}]"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "ns" / "net") == name:
                found.append(f"process {entry.name}")
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == name:
                        found.append(f"fd {entry.name}/{fd.name}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[3] == name:
            found.append(f"mount {_unescape(fields[4])}")
    return found


#: The host's netfilter rules, as its tools list them: nftables (every family), and iptables in both of
#: its back ends (legacy xtables tables are listed only where they exist).
NETFILTER_LISTINGS: tuple[tuple[str, ...], ...] = (
    ("nft", "-s", "list", "ruleset"),
    ("iptables-nft-save",),
    ("ip6tables-nft-save",),
    ("iptables-legacy-save",),
    ("ip6tables-legacy-save",),
)


def netfilter_ruleset(listings: tuple[tuple[str, ...], ...] = NETFILTER_LISTINGS) -> dict[str, list[str]]:
    """The host network namespace's netfilter rules and chains, by exact listing: each tool's output
    without its comments (the date of the listing) and packet counters (traffic moves them). A tool
    that is not installed lists nothing."""
    found: dict[str, list[str]] = {}
    for argv in listings:
        try:
            proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            continue
        lines = [re.sub(r" \[\d+:\d+\]$", "", line) for line in proc.stdout.splitlines()]
        found[argv[0]] = [line for line in lines if line.strip() and not line.startswith("#")]
    return found


# -- mounts ------------------------------------------------------------------------------------


def _unescape(field: str) -> str:
    """Mount points in mountinfo have space, tab, newline and backslash octal-escaped."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) + 1 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(root: Path, mountinfo: str | None = None) -> list[str]:
    """Mount points at or below ``root`` (deepest last, as mounted), from /proc/self/mountinfo."""
    text = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
    prefix = str(root).rstrip("/")
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = _unescape(fields[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def unmount_under(root: Path) -> list[str]:
    """Unmount everything at or below ``root``, deepest first; lazily if a plain unmount is refused.
    Returns what is still mounted (empty on success)."""
    for _ in range(5):
        points = mounts_under(root)
        if not points:
            return []
        for point in sorted(points, key=lambda p: (p.count("/"), p), reverse=True):
            if run("umount", point, check=False).returncode != 0:
                run("umount", "-l", point, check=False)
    return mounts_under(root)


# -- cgroups -----------------------------------------------------------------------------------


def cgroup_mounts(mounts: str | None = None) -> list[Path]:
    """Mount points of the cgroup v1 hierarchies and of the unified (v2) one, if mounted."""
    text = Path("/proc/self/mounts").read_text() if mounts is None else mounts
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] in ("cgroup", "cgroup2"):
            found.append(Path(_unescape(fields[1])))
    return found


def create_cgroup_root(name: str) -> list[Path]:
    """``<hierarchy>/<name>`` in every v1 hierarchy (the kubelet wants its cgroupRoot there first)."""
    made = []
    for mount in cgroup_mounts():
        path = mount / name.strip("/")
        if mount.name == "unified":
            continue  # the kubelet and runc use the v1 hierarchies here
        path.mkdir(exist_ok=True)
        made.append(path)
        for knob in ("cpuset.cpus", "cpuset.mems"):  # a new cpuset is empty until given its parent's
            parent = mount / knob
            if parent.exists() and not (path / knob).read_text().strip():
                (path / knob).write_text(parent.read_text())
    return made


def cgroup_dirs(name: str) -> list[Path]:
    """Every directory of ``name`` in every hierarchy (deepest first), e.g. for an exact check."""
    found = []
    for mount in cgroup_mounts():
        top = mount / name.strip("/")
        if top.is_dir():
            found.extend(sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)))
            found.append(top)
    return found


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for directory in cgroup_dirs(name):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
    return pids


def remove_cgroups(name: str, timeout: float = 15.0) -> list[Path]:
    """Remove the node's cgroups (deepest first). Processes still in them are the node's containers:
    SIGKILLed by pid. Returns the directories that could not be removed."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in cgroup_pids(name):
            log(f"SIGKILL pid {pid}: still in the node's cgroups")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        left = []
        for directory in cgroup_dirs(name):
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise
                left.append(directory)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


# -- kernel settings ---------------------------------------------------------------------------


def _sysctl_file() -> Path:
    return RUN_DIR / "sysctls.json"


def read_sysctls(names: Iterable[str] = KUBELET_SYSCTLS) -> dict[str, str]:
    return {name: Path("/proc/sys", name).read_text().strip() for name in names}


def hold_sysctls(holder: str) -> None:
    """Record the kernel settings before the first node's kubelet changes them (call under the lock)."""
    state = _load_sysctl_state()
    holders = [h for h in state.get("holders", []) if Path(h).exists()]
    if not holders:
        state["original"] = read_sysctls()
    state["holders"] = sorted({*holders, holder})
    _save_sysctl_state(state)


def release_sysctls(holder: str) -> dict[str, str]:
    """Forget ``holder``; when no node is left, put the recorded settings back (returns them)."""
    state = _load_sysctl_state()
    holders = [h for h in state.get("holders", []) if h != holder and Path(h).exists()]
    if holders:
        state["holders"] = holders
        _save_sysctl_state(state)
        return {}
    original: dict[str, str] = dict(state.get("original", {}))
    for name, value in original.items():
        if read_sysctls([name])[name] != value:
            Path("/proc/sys", name).write_text(value)
    with contextlib.suppress(FileNotFoundError):
        _sysctl_file().unlink()
    return original


def _load_sysctl_state() -> dict[str, Any]:
    try:
        return dict(json.loads(_sysctl_file().read_text()))
    except (OSError, ValueError):
        return {}


def _save_sysctl_state(state: dict[str, Any]) -> None:
    tmp = _sysctl_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, _sysctl_file())


# -- slots ---------------------------------------------------------------------------------------


def free_slot(max_slots: int, bridge_name: str = "fto-br{}") -> int:
    """The lowest slot whose bridge does not exist (call under the lock, then make the bridge)."""
    for slot in range(max_slots):
        if not link_exists(bridge_name.format(slot)):
            return slot
    raise ClusterError(f"all {max_slots} real-node slots are taken (bridges {bridge_name.format('*')})")


def other_nodes_running(own_bridge: str) -> bool:
    """Another real node's bridge exists on this machine."""
    return any(name.startswith("fto-br") and name != own_bridge for name in links())


def clean_shared_paths() -> list[str]:
    """Remove what the kubelet and containerd leave in machine-wide paths (only when no other real node
    runs: call under the lock). Returns the paths removed."""
    removed = []
    for path in SHARED_FILES:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(str(path))
    for directory in SHARED_DIRS:
        with contextlib.suppress(FileNotFoundError, OSError):
            directory.rmdir()  # only if empty
            removed.append(str(directory))
    return removed
