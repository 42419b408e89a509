#!/usr/bin/python3
"""A stand-in for Phison's aiDAPTIV+ trainer ``phisonai2``, as it looks from outside (AIDAPTIV.md).

The real trainer is proprietary; this program is what the e2e tests run in its place, in a real
container on the real node. It is started the way the operator's entrypoint starts the trainer::

    phisonai2 --env_config /config/env/env_config.yaml --exp_config /config/exp/exp_config.yaml

and, like the trainer, it

* reads ``exp_config.yaml``, ``env_config.yaml`` and every dataset config of ``train_data_path`` with
  PyYAML (YAML 1.1: ``7e-06`` is text there, not a number) and stops with a clear message naming the
  file and the key when one is missing or malformed;
* counts ``data_path`` in each dataset file, comments included, against its ``---`` separators and
  fails as the trainer does (``data_path count:2, --- count:0``), exiting 0 as the trainer was seen to;
* needs ``output_dir`` to exist (the trainer fails otherwise), and a model directory at
  ``model_name_or_path`` with a readable ``config.json``;
* makes its swap directory under ``nvme_path`` and removes it at the end;
* writes its progress in the trainer's log format to ``log_name`` (relative to ``output_dir``):
  the schedule, ``[PHISON START]``/``[PHISON END]``, ``[Loss]``, ``Training efficiency``,
  ``[Save Model_Checkpoint][Start]``, ``[INFO] training complete!``; its stdout holds only what the
  trainer's does (warnings and a loading bar);
* writes checkpoints into ``output_dir`` (rank 0 only);
* on SIGTERM logs ``Killing subprocess`` and exits 143;
* with several nodes (``NNODES`` > 1, ``MASTER_ADDR``, ``MASTER_PORT``, ``NODE_RANK``, from the
  environment or, when env_config names one, the ``multi_node_env_path`` file) meets the other ranks
  first: rank 0 listens on ``MASTER_PORT``, the others connect to ``MASTER_ADDR:MASTER_PORT``
  (through the headless Service's DNS name) and send their rank; rank 0 answers with every rank. A
  rendezvous not complete within the timeout exits 1.

What it does is chosen by environment variables (a FineTuneJob's prescript can export them):

=================================  =========================================================
``PHISONAI2_STANDIN_BEHAVIOUR``    ``succeed`` (default); ``oom``: logs a CUDA out-of-memory
                                   error in the trainer's words and exits 0 (as the trainer
                                   was seen to); ``fail``: logs the failure and exits with
                                   ``PHISONAI2_STANDIN_EXIT_CODE`` (default 1); ``hang``: logs
                                   its start, then waits for a signal
``PHISONAI2_STANDIN_ITERATIONS``   iterations per epoch (default 4)
``PHISONAI2_STANDIN_STEP_SECONDS`` seconds per iteration (default 0.5)
``PHISONAI2_STANDIN_RENDEZVOUS_TIMEOUT``  seconds (default 120)
=================================  =========================================================

Standard library and PyYAML only (the image holds Debian's python3 and a PyYAML wheel).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

import yaml

BEHAVIOURS = ("succeed", "oom", "fail", "hang")
ENV_BEHAVIOUR = "PHISONAI2_STANDIN_BEHAVIOUR"
ENV_EXIT_CODE = "PHISONAI2_STANDIN_EXIT_CODE"
ENV_ITERATIONS = "PHISONAI2_STANDIN_ITERATIONS"
ENV_STEP_SECONDS = "PHISONAI2_STANDIN_STEP_SECONDS"
ENV_RENDEZVOUS_TIMEOUT = "PHISONAI2_STANDIN_RENDEZVOUS_TIMEOUT"
STRATEGIES = ("qa", "pretrain", "rag", "vqa")
EXP_TYPES = ("train", "inference", "eval")
NUM_GPUS = (1, 2, 4, 8)
WEIGHT_FORMATS = (None, "bin", "pt", "safetensors")
COMPLETE = "[INFO] training complete!"
SIGTERM_EXIT = 143


class ConfigError(Exception):
    """A config file is missing or malformed: the message names the file and the key."""


class RendezvousError(Exception):
    """The ranks did not all meet within the timeout."""


class Stopped(Exception):
    """SIGTERM or SIGINT arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# -- reading the configs -------------------------------------------------------------------------


def load_yaml(path: str, what: str) -> Any:
    """The parsed file; ConfigError naming ``what`` and the path when it is missing or not YAML."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{what} not found: FileNotFoundError: [Errno 2] No such file or directory: '{path}'"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{what} cannot be read: {type(exc).__name__}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{what} {path} is not valid YAML: {type(exc).__name__}: {detail}") from None


def _get(tree: Any, path: str, where: str) -> Any:
    """``tree[a][b]...`` for ``path`` "a.b...": ConfigError naming the missing key."""
    node = tree
    walked: list[str] = []
    for key in path.split("."):
        walked.append(key)
        if not isinstance(node, Mapping):
            raise ConfigError(f"{where}: {'.'.join(walked[:-1]) or 'the file'} must be a mapping, got {node!r}")
        if key not in node:
            raise ConfigError(f"{where}: KeyError: '{'.'.join(walked)}' is missing")
        node = node[key]
    return node


def _int(tree: Any, path: str, where: str, allowed: Sequence[int] | None = None, minimum: int | None = None) -> int:
    value = _get(tree, path, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: {path} must be an integer, got {value!r}")
    if allowed is not None and value not in allowed:
        raise ConfigError(f"{where}: {path} must be one of {list(allowed)}, got {value}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: {path} must be at least {minimum}, got {value}")
    return value


def _float(tree: Any, path: str, where: str) -> float:
    value = _get(tree, path, where)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {path} must be a number, got {value!r} ({type(value).__name__})")
    return float(value)


def _str(tree: Any, path: str, where: str, optional: bool = False) -> str | None:
    value = _get(tree, path, where)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {path} must be a string, got {value!r}")
    return value


@dataclass(frozen=True)
class ExpConfig:
    num_gpus: int
    specify_gpus: str | None
    master_port: int
    multi_node: bool
    master_addr: str
    per_device_train_batch_size: int
    per_update_total_batch_size: int
    num_train_epochs: int
    max_iter: int
    max_seq_len: int
    precision_mode: int
    learning_rate: float
    lr_scheduler_mode: int
    weight_file_format: str | None
    save_on_iteration: bool
    iterations_to_save: int
    lora: bool

    @property
    def accumulation(self) -> int:
        return self.per_update_total_batch_size // (self.num_gpus * self.per_device_train_batch_size)


def parse_exp_config(tree: Any, where: str = "exp_config") -> ExpConfig:
    """The settings the stand-in uses, checked as the trainer's documented ranges say."""
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{where}: the file must hold a mapping, got {tree!r}")
    num_gpus = _int(tree, "process_settings.num_gpus", where, allowed=NUM_GPUS)
    specify = _get(tree, "process_settings.specify_gpus", where)
    if specify is not None:
        if not isinstance(specify, str):
            raise ConfigError(f"{where}: process_settings.specify_gpus must be null or a string, got {specify!r}")
        if len(specify.split(",")) != num_gpus:
            raise ConfigError(f"{where}: process_settings.specify_gpus {specify!r} does not name {num_gpus} GPUs")
    per_device = _int(tree, "run_settings.per_device_train_batch_size", where, minimum=1)
    per_update = _int(tree, "run_settings.per_update_total_batch_size", where, minimum=1)
    if per_update % (num_gpus * per_device):
        raise ConfigError(
            f"{where}: run_settings.per_update_total_batch_size ({per_update}) must be a multiple of "
            f"num_gpus x per_device_train_batch_size ({num_gpus * per_device})"
        )
    max_iter = _int(tree, "run_settings.max_iter", where)
    if max_iter == 0 or max_iter < -1:
        raise ConfigError(f"{where}: run_settings.max_iter must be -1 or positive, got {max_iter}")
    weight_format = _get(tree, "run_settings.weight_file_format", where)
    if weight_format not in WEIGHT_FORMATS:
        raise ConfigError(f"{where}: run_settings.weight_file_format must be one of {list(WEIGHT_FORMATS)}")
    multi = _get(tree, "process_settings.multi_node_settings.enable", where)
    if not isinstance(multi, bool):
        raise ConfigError(f"{where}: process_settings.multi_node_settings.enable must be true or false")
    lora = _get(tree, "run_settings.lora.enable_lora", where)
    save_on_iteration = _get(tree, "run_settings.model_saver.enable_save_model_on_iteration", where)
    return ExpConfig(
        num_gpus=num_gpus,
        specify_gpus=specify,
        master_port=_int(tree, "process_settings.master_port", where, minimum=1),
        multi_node=multi,
        master_addr=str(_get(tree, "process_settings.multi_node_settings.master_addr", where)),
        per_device_train_batch_size=per_device,
        per_update_total_batch_size=per_update,
        num_train_epochs=_int(tree, "run_settings.num_train_epochs", where, minimum=1),
        max_iter=max_iter,
        max_seq_len=_int(tree, "run_settings.max_seq_len", where, minimum=1),
        precision_mode=_int(tree, "run_settings.precision_mode", where, allowed=(0, 1)),
        learning_rate=_float(tree, "run_settings.lr_scheduler.learning_rate", where),
        lr_scheduler_mode=_int(tree, "run_settings.lr_scheduler.mode", where, allowed=range(-1, 6)),
        weight_file_format=weight_format,
        save_on_iteration=bool(save_on_iteration),
        iterations_to_save=_int(tree, "run_settings.model_saver.num_of_iteration_to_save_model", where, minimum=1),
        lora=bool(lora),
    )


@dataclass(frozen=True)
class EnvConfig:
    output_dir: str
    log_name: str
    model_name_or_path: str
    train_data_path: tuple[str, ...]
    nvme_path: str
    multi_node_env_path: str | None

    @property
    def log_file(self) -> Path:
        """A relative ``log_name`` lands under ``output_dir`` (what the operator reads)."""
        return Path(os.path.normpath(os.path.join(self.output_dir, self.log_name)))


def parse_env_config(tree: Any, where: str = "env_config") -> EnvConfig:
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{where}: the file must hold a mapping, got {tree!r}")
    paths = _get(tree, "path_settings.train_data_path", where)
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise ConfigError(f"{where}: path_settings.train_data_path must be a non-empty list of paths, got {paths!r}")
    output_dir = _str(tree, "path_settings.output_dir", where) or ""
    if not output_dir.startswith("/"):
        raise ConfigError(f"{where}: path_settings.output_dir must be an absolute path, got {output_dir!r}")
    log_name = _str(tree, "path_settings.log_name", where) or ""
    if not log_name:
        raise ConfigError(f"{where}: path_settings.log_name is empty")
    return EnvConfig(
        output_dir=output_dir,
        log_name=log_name,
        model_name_or_path=_str(tree, "path_settings.model_name_or_path", where) or "",
        train_data_path=tuple(paths),
        nvme_path=_str(tree, "path_settings.nvme_path", where) or "",
        multi_node_env_path=_str(tree, "path_settings.multi_node_env_path", where, optional=True),
    )


@dataclass(frozen=True)
class Dataset:
    name: str
    data_path: str
    strategy: str


def separator_problem(text: str) -> str | None:
    """The trainer's own complaint when a file's datasets are not one YAML document each.

    It counts ``data_path`` anywhere in the text (comments too) and ``---`` lines."""
    paths = text.count("data_path")
    separators = sum(1 for line in text.splitlines() if line.strip() == "---")
    if paths > 1 and separators < paths - 1:
        return f"data_path count:{paths}, --- count:{separators}"
    return None


def parse_datasets(text: str, where: str) -> list[Dataset]:
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    found: list[Dataset] = []
    for document in documents:
        if not isinstance(document, Mapping) or not document:
            raise ConfigError(f"{where}: a dataset document must map a name to its settings, got {document!r}")
        for name, settings in document.items():
            at = f"{where}: dataset {name!r}"
            data_path = _str(settings, "data_path", at) or ""
            strategy = (_str(settings, "strategy", at) or "").lower()
            if strategy not in STRATEGIES:
                raise ConfigError(f"{at}: strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
            prompt = _str(settings, "user_prompt", at) or ""
            if "{question}" not in prompt:
                raise ConfigError(f"{at}: user_prompt must contain {{question}}, got {prompt!r}")
            if "exp_type" in settings and settings["exp_type"] not in EXP_TYPES:
                raise ConfigError(f"{at}: exp_type must be one of {list(EXP_TYPES)}, got {settings['exp_type']!r}")
            found.append(Dataset(str(name), data_path, strategy))
    if not found:
        raise ConfigError(f"{where}: no dataset")
    return found


def read_model(path: str) -> str:
    """The model's type from ``<path>/config.json``: the trainer cannot start without its model."""
    config = Path(path) / "config.json"
    if not Path(path).is_dir():
        raise ConfigError(f"OSError: {path} is not a local folder and is not a valid model identifier")
    try:
        data = json.loads(config.read_text())
    except FileNotFoundError:
        raise ConfigError(f"OSError: {path} does not appear to have a file named config.json") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"OSError: {config} cannot be read as JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise ConfigError(f"ValueError: {config} has no model_type")
    return str(data["model_type"])


# -- the behaviour -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    kind: str = "succeed"
    exit_code: int = 1
    iterations: int = 4
    step_seconds: float = 0.5
    rendezvous_timeout: float = 120.0


def behaviour_from(env: Mapping[str, str]) -> Behaviour:
    """The behaviour the environment chooses; ConfigError for a value it does not know."""
    kind = env.get(ENV_BEHAVIOUR, "succeed").strip().lower() or "succeed"
    if kind not in BEHAVIOURS:
        raise ConfigError(f"{ENV_BEHAVIOUR}={kind!r}: one of {', '.join(BEHAVIOURS)}")

    def number(name: str, default: float, convert: Callable[[str], float]) -> float:
        text = env.get(name, "").strip()
        if not text:
            return default
        try:
            value = convert(text)
        except ValueError:
            raise ConfigError(f"{name}={text!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name}={text!r} must be a finite number >= 0")
        return value

    exit_code = int(number(ENV_EXIT_CODE, 1, int))
    if kind == "fail" and not 1 <= exit_code <= 255:
        raise ConfigError(f"{ENV_EXIT_CODE}={exit_code}: a failure exits with 1 to 255")
    return Behaviour(
        kind=kind,
        exit_code=exit_code,
        iterations=max(1, int(number(ENV_ITERATIONS, 4, int))),
        step_seconds=number(ENV_STEP_SECONDS, 0.5, float),
        rendezvous_timeout=number(ENV_RENDEZVOUS_TIMEOUT, 120.0, float),
    )


@dataclass(frozen=True)
class Schedule:
    epochs: int
    per_epoch: int
    accumulation: int
    total: int  # iterations of the whole run (max_iter caps it)

    @property
    def updates_per_epoch(self) -> int:
        return max(1, self.per_epoch // self.accumulation)


def schedule(exp: ExpConfig, iterations_per_epoch: int) -> Schedule:
    total = exp.num_train_epochs * iterations_per_epoch
    if exp.max_iter > 0:
        total = min(total, exp.max_iter)
    return Schedule(exp.num_train_epochs, iterations_per_epoch, max(1, exp.accumulation), total)


def loss_at(step: int) -> float:
    """A falling, deterministic loss (the tests compare what the operator reads with it)."""
    return round(12.0 / (1.0 + 0.5 * step), 6)


def stamp(now: datetime) -> str:
    return f"[{now.strftime('%Y-%m-%d %H:%M:%S.%f')}]"


# -- the log -------------------------------------------------------------------------------------


@dataclass
class Log:
    """The trainer's log file, flushed line by line (the entrypoint tails it to stdout)."""

    out: TextIO
    clock: Callable[[], datetime] = datetime.now

    def raw(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def timed(self, text: str) -> None:
        self.raw(f"{stamp(self.clock())} {text}")


def runner_line(exp: ExpConfig, env: EnvConfig, rank: int, nnodes: int, master: str, port: int) -> list[str]:
    """The launcher's first lines, as the trainer writes them (its `--max_iter` is read by the operator)."""
    cmd = (
        f"/usr/bin/python3 -u -m phisonlib.launcher.launch --master_addr={master} --master_port={port} "
        f"/home/root/aiDAPTIV2/text-generation/train.py --model_name_or_path {env.model_name_or_path} "
        f"--max_seq_len {exp.max_seq_len} --nvme_path {env.nvme_path} --precision_mode {exp.precision_mode} "
        f"--learning_rate {exp.learning_rate} --num_train_epochs {exp.num_train_epochs} --max_iter {exp.max_iter} "
        f"--lr_scheduler_mode {exp.lr_scheduler_mode} --per_device_train_batch_size {exp.per_device_train_batch_size} "
        f"--gradient_accumulation_steps {exp.accumulation} --output_dir {env.output_dir}"
    )
    return [
        f"[INFO] [runner.py:579:main] cmd={cmd}",
        f"nnodes={nnodes}, num_local_procs={exp.num_gpus}, node_rank={rank}",
        f"dist_world_size={nnodes * exp.num_gpus}",
    ]


def failure_lines(pid: int, code: int, reason: str) -> list[str]:
    """How the trainer's launcher reports a dead training process."""
    return [
        reason,
        f"Killing subprocess {pid}",
        f"['/usr/bin/python3', '-u', 'train.py'] exits with return code = {code}",
    ]


OOM = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
    "23.55 GiB of which 1.02 GiB is free."
)


# -- rendezvous ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranks:
    rank: int
    nnodes: int
    master_addr: str
    master_port: int


def ranks_from(env: Mapping[str, str], exp: ExpConfig) -> Ranks:
    """The rank wiring from the environment (the operator's), with exp_config's as the fallback."""
    try:
        nnodes = int(env.get("NNODES", "1") or 1)
        rank = int(env.get("NODE_RANK", "0") or 0)
        port = int(env.get("MASTER_PORT", "") or exp.master_port)
    except ValueError as exc:
        raise ConfigError(f"the rank environment is not numeric: {exc}") from None
    if nnodes < 1 or not 0 <= rank < nnodes:
        raise ConfigError(f"NODE_RANK={rank} is not a rank of NNODES={nnodes}")
    if nnodes > 1 and not exp.multi_node:
        raise ConfigError("NNODES > 1 but exp_config's process_settings.multi_node_settings.enable is false")
    return Ranks(rank, nnodes, env.get("MASTER_ADDR") or exp.master_addr, port)


def read_env_file(path: str) -> dict[str, str]:
    """env_config's ``multi_node_env_path``: ``KEY=VALUE`` lines (the operator's entrypoint writes the
    rank's wiring there); ConfigError when it is missing or has a line of another form."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"multi_node_env_path {path}: {type(exc).__name__}: {exc}") from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"multi_node_env_path {path}, line {number}: not KEY=VALUE: {line!r}")
        found[key.strip()] = value.strip()
    return found


def _send(conn: socket.socket, message: Mapping[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _receive(conn: socket.socket, deadline: float) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        conn.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = conn.recv(4096)
        if not chunk:
            raise RendezvousError("the peer closed the connection")
        data += chunk
        if len(data) > 65536:
            raise RendezvousError("the peer sent too much")
    message = json.loads(data)
    if not isinstance(message, dict):
        raise RendezvousError(f"unexpected message {message!r}")
    return message


def rendezvous(ranks: Ranks, timeout: float, bind: str = "0.0.0.0", log: Callable[[str], None] = print) -> list[int]:
    """Meet every rank; return the ranks seen (sorted). RendezvousError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    if ranks.nnodes == 1:
        return [0]
    if ranks.rank == 0:
        return _serve(ranks, deadline, bind, log)
    return _join(ranks, deadline, log)


def _serve(ranks: Ranks, deadline: float, bind: str, log: Callable[[str], None]) -> list[int]:
    with socket.create_server((bind, ranks.master_port), reuse_port=False) as server:
        log(f"[INFO] rank 0 waiting for {ranks.nnodes - 1} rank(s) on port {ranks.master_port}")
        peers: dict[int, socket.socket] = {}
        try:
            while len(peers) < ranks.nnodes - 1:
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(set(range(1, ranks.nnodes)) - set(peers))
                    raise RendezvousError(f"rank 0 timed out waiting for ranks {missing}")
                server.settimeout(left)
                try:
                    conn, address = server.accept()
                except TimeoutError:
                    continue
                try:
                    hello = _receive(conn, deadline)
                    rank = int(hello["rank"])
                except (RendezvousError, OSError, ValueError, KeyError, TypeError) as exc:
                    log(f"[WARNING] ignoring a connection from {address[0]}: {exc}")
                    conn.close()
                    continue
                if not 0 < rank < ranks.nnodes or rank in peers:
                    log(f"[WARNING] ignoring rank {rank} from {address[0]}")
                    conn.close()
                    continue
                log(f"[INFO] rank {rank} joined from {address[0]}")
                peers[rank] = conn
            everyone = [0, *sorted(peers)]
            for conn in peers.values():
                _send(conn, {"ranks": everyone})
            return everyone
        finally:
            for conn in peers.values():
                conn.close()


def _join(ranks: Ranks, deadline: float, log: Callable[[str], None]) -> list[int]:
    last = "no attempt"
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        try:
            left = max(0.05, deadline - time.monotonic())
            with socket.create_connection((ranks.master_addr, ranks.master_port), timeout=min(5.0, left)) as conn:
                _send(conn, {"rank": ranks.rank, "host": socket.gethostname()})
                answer = _receive(conn, deadline)
            everyone = sorted(int(r) for r in answer["ranks"])
            log(f"[INFO] rank {ranks.rank} joined rank 0 at {ranks.master_addr}:{ranks.master_port}")
            return everyone
        except (OSError, RendezvousError, ValueError, KeyError, TypeError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    raise RendezvousError(
        f"rank {ranks.rank} could not reach rank 0 at {ranks.master_addr}:{ranks.master_port} "
        f"after {attempts} attempts ({last})"
    )


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Run:
    exp: ExpConfig
    env: EnvConfig
    datasets: list[Dataset]
    model_type: str
    behaviour: Behaviour
    ranks: Ranks
    log: Log
    stdout: TextIO = sys.stdout
    pid: int = field(default_factory=os.getpid)
    sleep: Callable[[float], None] = time.sleep

    def swap_dir(self) -> Path:
        return Path(self.env.nvme_path) / f"phison_{self.pid}"

    def checkpoint(self, label: str, updates: int) -> None:
        self.log.timed("[Save Model_Checkpoint][Start]")
        if self.ranks.rank == 0:
            target = Path(self.env.output_dir) / label
            target.mkdir(parents=True, exist_ok=True)
            weights = "adapter_model" if self.exp.lora else "model"
            extension = self.exp.weight_file_format or "safetensors"
            (target / f"{weights}.{extension}").write_bytes(b"stand-in weights of " + label.encode() + b"\n")
            (target / "config.json").write_text(json.dumps({"model_type": self.model_type, "stand_in": True}) + "\n")
        self.log.timed("[Save Model_Checkpoint][time spent]:0.01")
        self.log.timed(f"The model stored this time includes {updates} update cycles.")

    def train(self) -> int:
        """Log the training; return the exit status."""
        plan = schedule(self.exp, self.behaviour.iterations)
        log = self.log
        log.timed("[INFO] Enable Early-stopping: False")
        log.raw(
            f"[INFO] The current training schedule consists of {plan.epochs} epochs "
            f"with {plan.per_epoch} iterations each."
        )
        log.raw(
            f"[INFO] The accumulated time is set to {plan.accumulation} so the training will be updated "
            f"{plan.updates_per_epoch} times during each epoch."
        )
        if self.behaviour.kind == "hang":
            log.timed("[INFO] Beginning of Epoch 1/1, Total Micro Batches 1")
            log.timed("[PHISON START] Epoch: 0, Iteration: 0")
            while True:
                self.sleep(3600)
        step = 0
        updates = 0
        for epoch in range(plan.epochs):
            if step >= plan.total:
                break
            log.timed(f"[INFO] Beginning of Epoch {epoch + 1}/{plan.epochs}, Total Micro Batches {plan.per_epoch}")
            for iteration in range(plan.per_epoch):
                if step >= plan.total:
                    break
                log.timed(f"[PHISON START] Epoch: {epoch}, Iteration: {iteration}")
                log.timed("[Forward][start]")
                if self.behaviour.kind in ("oom", "fail"):
                    return self.fail()
                self.sleep(self.behaviour.step_seconds)
                log.timed(f"[Forward][time spent]:{self.behaviour.step_seconds}")
                log.timed(f"[Loss]:{loss_at(step)}")
                log.timed("[Update][Start]")
                log.timed(f"[PHISON END] Iteration: {iteration}")
                log.raw("")
                step += 1
                if step % plan.accumulation == 0:
                    updates += 1
                    rate = 100.0 + step
                    log.timed(f"[INFO] Training efficiency: {rate} (tokens/s)")
                    log.raw("")
                    if self.exp.save_on_iteration and updates % self.exp.iterations_to_save == 0:
                        self.checkpoint(f"checkpoint-iteration-{step}", updates)
            self.checkpoint(f"checkpoint-epoch-{epoch + 1}", updates)
        log.timed(COMPLETE)
        log.raw(f"Process {self.pid} exits successfully.")
        return 0

    def fail(self) -> int:
        if self.behaviour.kind == "oom":
            lines = ["Traceback (most recent call last):", '  File "train.py", line 1, in <module>', OOM]
            for line in [*lines[:-1], *failure_lines(self.pid, 1, lines[-1])]:
                self.log.raw(line)
            return 0  # the trainer was seen to exit 0 after such failures
        code = self.behaviour.exit_code
        reason = f"RuntimeError: stand-in failure (exit code {code}) as {ENV_BEHAVIOUR}=fail asks"
        for line in failure_lines(self.pid, code, reason):
            self.log.raw(line)
        return code


def _stop_on_signals() -> None:
    def raise_stopped(signum: int, _frame: object) -> NoReturn:
        raise Stopped(signum)

    signal.signal(signal.SIGTERM, raise_stopped)
    signal.signal(signal.SIGINT, raise_stopped)


def _refuse(message: str, log: Log | None = None, pid: int | None = None) -> int:
    """A config problem: on stderr, and in the log when it is open; exit 1."""
    print(f"phisonai2: error: {message}", file=sys.stderr, flush=True)
    if log is not None:
        for line in failure_lines(pid or os.getpid(), 1, f"[ERROR] {message}"):
            log.raw(line)
    return 1


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="phisonai2", description="aiDAPTIV+ trainer (e2e stand-in)")
    parser.add_argument("--env_config", required=True)
    parser.add_argument("--exp_config", required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env_vars = os.environ if environ is None else environ
    _stop_on_signals()
    try:
        behaviour = behaviour_from(env_vars)
        exp = parse_exp_config(load_yaml(args.exp_config, "exp_config"), f"exp_config {args.exp_config}")
        env = parse_env_config(load_yaml(args.env_config, "env_config"), f"env_config {args.env_config}")
        wiring = read_env_file(env.multi_node_env_path) if env.multi_node_env_path else {}
        ranks = ranks_from({**env_vars, **wiring}, exp)
    except ConfigError as exc:
        return _refuse(str(exc))
    except Stopped:
        return SIGTERM_EXIT
    if not Path(env.output_dir).is_dir():
        return _refuse(f"FileNotFoundError: output_dir {env.output_dir} does not exist")
    try:
        handle = env.log_file.open("a")
    except OSError as exc:
        return _refuse(f"cannot open the log file {env.log_file}: {type(exc).__name__}: {exc}")
    with handle:
        return _run(exp, env, behaviour, ranks, Log(handle))


def _datasets(env: EnvConfig, log: Log) -> list[Dataset] | str:
    """The datasets, or the trainer's complaint about a file's separators."""
    found: list[Dataset] = []
    for path in env.train_data_path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"dataset config {path}: {type(exc).__name__}: {exc}") from None
        problem = separator_problem(text)
        if problem:
            return problem
        for dataset in parse_datasets(text, f"dataset config {path}"):
            log.raw(f"[INFO] get dataset name:  {dataset.data_path}  training_strategy:  {dataset.strategy}")
            found.append(dataset)
    return found


def _run(exp: ExpConfig, env: EnvConfig, behaviour: Behaviour, ranks: Ranks, log: Log) -> int:
    pid = os.getpid()
    swap: Path | None = None
    try:
        for line in runner_line(exp, env, ranks.rank, ranks.nnodes, ranks.master_addr, ranks.master_port):
            log.raw(line)
        if ranks.nnodes > 1:
            everyone = rendezvous(ranks, behaviour.rendezvous_timeout, log=log.raw)
            log.timed(f"[INFO] rendezvous complete: {ranks.nnodes} nodes, ranks {','.join(map(str, everyone))}")
        log.raw("#### ======== [INITIALIZE Tokenizer] ======== ####")
        log.raw("#### ======== [INITIALIZE Dataloader] ======== ####")
        datasets = _datasets(env, log)
        if isinstance(datasets, str):
            for line in failure_lines(pid, 1, datasets):
                log.raw(line)
            return 0  # as the trainer was seen to exit after this complaint
        log.raw("#### ======== [INITIALIZE Model] ======== ####")
        model_type = read_model(env.model_name_or_path)
        log.raw(f"[INFO] [create_hf_model] init from pretrained {env.model_name_or_path} (model_type {model_type})")
        print("Loading checkpoint shards: 100%|##########| 1/1 [00:00<00:00, 99.00it/s]", flush=True)
        swap = Path(env.nvme_path) / f"phison_{pid}"
        try:
            swap.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the swap data path {swap}: {type(exc).__name__}: {exc}") from None
        log.raw(f"[INFO] create current swap data path: {swap}")
        return Run(exp, env, datasets, model_type, behaviour, ranks, log, pid=pid).train()
    except ConfigError as exc:
        return _refuse(str(exc), log, pid)
    except RendezvousError as exc:
        return _refuse(f"rendezvous failed: {exc}", log, pid)
    except Stopped as stopped:
        log.raw(f"[WARNING] received {stopped}: stopping the training")
        for line in failure_lines(pid, -stopped.signum, f"Killing subprocess {pid}")[1:]:
            log.raw(line)
        return SIGTERM_EXIT
    finally:
        if swap is not None and swap.is_dir():
            for child in _walk_files(swap):
                child.unlink()
            for directory in sorted((p for p in swap.rglob("*") if p.is_dir()), reverse=True):
                directory.rmdir()
            swap.rmdir()
            log.raw(f"[INFO] remove current swap data path: {swap}")


def _walk_files(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if not p.is_dir())


if __name__ == "__main__":
    sys.exit(main())
