"""Properties of the trainer log parser, for any text: it never raises, its status always validates,
and its merge is idempotent and does not care where the operator's reads cut the log.

The strategies mix the trainer's own line shapes (with numbers of any size, timestamps in any
order, colour codes and carriage returns) with arbitrary text, so that the lines the parser acts on
are common rather than one in a million.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune_operator.api.status import TrainerStatus
from finetune_operator.observe.progress import COMPLETE, Progress, parse_log, strip_ansi, trainer_status

# database=None: no .hypothesis/ example database in the working tree; every run explores afresh.
PROPERTY = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
UPDATED = "2026-11-28T12:00:00Z"

# Few distinct seconds, so that equal and out-of-order timestamps are common.
stamps = st.one_of(
    st.integers(0, 12).map(lambda s: f"[2026-10-01 08:00:{s:02d}.000000] "),
    st.sampled_from(["", "[2026-13-45 99:99:99] ", "[0001-01-01 00:00:00] ", "[9999-12-31 23:59:59.9999999] "]),
)
counts = st.one_of(
    st.integers(0, 9).map(str),
    st.integers(0, 2**65).map(str),
    st.integers(1, 5000).map(lambda n: "9" * n),  # past int()'s 4300-digit limit
    st.sampled_from(["9223372036854775807", "9223372036854775808", "0" * 40 + "7", "-1", "-0", "٣"]),
)
reals = st.one_of(
    st.floats().map(repr),
    counts,
    st.sampled_from(["nan", "-inf", "1e999", "1_0", "0x1p3", "1" * 65, "1." + "5" * 70, ""]),
    st.text(max_size=20),
)
bodies = st.one_of(
    st.builds("[PHISON START] Epoch: {}, Iteration: {}".format, counts, counts),
    st.builds("[PHISON END] Iteration: {}".format, counts),
    st.builds("[Loss]:{}".format, reals),
    st.builds("[INFO] Training efficiency: {} (tokens/s)".format, reals),
    st.builds(
        "[INFO] The current training schedule consists of {} epochs with {} iterations each.".format, counts, counts
    ),
    st.builds(
        "[INFO] The accumulated time is set to {} so the training will be updated {} times".format, counts, counts
    ),
    st.builds("[INFO] Beginning of Epoch {}/{}, Total Micro Batches 8".format, counts, counts),
    st.builds("cmd=/usr/bin/python3 train.py --max_iter {}".format, counts),
    st.builds("Process 707 exits with return code = {}".format, counts),
    st.builds("torch.OutOfMemoryError: {}".format, st.text(max_size=30)),
    st.builds("[Save Model_Checkpoint][time spent]:{}".format, reals),
    st.sampled_from(["[INFO] training complete!", "Process 707 exits successfully.", "[Save Model_Checkpoint][Start]"]),
    st.text(max_size=40),
)
colours = st.sampled_from(["", "\x1b[32m", "\x1b[1;31m", "\x1b]0;title\x07", "\x1b]8;;http://x\x1b\\", "\x1b(B\x1b[m"])
lines = st.builds(
    lambda before, stamp, body, after, overwritten: overwritten + before + stamp + body + after,
    colours,
    stamps,
    bodies,
    st.sampled_from(["", "\x1b[0m", "\r", "\r\r", "\x1b[K"]),
    st.sampled_from(["", "", "", "100%|####| 3/3\r", "\x1b[2K\r"]),
)
line_lists = st.lists(lines, max_size=25)
texts = st.one_of(
    st.builds(lambda ls, end: "\n".join(ls) + end, line_lists, st.sampled_from(["", "\n", "\r\n"])),
    st.text(max_size=300),
)
max_iters = st.one_of(st.none(), st.integers(-(2**70), 2**70))


def _valid(progress: Progress) -> TrainerStatus:
    status = trainer_status(progress, UPDATED)
    # Validated again from the wire form, as the API server and the next reconcile read it.
    return TrainerStatus.model_validate(status.model_dump(by_alias=True, mode="json"))


@PROPERTY
@given(text=texts, before=texts, max_iter=max_iters, final=st.booleans())
def test_any_text_gives_a_valid_status(text: str, before: str, max_iter: int | None, final: bool) -> None:
    previous = parse_log(before, max_iter=max_iter, final=final)
    progress = parse_log(text, previous, max_iter=max_iter, final=final)
    status = _valid(progress)
    percentage = status.progress_percentage
    assert percentage is None or 0 <= percentage <= 100
    assert (percentage == 100) == (progress.verdict == "complete")


@PROPERTY
@given(text=texts, max_iter=max_iters, final=st.booleans())
def test_100_percent_only_with_the_trainers_word(text: str, max_iter: int | None, final: bool) -> None:
    percentage = _valid(parse_log(text, max_iter=max_iter, final=final)).progress_percentage
    if percentage == 100:
        assert COMPLETE in strip_ansi(text)


@PROPERTY
@given(text=texts, before=texts, max_iter=max_iters, final=st.booleans())
def test_folding_a_text_twice_equals_folding_it_once(text: str, before: str, max_iter: int | None, final: bool) -> None:
    once = parse_log(text, parse_log(before, max_iter=max_iter), max_iter=max_iter, final=final)
    assert parse_log(text, once, max_iter=max_iter, final=final) == once


@PROPERTY
@given(lines=line_lists, data=st.data(), final=st.booleans())
def test_two_tails_split_at_a_line_boundary_equal_the_whole(lines: list[str], data: st.DataObject, final: bool) -> None:
    whole = [line + "\n" for line in lines]
    cut = data.draw(st.integers(0, len(whole)))
    head, tail = "".join(whole[:cut]), "".join(whole[cut:])
    if final and whole and data.draw(st.booleans()):
        tail = tail[:-1]  # the last line of a finished log may lack its newline
    assert parse_log(tail, parse_log(head), final=final) == parse_log("".join(whole), final=final)


@PROPERTY
@given(lines=line_lists, data=st.data())
def test_overlapping_tails_equal_the_whole(lines: list[str], data: st.DataObject) -> None:
    """The operator's reads overlap: the second tail starts before the first one ended."""
    whole = [line + "\n" for line in lines]
    end = data.draw(st.integers(0, len(whole)))
    start = data.draw(st.integers(0, end))
    first = parse_log("".join(whole[:end]))
    assert parse_log("".join(whole[start:]), first) == parse_log("".join(whole))


def _stamp(at: datetime) -> str:
    return f"[{at:%Y-%m-%d %H:%M:%S.%f}]"


@st.composite
def training_logs(draw: st.DrawFn) -> tuple[list[str], int, int, bool]:
    """A well-formed log: its lines, the steps done, the total steps, and whether it says complete."""
    epochs, per_epoch = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    total = epochs * per_epoch
    done = draw(st.integers(0, total))
    complete = done == total and draw(st.booleans())
    at = datetime(2026, 10, 1, 8) + timedelta(microseconds=draw(st.integers(0, 10**6)))
    seconds = st.integers(1, 90_000_000).map(lambda us: timedelta(microseconds=us))
    out = [f"[INFO] The current training schedule consists of {epochs} epochs with {per_epoch} iterations each."]
    for step in range(done):
        epoch, iteration = divmod(step, per_epoch)
        if iteration == 0:
            out.append(f"{_stamp(at)} [INFO] Beginning of Epoch {epoch + 1}/{epochs}, Total Micro Batches {per_epoch}")
        out.append(f"{_stamp(at)} [PHISON START] Epoch: {epoch}, Iteration: {iteration}")
        at += draw(seconds)
        out.append(f"{_stamp(at)} [Loss]:{draw(st.floats(0, 20))!r}")
        at += draw(seconds)
        out.append(f"{_stamp(at)} [PHISON END] Iteration: {iteration}")
        if draw(st.booleans()):
            out.append(f"{_stamp(at)} [INFO] Training efficiency: {draw(st.floats(0, 500))!r} (tokens/s)")
    if complete:
        at += draw(seconds)
        out += [
            f"{_stamp(at)} [Save Model_Checkpoint][Start]",
            f"{_stamp(at)} [Save Model_Checkpoint][time spent]:{draw(st.floats(0, 100))!r}",
            f"{_stamp(at)} [INFO] training complete!",
        ]
    return out, done, total, complete


@PROPERTY
@given(log=training_logs(), window=st.integers(1, 12))
def test_a_training_log_read_in_sliding_tails(log: tuple[list[str], int, int, bool], window: int) -> None:
    """After every read of the last `window` lines, the progress is that of the log so far."""
    lines, done, total, complete = log
    whole = parse_log("".join(line + "\n" for line in lines))
    assert (whole.steps, whole.total_steps, whole.verdict) == (done, total, "complete" if complete else "running")
    assert whole.percentage == (100 if complete else min(99, math.floor(100 * done / total)))
    progress, so_far = None, None
    for end in range(1, len(lines) + 1):
        progress = parse_log("".join(line + "\n" for line in lines[max(0, end - window) : end]), progress)
        so_far = parse_log(lines[end - 1] + "\n", so_far)
        assert (progress.steps, progress.loss, progress.tokens_per_second, progress.verdict, progress.percentage) == (
            so_far.steps,
            so_far.loss,
            so_far.tokens_per_second,
            so_far.verdict,
            so_far.percentage,
        )
    assert so_far == whole
