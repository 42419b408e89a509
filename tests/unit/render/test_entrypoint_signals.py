"""The entrypoint passes SIGTERM (a pod's deletion, an eviction) on to the trainer.

Found on the real node (REALNODE-FINDINGS.md, finding 1): the container's PID 1 is `/bin/sh -c
<entrypoint>`, and the kernel delivers no signal to a namespace's PID 1 that has no handler for it,
so the kubelet's SIGTERM did nothing; the trainer ran on until SIGKILL at the end of the grace period,
never told to stop, and no termination message was written. Out of a container (sh not PID 1),
SIGTERM killed the shell alone and left the trainer running. Here sh is not PID 1 (no root needed):
the signal must reach the trainer either way, and the entrypoint must report the trainer's end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from finetune_operator.render.entrypoint import ENTRYPOINT

# A trainer that writes its pid, logs a start, and on SIGTERM logs it and exits 143 (as Python's
# default for a handled SIGTERM in the stand-in trainer does).
TRAINER = """#!/bin/sh
echo $$ > "$STARTED"
trap 'echo "[WARNING] received SIGTERM" >> "$FTO_LOG_FILE"; exit 143' TERM
echo "[INFO] The current training schedule consists of 1 epochs with 4 iterations each." >> "$FTO_LOG_FILE"
while :; do sleep 0.1; done
"""


def _wait_for(path: Path, process: subprocess.Popen[bytes], bound: int = 600) -> None:
    """Poll (bounded by count, 0.05 s apart) until ``path`` exists; fail if the entrypoint ended first."""
    for _ in range(bound):
        if path.exists() and path.read_text().strip():
            return
        assert process.poll() is None, f"the entrypoint ended first (exit {process.returncode})"
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _signalled(tmp_path: Path, prescript: str = "") -> tuple[int, str, dict[str, str], int]:
    """Run the entrypoint, SIGTERM it once the pid file `started` has a pid; return its exit status, its
    stdout, its termination summary and the pid that was written."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    trainer = bin_dir / "phisonai2"
    trainer.write_text(TRAINER)
    trainer.chmod(0o755)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "prescript.sh").write_text(prescript)
    (scripts / "postscript.sh").write_text("")
    output = tmp_path / "out"
    started = tmp_path / "trainer.pid"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STARTED": str(started),
        "FTO_OUTPUT_DIR": str(output),
        "FTO_LOG_FILE": str(output / "output.log"),
        "FTO_ENV_CONFIG": "/config/env/env_config.yaml",
        "FTO_EXP_CONFIG": "/config/exp/exp_config.yaml",
        "FTO_PRESCRIPT": str(scripts / "prescript.sh"),
        "FTO_POSTSCRIPT": str(scripts / "postscript.sh"),
        "FTO_TERMINATION_LOG": str(tmp_path / "termination-log"),
        "FTO_LOG_DRAIN_SECONDS": "0",
    }
    stdout = tmp_path / "stdout"
    with stdout.open("wb") as out_file:
        # Its own process group: whatever the entrypoint leaves running (the trainer, tail) is killed below.
        process = subprocess.Popen(
            ["/bin/sh", "-c", ENTRYPOINT], env=env, stdout=out_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for(started, process)
        trainer_pid = int(started.read_text())
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    summary = dict(line.split(": ", 1) for line in (tmp_path / "termination-log").read_text().splitlines())
    return process.returncode, stdout.read_text(), summary, trainer_pid


def test_sigterm_reaches_the_trainer_and_its_end_is_reported(tmp_path: Path) -> None:
    code, out, summary, trainer_pid = _signalled(tmp_path)
    assert "[WARNING] received SIGTERM" in (tmp_path / "out" / "output.log").read_text(), out
    assert code == 143, out
    assert (summary["verdict"], summary["reason"], summary["exitCode"]) == ("failed", "TrainerExitCode", "143")
    assert summary["evidence"] == "phisonai2 exited with status 143"
    assert not Path(f"/proc/{trainer_pid}").exists() or "zombie" in Path(f"/proc/{trainer_pid}/status").read_text()


def test_sigterm_in_the_prescript_ends_the_container_after_its_current_command(tmp_path: Path) -> None:
    # The prescript writes the pid file itself, then sleeps: the signal is handled when the sleep ends.
    prescript = 'echo $$ > "$STARTED"\nsleep 1\necho after-the-sleep\n'
    code, out, summary, _ = _signalled(tmp_path, prescript)
    assert code == 143, out
    assert "after-the-sleep" not in out
    assert (summary["verdict"], summary["reason"], summary["exitCode"]) == ("failed", "PrescriptFailed", "143")
