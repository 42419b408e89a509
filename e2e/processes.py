"""The cluster's processes: started in their own session, found again by pid, stopped by pid.

A pid alone may be reused after a process died, so each record keeps the process's start time
(``/proc/PID/stat`` field 22) and a signal only goes to a pid whose start time still matches.
Every process also carries ``ENV_MARKER=<work dir>`` in its environment, which finds the
processes of a cluster whose state file is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .commands import Component, HealthTLS
from .common import ENV_MARKER, ClusterError, ProcessExited, log


@dataclass
class ProcessRecord:
    """A started process, with what it takes to start it again the same way."""

    name: str
    pid: int
    starttime: str | None
    argv: list[str]
    logfile: str
    env: dict[str, str] = field(default_factory=dict)
    health_url: str = ""
    health_tls: HealthTLS = "none"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessRecord:
        """A record of state.json; fields an older state file lacks get their defaults."""
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        known["health_tls"] = _health_tls(str(data.get("health_tls", "none")))
        return cls(**known)

    def component(self) -> Component:
        """The process as it was started, to start it again the same way."""
        return Component(self.name, list(self.argv), self.health_url, self.health_tls, dict(self.env))


def _health_tls(value: str) -> HealthTLS:
    if value in ("admin", "admin-ca"):
        return "admin" if value == "admin" else "admin-ca"
    return "insecure" if value == "insecure" else "none"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(names: Iterable[str]) -> dict[str, int]:
    """A distinct free port of 127.0.0.1 for each name (the kernel may hand one out twice)."""
    wanted = list(names)
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(wanted):
        ports = {name: free_port() for name in wanted}
    return ports


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()


def proc_starttime(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields else None  # field 22 of stat


def pid_alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def is_same_process(pid: int, starttime: str | None) -> bool:
    """``pid`` is alive and is still the process that was recorded (not a reused pid)."""
    return pid_alive(pid) and starttime in (None, proc_starttime(pid))


def proc_has_marker(pid: int, marker: bytes) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return marker in environ.split(b"\0")


def proc_name(pid: int) -> str:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return ""
    return Path(argv0.decode(errors="replace")).name


def marker_pids(marker: bytes) -> set[int]:
    """Live processes (other than this one) whose environment holds ``marker``."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            pid = int(entry.name)
            if proc_has_marker(pid, marker) and pid_alive(pid):
                found.add(pid)
    return found


def spawn(component: Component, workdir: Path, logfile: Path) -> ProcessRecord:
    """Start ``component`` in its own session (a Ctrl-C of the caller does not reach it)."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env[ENV_MARKER] = str(workdir)
    env.pop("KUBECONFIG", None)  # every component gets its kubeconfig by flag
    env.update(component.env)
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            component.argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log(f"started {component.name} (pid {proc.pid}, log {logfile})")
    return ProcessRecord(
        component.name,
        proc.pid,
        proc_starttime(proc.pid),
        list(component.argv),
        str(logfile),
        dict(component.env),
        component.health_url,
        component.health_tls,
    )


def check_running(record: ProcessRecord) -> None:
    if not pid_alive(record.pid):
        tail = "\n".join(Path(record.logfile).read_text(errors="replace").splitlines()[-30:])
        raise ProcessExited(f"{record.name} exited; last lines of {record.logfile}:\n{tail}")


def http_ok(url: str, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def wait_healthy(record: ProcessRecord, context: ssl.SSLContext | None, timeout: float) -> None:
    """Wait until the record's health URL answers 200; fail at once if the process exits."""
    deadline = time.monotonic() + timeout
    while True:
        check_running(record)
        if http_ok(record.health_url, context):
            return
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{record.name} not healthy at {record.health_url} after {timeout:.0f}s (log {record.logfile})"
            )
        time.sleep(0.3)


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def stop_pids(pids: Iterable[int], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL what is still alive after ``grace`` seconds."""
    alive = [p for p in pids if pid_alive(p)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    _wait_gone(alive, grace)
    for pid in alive:
        if pid_alive(pid):
            log(f"pid {pid} ignored SIGTERM; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _wait_gone(alive, 5)


def kill(record: ProcessRecord, timeout: float = 10.0) -> bool:
    """SIGKILL the recorded process and wait until it is gone; False if it was not running."""
    if not is_same_process(record.pid, record.starttime):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGKILL)
    _wait_gone([record.pid], timeout)
    if pid_alive(record.pid):
        raise ClusterError(f"{record.name} (pid {record.pid}) still runs {timeout:.0f}s after SIGKILL")
    return True


class StateFile:
    """``state.json`` of a work dir, replaced atomically so a reader never sees half of it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return None

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.path)

    def records(self) -> list[ProcessRecord]:
        return [ProcessRecord.from_dict(p) for p in (self.load() or {}).get("processes", [])]


def records_as_dicts(records: Iterable[ProcessRecord]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]
