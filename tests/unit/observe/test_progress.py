"""The trainer log parser: whole logs, random chunks, growing tails, cut lines and noise."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from finetune_operator.api.status import Checkpoints, Condition, TrainerStatus
from finetune_operator.observe.progress import (
    Mark,
    Progress,
    format_duration,
    parse_log,
    seeded,
    strip_ansi,
    trainer_status,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "logs"
SHARED = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "aidaptiv-logs"
TWO_EPOCHS = (FIXTURES / "two-epochs-capped.log").read_text()
CRASHED = (FIXTURES / "crashed.log").read_text()
# Colour codes throughout, and no newline after its last line (stripped again, should a tool add one).
COLOURED = (FIXTURES / "coloured-unterminated.log").read_text().rstrip("\n")
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


SAVES = (
    "[2026-10-01 08:01:30.000000] [Save Model_Checkpoint][Start]\n"
    "[2026-10-01 08:01:40.500000] [Save Model_Checkpoint][time spent]:10.5\n"
    "[2026-10-01 08:02:30.000000] [PHISON END] Iteration: 1\n"
    "[2026-10-01 08:03:30.250000] [Save Model_Checkpoint][Start]\n"
)


def test_checkpoint_saves_are_counted_with_the_last_ones_time_and_duration() -> None:
    assert trainer_status(parse_log(TWO_EPOCHS), None).checkpoints == Checkpoints(
        count=1, last_time="2026-10-01T08:01:30.000000Z", last_duration_seconds=None
    )
    first = parse_log(_until(SAVES, "[time spent]"))
    assert trainer_status(first, None).checkpoints == Checkpoints(
        count=1, last_time="2026-10-01T08:01:30.000000Z", last_duration_seconds="10.5"
    )
    # The second save has begun: its time, and no duration until it has one (not the first one's).
    both = parse_log(SAVES)
    assert trainer_status(both, None).checkpoints == Checkpoints(
        count=2, last_time="2026-10-01T08:03:30.250000Z", last_duration_seconds=None
    )
    # Read again (a tail overlaps the one before): not counted again.
    assert parse_log(SAVES, both) == both
    assert trainer_status(parse_log(""), None).checkpoints is None
    # A time spent that is no number, and an untimed start (an echo), are ignored.
    odd = "[2026-10-01 08:01:40.500000] [Save Model_Checkpoint][time spent]:soon\n[Save Model_Checkpoint][Start]\n"
    assert parse_log(odd) == Progress()


def test_a_restart_counts_on_from_the_saves_in_status() -> None:
    recorded = trainer_status(parse_log(_until(SAVES, "[time spent]")), None).checkpoints
    picked_up = seeded(recorded, 6)
    assert picked_up == Progress(max_iter=6, checkpoints=1, newest_save=datetime(2026, 10, 1, 8, 1, 30))
    # The tail read after the restart holds the first save again and the second one.
    assert parse_log(SAVES, picked_up).checkpoints == 2
    assert seeded(None, 6) is None
    assert seeded(Checkpoints(count=4), 6) is None
    assert seeded(Checkpoints(count=4, last_time="not a time"), 6) is None


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


def _valid(progress: Progress) -> TrainerStatus:
    status = trainer_status(progress, "2026-11-28T12:00:00Z")
    return TrainerStatus.model_validate(status.model_dump(by_alias=True, mode="json"))


RUNNING = _until(TWO_EPOCHS, "08:00:51.000000] [PHISON END]")  # 3 of 6 steps, loss 8.0, 50.5 tokens/s
AT = "[2026-10-01 08:00:52.000000] "


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(AT + "[Loss]:" + "1" * 65, id="loss-longer-than-a-metric"),
        pytest.param(AT + "[Loss]:" + "9" * 5000, id="loss-past-int-digit-limit"),
        pytest.param(AT + "[Loss]:1e999", id="loss-overflows-to-inf"),
        pytest.param(AT + "[Loss]:tensor(1.5)", id="loss-not-a-number"),
        pytest.param(AT + "[INFO] Training efficiency: -5.0 (tokens/s)", id="negative-throughput"),
        pytest.param(AT + "[INFO] Training efficiency: nan (tokens/s)", id="nan-throughput"),
        pytest.param(AT + "[PHISON END] Iteration: " + "9" * 400, id="400-digit-iteration"),
        pytest.param(AT + "[PHISON START] Epoch: " + "9" * 5000 + ", Iteration: 0", id="5000-digit-epoch"),
        pytest.param(AT + "[INFO] Beginning of Epoch 1/" + "9" * 4301 + ", Total", id="4301-digit-total-epochs"),
        pytest.param(
            "[INFO] The current training schedule consists of 2 epochs with 9223372036854775808 iterations each.",
            id="iterations-past-int64",
        ),
        pytest.param(
            "[INFO] The accumulated time is set to 2 so the training will be updated " + "9" * 5000 + " times",
            id="5000-digit-updates",
        ),
        pytest.param("cmd=train.py --max_iter -" + "9" * 5000, id="5000-digit-max-iter"),
    ],
)
def test_an_absurd_value_is_ignored(line: str) -> None:
    progress = parse_log(RUNNING + line + "\n")
    assert progress == parse_log(RUNNING)
    assert _valid(progress).metric_values()["loss"] == "8.0"


def test_a_diverged_loss_is_kept() -> None:
    # nan is the trainer's own word that training diverged: hiding it behind the last finite loss would mislead.
    progress = parse_log(RUNNING + AT + "[Loss]:nan\n")
    assert progress.loss == Mark("nan", datetime(2026, 10, 1, 8, 0, 52))
    assert _valid(progress).metric_values()["loss"] == "nan"


def test_counts_up_to_int64_are_kept() -> None:
    schedule = "[INFO] The current training schedule consists of 1 epochs with 9223372036854775807 iterations each.\n"
    progress = parse_log(schedule)
    assert (progress.total_epochs, progress.iterations_per_epoch, progress.total_steps) == (1, 2**63 - 1, 2**63 - 1)
    # Two such epochs make more steps than an int64 holds: no total rather than a number nobody can store.
    assert parse_log(schedule.replace("1 epochs", "2 epochs")).total_steps is None


def test_a_huge_return_code_is_still_a_failure() -> None:
    progress = parse_log(RUNNING + "Process 9 exits with return code = " + "1" * 5000 + "\n")
    assert progress.verdict == "failed"
    assert progress.evidence == "Process 9 exits with return code = " + "1" * 988 + "…"
    assert parse_log(RUNNING + "Process 9 exits with return code = " + "0" * 5000 + "\n").verdict == "running"


def test_the_eta_is_capped_to_fit_its_column() -> None:
    text = (
        "[INFO] The current training schedule consists of 1 epochs with 9223372036854775807 iterations each.\n"
        "[2026-10-01 08:00:00.000000] [PHISON START] Epoch: 0, Iteration: 0\n"
        "[2026-10-01 09:00:00.000000] [PHISON END] Iteration: 0\n"
    )
    progress = parse_log(text)
    # An hour a step for 2**63 - 2 more steps: about 3.3e22 s, more than the API server's int64 takes.
    assert (progress.steps, progress.percentage, progress.remaining_seconds) == (1, 0, 999_999_999)
    status = _valid(progress)
    assert (status.estimated_remaining_seconds, status.estimated_remaining_time) == (999_999_999, "277777h46m")


def test_long_evidence_is_cut_to_fit_a_condition() -> None:
    progress = parse_log(RUNNING + "RuntimeError: " + "x" * 100_000 + "\n")
    assert progress.verdict == "failed"
    assert progress.evidence == "RuntimeError: " + "x" * 1009 + "…"
    assert progress.evidence is not None and len(progress.evidence) == 1024
    Condition(type="Failed", status="True", last_transition_time="t", reason="Trainer", message=progress.evidence)


def test_final_folds_the_last_line_without_its_newline() -> None:
    end = TWO_EPOCHS.index("training complete!") + len("training complete!")
    text = TWO_EPOCHS[:end]
    live = parse_log(text)
    assert (live.verdict, live.percentage) == ("running", 99)  # a tail may have cut the line: it waits
    final = parse_log(text, final=True)
    assert (final.verdict, final.percentage, final.remaining_seconds) == ("complete", 100, 0)
    assert final == parse_log(text + "\n") == parse_log(text + "\n", final=True)
    assert parse_log(text, final, final=True) == final
    held_back = text[text.rindex("\n") + 1 :]
    assert held_back == "[2026-10-01 08:01:40.000000] [INFO] training complete!"
    assert parse_log(held_back, live, final=True) == final  # sent once more when the container ended


def test_colour_codes_are_stripped_before_matching() -> None:
    line = "\x1b[32m[2026-09-07 10:54:02.745475] [Loss]:11.5\x1b[0m\n"
    assert parse_log(line).loss == Mark("11.5", datetime(2026, 9, 7, 10, 54, 2, 745475))
    final = parse_log(COLOURED, final=True)
    assert (final.steps, final.total_steps, final.verdict, final.percentage) == (2, 2, "complete", 100)
    assert _valid(final).metric_values() == {
        "epoch": "1",
        "totalEpochs": "1",
        "iteration": "2",
        "iterationsPerEpoch": "2",
        "step": "2",
        "totalSteps": "2",
        "loss": "2.5",
        "tokensPerSecond": "42.5",
    }
    assert final.evidence == "[INFO] training complete!"
    live = parse_log(COLOURED)
    assert (live.steps, live.verdict, live.percentage, live.remaining_seconds) == (2, "running", 99, 0)
    failed = parse_log("\x1b[1;31mtorch.OutOfMemoryError: CUDA out of memory\x1b[0m\n")
    assert (failed.verdict, failed.evidence) == ("failed", "torch.OutOfMemoryError: CUDA out of memory")


def test_strip_ansi() -> None:
    assert strip_ansi("\x1b[1;32mgreen\x1b[0m \x1b[K\x1b[2J") == "green "  # CSI: colours, erase
    assert strip_ansi("\x1b]0;title\x07a\x1b]8;;http://x\x1b\\b\x1b]8;;\x1b\\") == "ab"  # OSC ended by BEL or ST
    assert strip_ansi("\x1b(B\x1b[mplain") == "plain"  # tput sgr0
    # Not an escape sequence, or an unterminated one: left as it is (so it never swallows a line).
    assert strip_ansi("a\x1b\x1b]0;no end\r[Loss]:1") == "a\x1b\x1b]0;no end\r[Loss]:1"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("x" * 10_000_000, id="10MB-unterminated"),
        pytest.param("[2026-10-01 08:00:00.000000] [Loss]:" + "1" * 10_000_000 + "\n", id="10MB-loss"),
        pytest.param("\r" * 10_000_000 + "[INFO] training complete!\r\n", id="carriage-returns"),
        pytest.param("a\r" * 5_000_000 + "\n", id="rewrites"),
        pytest.param("\x1b[" * 3_000_000 + "\x1b]" * 2_000_000 + "\n", id="escape-starts"),
        pytest.param("[Loss]:" * 1_500_000 + "\n", id="loss-markers"),
        pytest.param("Training efficiency: " + "9" * 10_000_000 + "\n", id="long-throughput"),
        pytest.param("Process 1 exits with return code = " + "9" * 10_000_000 + "\n", id="long-return-code"),
        pytest.param("[2026-10-01 08:00:00." + "1" * 10_000_000 + "] [PHISON END] Iteration: 0\n", id="long-fraction"),
        pytest.param("Error" * 2_000_000 + "\n", id="error-like"),
    ],
)
def test_an_enormous_line_takes_linear_time(text: str) -> None:
    # Each is a few tens of milliseconds; quadratic work on 10 MB would take hours, so the bound is loose.
    started = time.perf_counter()
    progress = parse_log(text, final=True)
    _valid(progress)
    assert time.perf_counter() - started < 5


def test_lines_out_of_order_fold_the_same_twice() -> None:
    """A user's echo can put lines in any order; a re-read must still change nothing."""
    text = (
        "[2026-10-01 08:00:02.000000] [PHISON END] Iteration: 0\n"
        "[2026-10-01 08:00:01.000000] [PHISON START] Epoch: 1, Iteration: 0\n"
        "[INFO] The current training schedule consists of 2 epochs with 4 iterations each.\n"
    )
    once = parse_log(text)
    assert parse_log(text, once) == once
    # The END closes the newest START (epoch 1), counted with the schedule however late it came.
    assert (once.steps, once.current_epoch, once.iteration, once.total_steps) == (5, 2, 1, 8)


def test_a_re_read_across_an_epoch_boundary_with_equal_timestamps() -> None:
    # The END of epoch 0's last iteration and the START of epoch 1 share a timestamp: read again,
    # that END must still close epoch 0 (2 steps), not epoch 1 (4).
    text = (
        "[INFO] The current training schedule consists of 2 epochs with 2 iterations each.\n"
        "[2026-10-01 08:00:00.000000] [PHISON START] Epoch: 0, Iteration: 0\n"
        "[2026-10-01 08:00:10.000000] [PHISON END] Iteration: 0\n"
        "[2026-10-01 08:00:10.000000] [PHISON START] Epoch: 0, Iteration: 1\n"
        "[2026-10-01 08:00:20.000000] [PHISON END] Iteration: 1\n"
        "[2026-10-01 08:00:20.000000] [PHISON START] Epoch: 1, Iteration: 0\n"
    )
    once = parse_log(text)
    assert (once.steps, once.percentage, once.remaining_seconds) == (2, 50, 20)
    assert (once.current_epoch, once.iteration) == (2, 0)
    assert parse_log(text, once) == once


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
    assert trainer_status(progress, None).checkpoints == Checkpoints(
        count=1, last_time="2026-09-07T10:56:22.582559Z", last_duration_seconds="42.15941071510315"
    )


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


def test_parse_log_command_prints_a_status_for_absurd_values(tmp_path: Path) -> None:
    log = tmp_path / "echoed.log"
    log.write_text(RUNNING + AT + "[Loss]:" + "9" * 5000 + "\n" + AT + "[PHISON END] Iteration: " + "9" * 400 + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "finetune_operator.cli", "parse-log", str(log)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert (status["progressPercentage"], status["estimatedRemainingTime"], status["verdict"]) == (50, "30s", "running")
    assert {"name": "loss", "value": "8.0"} in status["metrics"]


def test_parse_log_command_reads_a_file_to_its_last_line(tmp_path: Path) -> None:
    """Found by a probe: a log ending in `training complete!` without a newline read as running."""
    log = tmp_path / "train.log"
    log.write_text(TWO_EPOCHS.rstrip("\n").rsplit("\n", 1)[0])  # no "Process 99 …" line, no final newline
    assert log.read_text().endswith("training complete!")
    result = subprocess.run(
        [sys.executable, "-m", "finetune_operator.cli", "parse-log", str(log)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert (status["verdict"], status["progressPercentage"]) == ("complete", 100)
