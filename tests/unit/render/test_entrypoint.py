"""The container entrypoint, run for real by /bin/sh with a stand-in trainer."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
from pathlib import Path

import pytest

from finetune_operator.api.base import RANK_PLACEHOLDER
from finetune_operator.api.resource import load_finetunejob
from finetune_operator.render import configs
from finetune_operator.render.entrypoint import (
    ENTRYPOINT,
    ENV_PUSH_FORMAT,
    ENV_PUSH_INSECURE,
    ENV_PUSH_REFERENCE,
    ENV_PUSH_TOOLS,
    ENV_PUSH_WORK_DIR,
    ENV_PUSH_WORK_LIMIT_KIB,
    EXIT_ENDED_EARLY,
    EXIT_PUSH_FAILED,
    PUSH_FORMAT_IMAGE,
    PUSH_FORMAT_MODELPACK,
    REASON_PUSH_FAILED,
)
from finetune_operator.render.manifests import render
from tests.kubelet import container_environment
from tests.rule_cases import finetunejob

COMPLETE_LOG = """[2026-09-07 10:53:26.291295] [PHISON START] Epoch: 0, Iteration: 0
[2026-09-07 10:54:02.745475] [Loss]:11.5
[2026-09-07 10:54:10.691716] [PHISON END] Iteration: 0
[2026-09-07 10:54:10.695523] [PHISON START] Epoch: 0, Iteration: 1
[2026-09-07 10:54:13.053860] [Loss]:9.25
[2026-09-07 10:54:22.348872] [PHISON END] Iteration: 1
[2026-09-07 10:57:04.742171] [INFO] training complete!
"""
FAILED_LOG = (
    "data_path count:2, --- count:0\nKilling subprocess 267\n['python3', 'train.py'] exits with return code = 1\n"
)


def _run(
    tmp_path: Path,
    log: str,
    trainer_exit: int = 0,
    prescript: str = "",
    postscript: str = "",
    run: str = "run",
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    (tmp_path / "log-content").write_text(log)
    trainer = bin_dir / "phisonai2"
    # The stand-in writes its log where env_config says, as the real trainer does, and echoes its args.
    trainer.write_text(
        f'#!/bin/sh\necho "args: $*"\ncat "{tmp_path}/log-content" >> "$FTO_LOG_FILE"\nexit {trainer_exit}\n'
    )
    trainer.chmod(0o755)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "prescript.sh").write_text(prescript)
    (scripts / "postscript.sh").write_text(postscript)
    output = tmp_path / "out" / run
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FTO_OUTPUT_DIR": str(output),
        "FTO_LOG_FILE": str(output / "output.log"),
        "FTO_ENV_CONFIG": "/config/env/env_config.yaml",
        "FTO_EXP_CONFIG": "/config/exp/exp_config.yaml",
        "FTO_PRESCRIPT": str(scripts / "prescript.sh"),
        "FTO_POSTSCRIPT": str(scripts / "postscript.sh"),
        "FTO_TERMINATION_LOG": str(tmp_path / "termination-log"),
        "FTO_LOG_DRAIN_SECONDS": "0",  # the pod's 2 s wait for the tail's last lines: not judged here
        **(extra_env or {}),
    }
    result = subprocess.run(
        ["/bin/sh", "-c", ENTRYPOINT], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    summary = {}
    termination = tmp_path / "termination-log"
    if termination.exists():
        for line in termination.read_text().splitlines():
            key, _, value = line.partition(": ")
            summary[key] = value
    return result, summary, output


def test_success_needs_exit_zero_and_training_complete(tmp_path: Path) -> None:
    # With the drain of a pod (there the variable is unset; empty reads the same): the log's last lines
    # reach stdout before the tail is stopped.
    result, summary, output = _run(tmp_path, COMPLETE_LOG, extra_env={"FTO_LOG_DRAIN_SECONDS": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary == {
        "verdict": "succeeded",
        "reason": "TrainingComplete",
        "exitCode": "0",
        "step": "2",
        "loss": "9.25",
        "evidence": "[2026-09-07 10:57:04.742171] [INFO] training complete!",
    }
    assert output.is_dir()
    # The log file is streamed to stdout, so `kubectl logs` shows it.
    assert "[Loss]:11.5" in result.stdout and "training complete!" in result.stdout
    assert "args: --env_config /config/env/env_config.yaml --exp_config /config/exp/exp_config.yaml" in result.stdout


def test_exit_zero_without_training_complete_is_a_failure(tmp_path: Path) -> None:
    result, summary, _ = _run(tmp_path, "[INFO] loading\nsomething odd\n")
    assert result.returncode == 3
    assert summary["verdict"] == "failed"
    assert summary["reason"] == "TrainingIncomplete"
    assert summary["evidence"].endswith("something odd")


def test_logged_return_code_fails_even_when_the_trainer_exits_zero(tmp_path: Path) -> None:
    result, summary, _ = _run(tmp_path, FAILED_LOG)
    assert result.returncode == 1
    assert summary["reason"] == "TrainerReportedFailure"
    assert summary["evidence"] == "['python3', 'train.py'] exits with return code = 1"


def test_trainer_exit_code_is_passed_on(tmp_path: Path) -> None:
    result, summary, _ = _run(tmp_path, COMPLETE_LOG, trainer_exit=7)
    assert result.returncode == 7
    assert summary["reason"] == "TrainerExitCode"


def test_postscript_exit_cannot_hide_a_failed_training(tmp_path: Path) -> None:
    result, summary, _ = _run(tmp_path, FAILED_LOG, postscript="echo post ran\nexit 0\n")
    assert result.returncode == 1
    assert "post ran" in result.stdout
    assert summary["reason"] == "TrainerReportedFailure"


def test_failing_postscript_fails_a_good_training(tmp_path: Path) -> None:
    result, summary, _ = _run(tmp_path, COMPLETE_LOG, postscript="false\n")
    assert result.returncode == 1
    assert summary["reason"] == "PostscriptFailed"


def test_prescript_shares_the_shell_and_its_exit_stops_the_run(tmp_path: Path) -> None:
    result, summary, _ = _run(
        tmp_path, COMPLETE_LOG, prescript="export FROM_PRE=yes\n", postscript='echo "pre=$FROM_PRE"\n'
    )
    assert result.returncode == 0
    assert "pre=yes" in result.stdout
    result, summary, output = _run(tmp_path / "second", COMPLETE_LOG, prescript="echo mount failed\nexit 5\n")
    assert result.returncode == 5
    assert summary["reason"] == "PrescriptFailed"
    assert not output.exists()


ENDED_EARLY = (
    "the Prescript stage ended the run (exit or exec) with status 0 before the trainer's verdict; "
    "end a prescript early with return, not exit"
)
COMPLETE = "[2026-09-07 10:57:04.742171] [INFO] training complete!"
REPORTED = FAILED_LOG.splitlines()[-1]
# (prescript, log, exit status, reason, evidence)
PRESCRIPT_CASES = [
    # Found by a probe: an `exit` or `exit 0` ended the sourced entrypoint with status 0, so the Job
    # completed and the FineTuneJob Succeeded though the trainer never ran.
    ("exit\n", COMPLETE_LOG, EXIT_ENDED_EARLY, "PrescriptFailed", ENDED_EARLY),
    ("exit 0\n", COMPLETE_LOG, EXIT_ENDED_EARLY, "PrescriptFailed", ENDED_EARLY),
    ("echo mounted\nexit\n", COMPLETE_LOG, EXIT_ENDED_EARLY, "PrescriptFailed", ENDED_EARLY),
    ("exec true\n", COMPLETE_LOG, EXIT_ENDED_EARLY, "PrescriptFailed", ENDED_EARLY),
    ("false\nexit\n", COMPLETE_LOG, 1, "PrescriptFailed", "the Prescript stage exited with status 1"),
    ("exit 3\n", COMPLETE_LOG, 3, "PrescriptFailed", "the Prescript stage exited with status 3"),
    ("set -e\nfalse\n", COMPLETE_LOG, 1, "PrescriptFailed", "the Prescript stage exited with status 1"),
    # The status of its last command is not judged (nor was it in the chart: `[ -d x ] && y` ends 1)...
    ("false\n", COMPLETE_LOG, 0, "TrainingComplete", COMPLETE),
    # ...and `return` ends the prescript, not the run.
    ("return 0\n", COMPLETE_LOG, 0, "TrainingComplete", COMPLETE),
    ("return 3\n", COMPLETE_LOG, 0, "TrainingComplete", COMPLETE),
    # Its shell options, traps and names stay its own (`set -u` made the setup fail: SetupFailed).
    ("set -eu\n", COMPLETE_LOG, 0, "TrainingComplete", COMPLETE),
    ("trap 'exit 0' EXIT\n", FAILED_LOG, 1, "TrainerReportedFailure", REPORTED),
    (
        "trap 'exit 9' EXIT\n",
        COMPLETE_LOG,
        9,
        "PrescriptFailed",
        "the run reported success but ended with status 9 (an exit trap of the prescript?)",
    ),
    (
        "say() { :; }\nreport() { :; }\ntrain() { :; }\nrun() { :; }\ntrainer=/bin/true\ntermination=/dev/null\n",
        FAILED_LOG,
        1,
        "TrainerReportedFailure",
        REPORTED,
    ),
    # A TERM to the judge ($$ in the prescript is its PID: a container's PID 1, as the kubelet's SIGTERM
    # is) ends the run's stage, and the judge reports it (test_entrypoint_signals.py: the trainer's too).
    # (The signal reaches the run within the sleep: the stage it ends is then certain.)
    ("kill $$\nsleep 1\n", COMPLETE_LOG, 143, "PrescriptFailed", "the Prescript stage exited with status 143"),
]
# (postscript, exit status and reason after a complete log; after a failed one it is always 1, TrainerReportedFailure)
POSTSCRIPT_CASES = [
    ("exit\n", 0, "TrainingComplete"),
    ("exit 0\n", 0, "TrainingComplete"),
    ("return 0\n", 0, "TrainingComplete"),
    ("exec true\n", 0, "TrainingComplete"),
    ("exit 3\n", 3, "PostscriptFailed"),
    ("false\n", 1, "PostscriptFailed"),
    ("trap 'exit 0' EXIT\nfalse\n", 0, "TrainingComplete"),  # its own exit trap, after its last command
]
Outcome = tuple[subprocess.CompletedProcess[str], dict[str, str], Path]


@pytest.fixture(scope="module")
def scripted_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Outcome]:
    """Every case above, run at once (each run waits 2 s for the log to be streamed)."""
    runs = [("pre", script, log) for script, log, *_ in PRESCRIPT_CASES]
    runs += [("post", script, log) for script, *_ in POSTSCRIPT_CASES for log in (COMPLETE_LOG, FAILED_LOG)]

    def one(index: int, which: str, script: str, log: str) -> Outcome:
        where = tmp_path_factory.mktemp(f"run{index}")
        return _run(where, log, **{f"{which}script": script})

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = {run: pool.submit(one, index, *run) for index, run in enumerate(runs)}
    return {run: future.result() for run, future in futures.items()}


@pytest.mark.parametrize(("prescript", "log", "returncode", "reason", "evidence"), PRESCRIPT_CASES)
def test_the_exit_status_tells_the_truth_whatever_the_prescript_does(
    scripted_runs: dict[tuple[str, str, str], Outcome],
    prescript: str,
    log: str,
    returncode: int,
    reason: str,
    evidence: str,
) -> None:
    result, summary, _ = scripted_runs["pre", prescript, log]
    assert (result.returncode, summary["reason"], summary["evidence"]) == (returncode, reason, evidence), (
        result.stdout + result.stderr
    )
    assert summary["verdict"] == ("succeeded" if returncode == 0 else "failed")
    assert summary["exitCode"] == str(returncode)


def test_a_killed_judge_never_exits_zero(tmp_path: Path) -> None:
    """Outside a container (where PID 1 cannot be sent SIGKILL from inside) the judge can die: not a success."""
    result, _summary, _ = _run(tmp_path, COMPLETE_LOG, prescript="kill -9 $$\n")
    assert result.returncode == -9


@pytest.mark.parametrize(("postscript", "returncode", "reason"), POSTSCRIPT_CASES)
def test_the_exit_status_tells_the_truth_whatever_the_postscript_does(
    scripted_runs: dict[tuple[str, str, str], Outcome], postscript: str, returncode: int, reason: str
) -> None:
    result, summary, _ = scripted_runs["post", postscript, COMPLETE_LOG]
    assert (result.returncode, summary["reason"], summary["exitCode"]) == (returncode, reason, str(returncode)), (
        result.stdout + result.stderr
    )
    failed, summary, _ = scripted_runs["post", postscript, FAILED_LOG]
    assert (failed.returncode, summary["reason"], summary["exitCode"]) == (1, "TrainerReportedFailure", "1")


def test_a_term_to_the_judge_from_the_postscript_ends_its_stage(tmp_path: Path) -> None:
    result, summary, _ = _run(tmp_path, COMPLETE_LOG, postscript="kill $$\nsleep 1\n")
    assert (result.returncode, summary["reason"], summary["exitCode"]) == (143, "PostscriptFailed", "143")
    assert summary["evidence"] == "the Postscript stage exited with status 143"


def test_a_retry_does_not_read_the_previous_attempts_verdict(tmp_path: Path) -> None:
    output = tmp_path / "out" / "run"
    output.mkdir(parents=True)
    (output / "output.log").write_text(COMPLETE_LOG)
    _result, summary, _ = _run(tmp_path, "crashed early\n")
    assert summary["reason"] == "TrainingIncomplete"
    assert len(list(output.glob("output.log.*.previous"))) == 1


@pytest.mark.parametrize("text", ["$(touch pwned)", "`touch pwned`", "'; touch pwned; '", '"; touch pwned; "'])
def test_hostile_output_dir_is_data(tmp_path: Path, text: str) -> None:
    result, _summary, output = _run(tmp_path, COMPLETE_LOG, run=text)
    assert result.returncode == 0, result.stderr
    assert output.name == text and (output / "output.log").read_text() == COMPLETE_LOG
    assert not (tmp_path / "pwned").exists()


def _rendered_env(name: str, uid: str, output_dir: Path, tmp_path: Path) -> dict[str, str]:
    """The environment the operator renders for a FineTuneJob writing to output_dir."""
    spec = {"envConfig": {"pathSettings": {"outputDir": str(output_dir)}}}
    ftj = load_finetunejob(finetunejob(spec, name=name) | {"metadata": {"name": name, "uid": uid}})
    job, _ = render(ftj)
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = container_environment(container, {})  # as the kubelet makes it
    scripts = tmp_path / f"scripts-{name}"
    scripts.mkdir()
    for key in ("FTO_PRESCRIPT", "FTO_POSTSCRIPT"):
        env[key] = str(scripts / Path(env[key]).name)
        Path(env[key]).write_text("")
    env["FTO_TERMINATION_LOG"] = str(tmp_path / f"termination-{name}")
    env["FTO_LOG_DRAIN_SECONDS"] = "0"
    return env


def test_two_runs_sharing_an_output_dir_each_judge_their_own_log(tmp_path: Path) -> None:
    """Found by a probe: with one log path, job B moved job A's log aside and A read B's success."""
    shared = tmp_path / "shared-output"
    trainers = {
        # A appends to its log by path, as a logger would, and never completes.
        "a": 'echo "[A] step 1" >> "$FTO_LOG_FILE"; sleep 2; echo "[A] CUDA out of memory" >> "$FTO_LOG_FILE"',
        "b": 'echo "[2026-10-01 08:01:40.000000] [INFO] training complete!" >> "$FTO_LOG_FILE"',
    }
    processes = {}
    for index, (name, body) in enumerate(trainers.items()):
        trainer = tmp_path / f"trainer-{name}"
        trainer.write_text(f"#!/bin/sh\n{body}\nexit 0\n")
        trainer.chmod(0o755)
        env = _rendered_env(name, f"{index}1234567-uid", shared, tmp_path)
        env |= {"PATH": os.environ["PATH"], "FTO_TRAINER": str(trainer)}
        processes[name] = subprocess.Popen(["/bin/sh", "-c", ENTRYPOINT], env=env, stdout=subprocess.DEVNULL)
    verdicts = {}
    for name, process in processes.items():
        process.wait(timeout=60)
        summary = dict(line.partition(": ")[::2] for line in (tmp_path / f"termination-{name}").read_text().split("\n"))
        verdicts[name] = (process.returncode, summary["verdict"], summary["reason"])
    assert verdicts == {"a": (3, "failed", "TrainingIncomplete"), "b": (0, "succeeded", "TrainingComplete")}
    assert sorted(p.name for p in shared.iterdir()) == ["output.a-01234567.log", "output.b-11234567.log"]


def test_a_rank_writes_its_wiring_where_env_config_says(tmp_path: Path) -> None:
    wiring = {
        "MASTER_ADDR": "run-0.run.ml.svc",
        "MASTER_PORT": "8299",
        "NODE_RANK": "1",
        "NNODES": "2",
        "NPROC_PER_NODE": "4",
        "WORLD_SIZE": "8",
    }
    target = tmp_path / "node-local" / "multi_node.env.rank-1"
    result, _, _ = _run(tmp_path, COMPLETE_LOG, extra_env={**wiring, "FTO_MULTI_NODE_ENV_FILE": str(target)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert target.read_text() == "".join(f"{name}={value}\n" for name, value in wiring.items())


def test_a_rank_writes_its_own_env_config_from_the_one_all_ranks_share(tmp_path: Path) -> None:
    """The ConfigMap holds one env_config for every rank; each rank's entrypoint writes its own, its
    number where the placeholder was, before the trainer reads it (issue 20 #2)."""
    ftj = load_finetunejob(
        finetunejob(
            {
                "numNodes": 4,
                "expConfig": {"processSettings": {"numGpus": 1}},
                "envConfig": {"pathSettings": {"multiNodeEnvPath": "/mnt/data/wiring.env"}},
            },
            name="run",
            namespace="ml",
        )
    )
    template = tmp_path / "env_config.yaml"
    template.write_text(configs.env_config(ftj, RANK_PLACEHOLDER))
    own = tmp_path / "rank" / "env_config.yaml"
    own.parent.mkdir()
    env = {"FTO_ENV_CONFIG_TEMPLATE": str(template), "FTO_ENV_CONFIG": str(own), "NODE_RANK": "3"}
    result, _, _ = _run(tmp_path, COMPLETE_LOG, extra_env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert own.read_text() == configs.env_config(ftj, 3)
    assert f"--env_config {own} " in result.stdout


@pytest.mark.parametrize("rank", ["", "x", "1;rm", "-1"])
def test_a_rank_that_is_no_number_fails_the_setup(tmp_path: Path, rank: str) -> None:
    template = tmp_path / "env_config.yaml"
    template.write_text(f"log_name: out.{RANK_PLACEHOLDER}.log\n")
    env = {"FTO_ENV_CONFIG_TEMPLATE": str(template), "FTO_ENV_CONFIG": str(tmp_path / "own.yaml"), "NODE_RANK": rank}
    result, summary, _ = _run(tmp_path, COMPLETE_LOG, extra_env=env)
    assert result.returncode != 0
    assert (summary["verdict"], summary["reason"]) == ("failed", "SetupFailed")
    assert summary["evidence"] == f"NODE_RANK '{rank}' is not a rank"


# -- the push step's decisions that need no tool (the pushes themselves: tests/unit/render/test_push.py) -------------


def _push_env(tmp_path: Path, push_format: str = PUSH_FORMAT_IMAGE) -> dict[str, str]:
    """A push configured with an empty tools directory: a push attempted here can only fail."""
    tools = tmp_path / "push-tools"
    tools.mkdir(parents=True, exist_ok=True)
    return {
        ENV_PUSH_FORMAT: push_format,
        ENV_PUSH_REFERENCE: "127.0.0.1:5000/models/run:t1",
        ENV_PUSH_INSECURE: "true",
        ENV_PUSH_TOOLS: str(tools),
        ENV_PUSH_WORK_DIR: str(tmp_path / "push-work"),
    }


@pytest.mark.parametrize(("push_format", "missing"), [(PUSH_FORMAT_IMAGE, "crane"), (PUSH_FORMAT_MODELPACK, "kit")])
def test_a_push_without_its_tool_fails_the_run_but_says_training_completed(
    tmp_path: Path, push_format: str, missing: str
) -> None:
    result, summary, output = _run(tmp_path, COMPLETE_LOG, extra_env=_push_env(tmp_path, push_format))
    assert result.returncode == EXIT_PUSH_FAILED
    assert summary == {
        "verdict": "failed",
        "reason": REASON_PUSH_FAILED,
        "exitCode": str(EXIT_PUSH_FAILED),
        "step": "2",
        "loss": "9.25",
        "evidence": f"training complete; push failed: {missing} not found at {tmp_path}/push-tools/{missing}",
    }
    assert f"the trained output stays at {output}" in result.stdout
    assert (output / "output.log").read_text() == COMPLETE_LOG


def test_an_unknown_push_format_is_a_push_failure(tmp_path: Path) -> None:
    _result, summary, _ = _run(tmp_path, COMPLETE_LOG, extra_env=_push_env(tmp_path, "Tarball $(touch pwned)"))
    assert summary["reason"] == REASON_PUSH_FAILED
    assert summary["evidence"] == "training complete; push failed: unknown push format 'Tarball $(touch pwned)'"
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("log", "trainer_exit", "postscript", "env", "reason"),
    [
        (FAILED_LOG, 0, "", {}, "TrainerReportedFailure"),
        (COMPLETE_LOG, 7, "", {}, "TrainerExitCode"),
        ("no verdict\n", 0, "", {}, "TrainingIncomplete"),
        (COMPLETE_LOG, 0, "exit 9\n", {}, "PostscriptFailed"),
        (COMPLETE_LOG, 0, "", {"NODE_RANK": "1"}, "TrainingComplete"),
        (COMPLETE_LOG, 0, "", {ENV_PUSH_FORMAT: ""}, "TrainingComplete"),
    ],
)
def test_no_push_unless_rank_zero_succeeded(
    tmp_path: Path, log: str, trainer_exit: int, postscript: str, env: dict[str, str], reason: str
) -> None:
    """Any attempt would fail (no tools): the verdict shows that none was made."""
    result, summary, _ = _run(tmp_path, log, trainer_exit, postscript=postscript, extra_env=_push_env(tmp_path) | env)
    assert summary["reason"] == reason, result.stdout + result.stderr
    assert "pushing" not in result.stdout
    assert "outputDigest" not in summary


def _fake_crane(tmp_path: Path) -> dict[str, str]:
    """A push whose crane only says that it ran (and fails): whether the push got as far as its tool."""
    env = _push_env(tmp_path)
    crane = Path(env[ENV_PUSH_TOOLS]) / "crane"
    crane.write_text(f'#!/bin/sh\ntouch "{tmp_path}/crane-ran"\necho "Error: no registry here" >&2\nexit 1\n')
    crane.chmod(0o755)
    return env


def test_an_output_larger_than_the_scratch_bound_is_not_copied(tmp_path: Path) -> None:
    """A copy beyond the emptyDir's sizeLimit would get the pod evicted, and the Job would train again."""
    env = _fake_crane(tmp_path) | {ENV_PUSH_WORK_LIMIT_KIB: "1"}
    result, summary, output = _run(tmp_path, COMPLETE_LOG, extra_env=env)
    used = subprocess.run(["du", "-sk", str(output)], capture_output=True, text=True, check=True).stdout.split()[0]
    assert (result.returncode, summary["reason"], summary["evidence"]) == (
        EXIT_PUSH_FAILED,
        REASON_PUSH_FAILED,
        f"training complete; push failed: the output ({used} KiB in {output}) does not fit the push's scratch "
        "space (1 KiB: raise spec.output.image.workSizeLimit)",
    )
    assert not (tmp_path / "crane-ran").exists()
    assert not (tmp_path / "push-work").exists() or list((tmp_path / "push-work").iterdir()) == []


@pytest.mark.parametrize("limit", ["", str(10**9), "not-a-number"])
def test_an_output_within_the_scratch_bound_goes_on_to_the_push(tmp_path: Path, limit: str) -> None:
    env = _fake_crane(tmp_path) | {ENV_PUSH_WORK_LIMIT_KIB: limit}
    _result, summary, _ = _run(tmp_path, COMPLETE_LOG, extra_env=env)
    assert summary["evidence"] == "training complete; push failed: crane: Error: no registry here"
    assert (tmp_path / "crane-ran").exists()


@pytest.mark.parametrize("rank", ["", "0"])
def test_rank_zero_is_unset_empty_or_zero(tmp_path: Path, rank: str) -> None:
    _result, summary, _ = _run(tmp_path, COMPLETE_LOG, extra_env=_push_env(tmp_path) | {"NODE_RANK": rank})
    assert summary["reason"] == REASON_PUSH_FAILED  # attempted (and failed: no crane here)
