"""Reading single values out of trainer log lines, distrusting every one of them.

A user's `echo` in the prescript writes to the same log as the trainer, so no value is trusted: a
count is an int64 or nothing, a loss a finite number of sane length (or the trainer's own nan/inf),
an evidence line a bounded string. Checks come before conversions (int() takes quadratic time on
long digit strings and refuses more than 4,300 digits).
"""

from __future__ import annotations

import math
import re

from finetune_operator.api.base import TRAINING_COMPLETE

# ASCII: the trainer writes ASCII digits, and int() would also take other scripts' digits.
STAMP = re.compile(r"\[(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?)\]\s*(.*)", re.ASCII)
SCHEDULE = re.compile(r"training schedule consists of (\d+) epochs? with (\d+) iterations? each", re.ASCII)
ACCUMULATION = re.compile(r"accumulated time is set to (\d+) so the training will be updated (\d+) times", re.ASCII)
EPOCH_BEGIN = re.compile(r"Beginning of Epoch (\d+)/(\d+)", re.ASCII)
START = re.compile(r"\[PHISON START\] Epoch: (\d+), Iteration: (\d+)", re.ASCII)
END = re.compile(r"\[PHISON END\] Iteration: (\d+)", re.ASCII)
LOSS = re.compile(r"\[Loss\]:\s*(\S+)", re.ASCII)
EFFICIENCY = re.compile(r"Training efficiency: (\S+) \(tokens/s\)", re.ASCII)
SAVE_START = re.compile(r"\[Save Model_Checkpoint\]\[Start\]", re.ASCII)
SAVE_SPENT = re.compile(r"\[Save Model_Checkpoint\]\[time spent\]:\s*(\S+)", re.ASCII)
MAX_ITER = re.compile(r"--max_iter (-?\d+)", re.ASCII)
RETURN_CODE = re.compile(r"exits with return code = (-?\d+)", re.ASCII)
ERROR = re.compile(r"[A-Za-z_.]*(Error|Exception): ")
DECIMAL = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
NOT_FINITE = re.compile(r"[-+]?(?:nan|inf)", re.ASCII | re.IGNORECASE)
# Terminal escapes (colour from loggers, `tput`, a prescript's own echo): CSI, such as colours and
# erase-line; OSC, such as window titles and hyperlinks, ended by BEL or ST; and the two- or
# three-byte escapes, such as tput sgr0's `ESC ( B`. An OSC never spans \r or \n, so an unended one
# cannot swallow the rest of a line, and stripping commutes with splitting lines and rewrites.
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\r\n]*(?:\x07|\x1b\\)|[ -/]*[0-Z\\^-~])")
COMPLETE = TRAINING_COMPLETE

INT64_MAX = 2**63 - 1
# A count beyond int64 is no count the API server (or anyone) can store; its line is ignored.
INT64_DIGITS = len(str(INT64_MAX))
# The longest float Python prints is 24 characters ("-2.2250738585072014e-308"); anything longer is
# not a number the trainer wrote, and Metric.value holds only 64.
MAX_NUMBER_CHARS = 32
# Capped, not dropped: a run whose pace says centuries is still running and still worth an ETA.
# 999,999,999 s (31 years) fits an int32 for any client, and "277777h46m" its column.
MAX_REMAINING_SECONDS = 999_999_999
# The evidence becomes a condition's message (at most 32768) and a line of `parse-log`'s output;
# a real exception line (PyTorch's CUDA out-of-memory one runs to a few hundred) fits.
MAX_EVIDENCE_CHARS = 1024


def bounded(count: int) -> int | None:
    return count if 0 <= count <= INT64_MAX else None


def count(digits: str) -> int | None:
    """A count from the log's ASCII digits, or None for one beyond int64."""
    # Checked before int(): it takes quadratic time on long strings and raises past 4300 digits.
    significant = digits.lstrip("0")
    if len(significant) > INT64_DIGITS:
        return None
    return bounded(int(significant or "0"))


def signed(text: str) -> int | None:
    if text.startswith("-"):
        magnitude = count(text[1:])
        return None if magnitude is None else -magnitude
    return count(text)


def loss(text: str) -> str | None:
    """The loss as the trainer wrote it, or None for what is not a number of sane length."""
    if len(text) > MAX_NUMBER_CHARS:
        return None
    if NOT_FINITE.fullmatch(text):
        # The trainer's own word that training diverged: hiding it behind the last finite loss would mislead.
        return text
    # 1e999 is no float the trainer prints (it would print inf): an echo, ignored.
    return text if DECIMAL.fullmatch(text) and math.isfinite(float(text)) else None


def throughput(text: str) -> str | None:
    """Tokens per second as written, or None unless a finite, non-negative number of sane length."""
    if len(text) > MAX_NUMBER_CHARS or not DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return text if math.isfinite(value) and value >= 0 else None


def evidence(line: str) -> str:
    line = line.strip()
    return line if len(line) <= MAX_EVIDENCE_CHARS else line[: MAX_EVIDENCE_CHARS - 1] + "…"


def strip_ansi(text: str) -> str:
    """Text without terminal escape sequences (colours, titles, hyperlinks)."""
    return ANSI.sub("", text) if "\x1b" in text else text
