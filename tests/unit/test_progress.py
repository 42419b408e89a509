"""The trainer log parser: whole logs, random chunks, growing tails, cut lines and noise."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from finetune_operator.observe.progress import Progress, format_duration, parse_log, trainer_status

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "aidaptiv-logs"
TWO_EPOCHS = (FIXTURES / "two-epochs-capped.log").read_text()
CRASHED = (FIXTURES / "crashed.log").read_text()
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/fixtures/aidaptiv-logs is not here")


def _metrics(progress: Progress) -> dict[str, str]:
    return trainer_status(progress, "2026-11-28T12:00:00Z").metric_values()


def test_whole_log_of_two_capped_epochs() -> None:
    progress = parse_log(TWO_EPOCHS)
    # 2 epochs × 4 iterations = 8, capped by --max_iter 6 from the launcher's command line.
    assert (progress.total_steps, progress.steps, progress.percentage) == (6, 6, 100)
    assert progress.verdict == "complete"
    assert progress.remaining_seconds == 0
    assert _metrics(progress) == {
        "epoch": "2",
        "totalEpochs": "2",
        "iteration": "2",
        "iterationsPerEpoch": "4",
        "step": "6",
        "totalSteps": "6",
        "loss": "6.125",
        "tokensPerSecond": "61.25",
    }


def _until(text: str, marker: str) -> str:
    """The log up to and including the line holding marker."""
    end = text.index(marker)
    return text[: text.index("\n", end) + 1]


def test_eta_from_the_logs_own_timestamps() -> None:
    # One step done: 30 s from the first [PHISON START] (08:00:01) to its end (08:00:31); 5 left.
    one = parse_log(_until(TWO_EPOCHS, "08:00:31.000000] [PHISON END]"))
    assert (one.steps, one.percentage, one.remaining_seconds) == (1, 16, 150)
    # Three done: steps 1..3 ended 08:00:31 and 08:00:51, 10 s a step; 3 left.
    three = parse_log(_until(TWO_EPOCHS, "08:00:51.000000] [PHISON END]"))
    assert (three.steps, three.percentage, three.remaining_seconds) == (3, 50, 30)
    status = trainer_status(three, "2026-11-28T12:00:00Z")
    assert status.estimated_remaining_time == "30s"
    assert status.progress_percentage == 50


def test_max_iter_given_by_the_spec_when_the_log_has_no_command_line() -> None:
    text = TWO_EPOCHS.split("\n", 1)[1]
    assert parse_log(text).total_steps == 8
    assert parse_log(text, max_iter=5).total_steps == 5
    assert parse_log(text, max_iter=-1).total_steps == 8


def test_last_step_is_99_percent_until_the_trainer_says_complete() -> None:
    progress = parse_log(_until(TWO_EPOCHS, "[Save Model_Checkpoint][Start]"))
    assert (progress.steps, progress.percentage, progress.verdict) == (6, 99, "running")


def test_crash_is_failed_with_the_exception_as_evidence() -> None:
    progress = parse_log(CRASHED)
    assert progress.verdict == "failed"
    assert progress.evidence == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert (progress.steps, progress.total_steps, progress.percentage) == (1, 10, 10)
    assert progress.remaining_seconds is None
    assert progress.loss is not None and progress.loss.value == "4.5"


@pytest.mark.parametrize("seed", range(20))
def test_random_chunks_give_the_same_answer(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(TWO_EPOCHS)), 12))
    progress, start = None, 0
    # A reader holds an unfinished line back and sends it again with the next chunk.
    for cut in [*cuts, len(TWO_EPOCHS)]:
        chunk = TWO_EPOCHS[start:cut]
        progress = parse_log(chunk, progress)
        start = start + chunk.rfind("\n") + 1 if "\n" in chunk else start
    assert progress == parse_log(TWO_EPOCHS)


@pytest.mark.parametrize("window", [3, 5, 8, 40])
def test_overlapping_tails_give_the_same_answer(window: int) -> None:
    """The operator reads the last lines each time; early lines scroll away, late ones repeat."""
    lines = TWO_EPOCHS.splitlines(keepends=True)
    progress = None
    for end in range(1, len(lines) + 1):
        progress = parse_log("".join(lines[max(0, end - window) : end]), progress)
    whole = parse_log(TWO_EPOCHS)
    assert progress is not None
    assert (progress.steps, progress.loss, progress.verdict, progress.total_steps) == (
        whole.steps,
        whole.loss,
        whole.verdict,
        whole.total_steps,
    )
    assert progress.remaining_seconds == 0


def test_reading_the_same_text_twice_changes_nothing() -> None:
    once = parse_log(TWO_EPOCHS)
    assert parse_log(TWO_EPOCHS, once) == once
    half = _until(TWO_EPOCHS, "08:00:51.000000] [PHISON END]")
    assert parse_log(half, once) == once  # an older tail after a newer one


def test_a_line_cut_in_half_waits_for_its_end() -> None:
    head = _until(TWO_EPOCHS, "[Loss]:9.25")
    cut = head + "[2026-10-01 08:00:41.000000] [PHISON END] Itera"
    assert parse_log(cut) == parse_log(head)
    loss_cut = _until(TWO_EPOCHS, "08:00:41.000000] [PHISON END]") + "[2026-10-01 08:00:50.000000] [Loss]:8"
    assert parse_log(loss_cut).loss.value == "9.25"  # not "8", the start of "8.0…"


def test_noise_and_unknown_lines_are_ignored() -> None:
    noisy = "\n".join(f"{line}\n\x1b[33mwarn\x1b[0m\n\n100%|####| 3/3\r" for line in TWO_EPOCHS.splitlines()) + "\n"
    assert parse_log(noisy) == parse_log(TWO_EPOCHS)
    assert parse_log("[2026-13-45 99:99:99] [Loss]:1\n") == Progress()
    assert parse_log("garbage \x00\xff\n" * 3) == Progress()


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 59, 60, 84, 3599, 3600, 3723)] == [
        "0s",
        "59s",
        "1m0s",
        "1m24s",
        "59m59s",
        "1h0m",
        "1h2m",
    ]


@needs_shared
def test_real_one_epoch_log() -> None:
    text = (SHARED / "success-1epoch.log").read_text()
    progress = parse_log(text)
    assert (progress.steps, progress.total_steps, progress.percentage) == (8, 8, 100)
    assert progress.loss is not None and progress.loss.value == "6.236324310302734"
    assert progress.tokens_per_second is not None and progress.tokens_per_second.value == "118.65151091798009"
    assert progress.max_iter == -1 and progress.updates_per_epoch == 2
    # Half way: step 4 ended 10:55:13.539540, step 1 at 10:54:10.691716: 62.847824 s / 3 steps,
    # 20.949 s a step, 4 steps left: 84 s.
    half = parse_log(_until(text, "[PHISON END] Iteration: 3"))
    assert (half.steps, half.percentage, half.remaining_seconds) == (4, 50, 84)
    assert half.loss is not None and half.loss.value == "9.421862602233887"


@needs_shared
def test_real_failed_log() -> None:
    progress = parse_log((SHARED / "failed-dataset-config.log").read_text())
    assert progress.verdict == "failed"
    assert progress.evidence is not None and progress.evidence.endswith("exits with return code = 1")
    assert progress.steps == 0


@needs_shared
def test_real_stdout_log_has_no_progress_and_is_harmless() -> None:
    progress = parse_log((SHARED / "success-1epoch.stdout.log").read_text())
    assert progress == Progress()


def test_parse_log_command(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(TWO_EPOCHS)
    result = subprocess.run(
        [sys.executable, "-m", "finetune_operator.cli", "parse-log", str(log)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["progressPercentage"] == 100
    assert {"name": "loss", "value": "6.125"} in status["metrics"]
    assert status["verdict"] == "complete"
    piped = subprocess.run(
        [sys.executable, "-m", "finetune_operator.cli", "parse-log", "-"], input=CRASHED, capture_output=True, text=True
    )
    assert json.loads(piped.stdout)["verdict"] == "failed"
    missing = subprocess.run(
        [sys.executable, "-m", "finetune_operator.cli", "parse-log", str(tmp_path / "nope.log")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")
