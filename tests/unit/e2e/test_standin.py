"""The stand-in trainer (e2e/standin/phisonai2.py): its pure parts, and whole runs as a process.

It must read what the operator renders exactly where the trainer would, refuse what the trainer would
refuse with a message naming the file and the key, and write a log the operator's parser reads.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.standin import phisonai2 as p

from finetune_operator.api.resource import load_finetunejob
from finetune_operator.observe.progress import parse_log
from finetune_operator.render import configs
from tests.rule_cases import finetunejob

STANDIN = Path(p.__file__)


def _ftj(**spec: Any) -> Any:
    body = finetunejob(spec, "standin", "ns")
    body["metadata"]["uid"] = "0123456789abcdef"
    return load_finetunejob(body)


def _exp(**run_settings: Any) -> Any:
    return yaml.safe_load(configs.exp_config(_ftj(expConfig={"runSettings": run_settings})))


# -- reading the configs the operator renders ------------------------------------------------------


def test_the_operators_exp_config_reads_back_with_the_chart_defaults() -> None:
    exp = p.parse_exp_config(_exp())
    assert exp == p.ExpConfig(
        num_gpus=1,
        specify_gpus=None,
        master_port=8299,
        multi_node=False,
        master_addr="127.0.0.1",
        per_device_train_batch_size=4,
        per_update_total_batch_size=16,
        num_train_epochs=1,
        max_iter=12,
        max_seq_len=2048,
        precision_mode=1,
        learning_rate=7e-06,
        lr_scheduler_mode=1,
        weight_file_format=None,
        save_on_iteration=False,
        iterations_to_save=2,
        lora=False,
    )
    assert exp.accumulation == 4


def test_the_operators_env_config_reads_back_and_names_the_log_the_operator_reads() -> None:
    ftj = _ftj(envConfig={"pathSettings": {"outputDir": "/mnt/out", "logName": "train.log"}})
    env = p.parse_env_config(yaml.safe_load(configs.env_config(ftj)))
    assert env.train_data_path == ("/config/train_data/QA_dataset_config.yaml",)
    assert (env.output_dir, env.nvme_path, env.multi_node_env_path) == ("/mnt/out", "/mnt/nvme0", None)
    assert str(env.log_file) == configs.log_file(ftj) == "/mnt/out/train.standin-01234567.log"


def test_the_operators_dataset_config_reads_back() -> None:
    text = configs.dataset_config(_ftj().spec)
    assert p.separator_problem(text) is None
    assert p.parse_datasets(text, "qa") == [p.Dataset("instruction-dataset", "HuggingFaceH4/instruction-dataset", "qa")]


def test_the_charts_unquoted_learning_rate_is_text_for_a_yaml_1_1_reader() -> None:
    """The chart wrote `learning_rate: 7e-06`, which PyYAML (the trainer's reader) keeps as a string."""
    tree = _exp()
    tree["run_settings"]["lr_scheduler"]["learning_rate"] = yaml.safe_load("v: 7e-06")["v"]
    with pytest.raises(p.ConfigError) as refused:
        p.parse_exp_config(tree, "exp_config /config/exp/exp_config.yaml")
    assert str(refused.value) == (
        "exp_config /config/exp/exp_config.yaml: run_settings.lr_scheduler.learning_rate must be a number, "
        "got '7e-06' (str)"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t["run_settings"].pop("max_iter"), "exp: KeyError: 'run_settings.max_iter' is missing"),
        (
            lambda t: t["process_settings"].update(num_gpus=3),
            "exp: process_settings.num_gpus must be one of [1, 2, 4, 8], got 3",
        ),
        (
            lambda t: t["run_settings"].update(per_update_total_batch_size=10),
            "exp: run_settings.per_update_total_batch_size (10) must be a multiple of num_gpus x "
            "per_device_train_batch_size (4)",
        ),
        (lambda t: t["run_settings"].update(max_iter=0), "exp: run_settings.max_iter must be -1 or positive, got 0"),
        (
            lambda t: t["process_settings"].update(specify_gpus=0),
            "exp: process_settings.specify_gpus must be null or a string, got 0",
        ),
        (lambda t: t.update(run_settings=[]), "exp: run_settings must be a mapping, got []"),
    ],
)
def test_a_malformed_exp_config_is_refused_naming_the_key(change: Any, message: str) -> None:
    tree = _exp()
    change(tree)
    with pytest.raises(p.ConfigError) as refused:
        p.parse_exp_config(tree, "exp")
    assert str(refused.value) == message


def test_missing_and_unparsable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(p.ConfigError) as missing:
        p.load_yaml(str(tmp_path / "nope.yaml"), "env_config")
    assert str(missing.value) == (
        f"env_config not found: FileNotFoundError: [Errno 2] No such file or directory: '{tmp_path / 'nope.yaml'}'"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(p.ConfigError) as unparsable:
        p.load_yaml(str(broken), "exp_config")
    assert str(unparsable.value).startswith(f"exp_config {broken} is not valid YAML: ParserError: ")


def test_datasets_without_separators_get_the_trainers_own_complaint() -> None:
    text = "a:\n  data_path: x\n# data_path in a comment counts too\nb:\n  data_path: y\n"
    assert p.separator_problem(text) == "data_path count:3, --- count:0"
    assert p.separator_problem("a:\n  data_path: x\n---\nb:\n  data_path: y\n") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "d:\n  data_path: x\n  strategy: sft\n  user_prompt: '{question}'\n",
            "d: dataset 'd': strategy must be one of",
        ),
        (
            "d:\n  data_path: x\n  strategy: QA\n  user_prompt: ask\n",
            "d: dataset 'd': user_prompt must contain {question}",
        ),
        ("d:\n  strategy: QA\n", "d: dataset 'd': KeyError: 'data_path' is missing"),
        ("", "d: no dataset"),
    ],
)
def test_bad_datasets_are_refused(text: str, message: str) -> None:
    with pytest.raises(p.ConfigError) as refused:
        p.parse_datasets(text, "d")
    assert str(refused.value).startswith(message)


def test_the_model_needs_a_directory_with_a_config(tmp_path: Path) -> None:
    with pytest.raises(p.ConfigError, match="is not a local folder"):
        p.read_model(str(tmp_path / "absent"))
    with pytest.raises(p.ConfigError, match=r"does not appear to have a file named config\.json"):
        p.read_model(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    assert p.read_model(str(tmp_path)) == "llama"


# -- behaviour, schedule, ranks ----------------------------------------------------------------------


def test_behaviour_from_the_environment() -> None:
    assert p.behaviour_from({}) == p.Behaviour()
    assert p.behaviour_from({p.ENV_BEHAVIOUR: "FAIL", p.ENV_EXIT_CODE: "7", p.ENV_STEP_SECONDS: "0"}) == p.Behaviour(
        kind="fail", exit_code=7, step_seconds=0.0
    )
    with pytest.raises(p.ConfigError, match="one of succeed, oom, fail, hang"):
        p.behaviour_from({p.ENV_BEHAVIOUR: "explode"})
    with pytest.raises(p.ConfigError, match="must be a finite number >= 0"):
        p.behaviour_from({p.ENV_STEP_SECONDS: "nan"})
    with pytest.raises(p.ConfigError, match="a failure exits with 1 to 255"):
        p.behaviour_from({p.ENV_BEHAVIOUR: "fail", p.ENV_EXIT_CODE: "0"})


def test_max_iter_caps_the_schedule() -> None:
    exp = p.parse_exp_config(_exp(numTrainEpochs=3, maxIter=5))
    assert p.schedule(exp, 4) == p.Schedule(epochs=3, per_epoch=4, accumulation=4, total=5)
    unlimited = p.parse_exp_config(_exp(numTrainEpochs=3, maxIter=-1))
    assert p.schedule(unlimited, 4).total == 12


def test_ranks_come_from_the_operators_environment() -> None:
    exp = p.parse_exp_config(_exp())
    multi = p.ExpConfig(**{**exp.__dict__, "multi_node": True})
    env = {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "job-0.job", "MASTER_PORT": "29500"}
    assert p.ranks_from(env, multi) == p.Ranks(rank=1, nnodes=2, master_addr="job-0.job", master_port=29500)
    assert p.ranks_from({}, exp) == p.Ranks(rank=0, nnodes=1, master_addr="127.0.0.1", master_port=8299)
    with pytest.raises(p.ConfigError, match=r"multi_node_settings\.enable is false"):
        p.ranks_from(env, exp)
    with pytest.raises(p.ConfigError, match="NODE_RANK=2 is not a rank of NNODES=2"):
        p.ranks_from({**env, "NODE_RANK": "2"}, multi)


def test_the_multi_node_env_file_is_read_as_key_value_lines(tmp_path: Path) -> None:
    wiring = tmp_path / "multi.env"
    wiring.write_text("MASTER_ADDR=job-0.job.ns.svc\nMASTER_PORT=29500\nNODE_RANK=1\nNNODES=2\n")
    assert p.read_env_file(str(wiring)) == {
        "MASTER_ADDR": "job-0.job.ns.svc",
        "MASTER_PORT": "29500",
        "NODE_RANK": "1",
        "NNODES": "2",
    }
    wiring.write_text("MASTER_ADDR job-0\n")
    with pytest.raises(p.ConfigError, match=r"line 1: not KEY=VALUE: 'MASTER_ADDR job-0'"):
        p.read_env_file(str(wiring))
    with pytest.raises(p.ConfigError, match="FileNotFoundError"):
        p.read_env_file(str(tmp_path / "absent.env"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_three_ranks_meet_on_loopback() -> None:
    port = _free_port()
    results: dict[int, list[int]] = {}

    def join(rank: int) -> None:
        results[rank] = p.rendezvous(p.Ranks(rank, 3, "127.0.0.1", port), timeout=20, log=lambda _: None)

    joiners = [threading.Thread(target=join, args=(rank,)) for rank in (1, 2)]
    for thread in joiners:
        thread.start()  # before rank 0 listens: they retry until it does
    results[0] = p.rendezvous(p.Ranks(0, 3, "127.0.0.1", port), timeout=20, bind="127.0.0.1", log=lambda _: None)
    for thread in joiners:
        thread.join(timeout=30)
    assert results == {0: [0, 1, 2], 1: [0, 1, 2], 2: [0, 1, 2]}


def test_a_rendezvous_without_every_rank_times_out() -> None:
    port = _free_port()
    with pytest.raises(p.RendezvousError, match=r"rank 0 timed out waiting for ranks \[1\]"):
        p.rendezvous(p.Ranks(0, 2, "127.0.0.1", port), timeout=0.5, bind="127.0.0.1", log=lambda _: None)
    with pytest.raises(p.RendezvousError, match=f"rank 1 could not reach rank 0 at 127.0.0.1:{port}"):
        p.rendezvous(p.Ranks(1, 2, "127.0.0.1", port), timeout=0.5, log=lambda _: None)


# -- whole runs, as the entrypoint starts it ------------------------------------------------------------


def _setup(tmp_path: Path, **spec: Any) -> tuple[list[str], dict[str, str], Path]:
    """The three config files as the operator renders them, under tmp_path (paths rewritten there)."""
    out, model, nvme = tmp_path / "out", tmp_path / "model", tmp_path / "nvme"
    for directory in (out, model):
        directory.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    paths: dict[str, Any] = {"outputDir": str(out), "modelNameOrPath": str(model), "nvmePath": str(nvme)}
    paths["trainDataPath"] = [str(tmp_path / "qa.yaml")]
    spec.setdefault("envConfig", {}).setdefault("pathSettings", {}).update(paths)
    ftj = _ftj(**spec)
    files = configs.config_files(ftj)
    (tmp_path / "exp.yaml").write_text(files[configs.EXP_CONFIG_FILE])
    (tmp_path / "env.yaml").write_text(files[configs.ENV_CONFIG_FILE])
    (tmp_path / "qa.yaml").write_text(files[configs.TRAIN_DATA_FILE])
    argv = [
        sys.executable,
        str(STANDIN),
        "--env_config",
        str(tmp_path / "env.yaml"),
        "--exp_config",
        str(tmp_path / "exp.yaml"),
    ]
    env = {"PATH": os.environ["PATH"], p.ENV_STEP_SECONDS: "0"}
    return argv, env, Path(configs.log_file(ftj))


def test_a_successful_run_writes_the_log_the_operator_reads_and_checkpoints(tmp_path: Path) -> None:
    argv, env, log = _setup(tmp_path, expConfig={"runSettings": {"numTrainEpochs": 2, "maxIter": 6}})
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Loading checkpoint shards: 100%|##########| 1/1 [00:00<00:00, 99.00it/s]\n"
    text = log.read_text()
    progress = parse_log(text, final=True)
    assert (progress.verdict, progress.steps, progress.total_steps, progress.total_epochs) == ("complete", 6, 6, 2)
    assert progress.loss is not None and progress.loss.value == str(p.loss_at(5))
    assert p.COMPLETE in text and "[Save Model_Checkpoint][Start]" in text
    assert sorted(d.name for d in (tmp_path / "out").iterdir() if d.is_dir()) == [
        "checkpoint-epoch-1",
        "checkpoint-epoch-2",
    ]
    assert list((tmp_path / "nvme").iterdir()) == []  # its swap dir is removed at the end


def test_a_cuda_oom_is_logged_and_exits_zero_as_the_trainer_does(tmp_path: Path) -> None:
    argv, env, log = _setup(tmp_path)
    done = subprocess.run(argv, env={**env, p.ENV_BEHAVIOUR: "oom"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    progress = parse_log(log.read_text(), final=True)
    assert progress.verdict == "failed"
    assert log.read_text().rstrip().splitlines()[-4:-1] == [
        p.OOM,
        f"Killing subprocess {log.read_text().split('phison_')[1].split()[0]}",
        "['/usr/bin/python3', '-u', 'train.py'] exits with return code = 1",
    ]


def test_a_failure_exits_with_the_chosen_code(tmp_path: Path) -> None:
    argv, env, log = _setup(tmp_path)
    done = subprocess.run(
        argv, env={**env, p.ENV_BEHAVIOUR: "fail", p.ENV_EXIT_CODE: "9"}, capture_output=True, timeout=60
    )
    assert done.returncode == 9
    assert "exits with return code = 9" in log.read_text()


def test_a_missing_output_dir_or_config_fails_with_a_clear_message(tmp_path: Path) -> None:
    argv, env, _ = _setup(tmp_path)
    (tmp_path / "out").rmdir()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (
        1,
        f"phisonai2: error: FileNotFoundError: output_dir {tmp_path / 'out'} does not exist\n",
    )
    (tmp_path / "exp.yaml").unlink()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == (
        "phisonai2: error: exp_config not found: FileNotFoundError: [Errno 2] No such file or directory: "
        f"'{tmp_path / 'exp.yaml'}'\n"
    )


def test_sigterm_stops_a_hanging_run_and_is_logged(tmp_path: Path) -> None:
    argv, env, log = _setup(tmp_path)
    process = subprocess.Popen(argv, env={**env, p.ENV_BEHAVIOUR: "hang"}, stdout=subprocess.DEVNULL)
    try:
        for _ in range(400):  # bounded: 20 s
            if log.exists() and "[PHISON START]" in log.read_text():
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == p.SIGTERM_EXIT
    finally:
        if process.poll() is None:
            process.kill()
    lines = log.read_text().rstrip().splitlines()
    assert lines[-4] == "[WARNING] received SIGTERM: stopping the training"
    assert lines[-2] == "['/usr/bin/python3', '-u', 'train.py'] exits with return code = -15"
    assert lines[-1].startswith("[INFO] remove current swap data path: ")
