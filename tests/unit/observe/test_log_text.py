"""A log's bytes as text: a byte that is no UTF-8, or a read cut inside a character, never costs the
progress or the last lines (found by a probe: the client's strict decode raised on both, so the status
showed no progress, LogUnreadable, and a Failed condition without the trainer's own words)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune_operator.observe.following import LIMIT_BYTES, Followed, LogTail, fold, log_tail, log_text

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "logs"
TWO_EPOCHS = (FIXTURES / "two-epochs-capped.log").read_bytes()
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
NOW = datetime(2026, 10, 1, 8, 5, tzinfo=UTC)
BAR = "█".encode()  # three bytes


def test_bytes_that_are_no_utf8_are_replaced() -> None:
    assert log_tail(b"caf\xe9 au lait\n", LIMIT_BYTES) == LogTail("caf\ufffd au lait\n", cut=False)
    assert log_text(b"\xff\xfe[Loss]:1.5\n") == "\ufffd\ufffd[Loss]:1.5\n"


def test_a_read_cut_by_the_limit_drops_the_character_it_cut() -> None:
    data = b"Loading: " + BAR * 3
    for cut_inside in (1, 2):
        assert log_tail(data[:-cut_inside], len(data) - cut_inside) == LogTail("Loading: ██", cut=True)
    assert log_tail(data, len(data)) == LogTail("Loading: ███", cut=True)  # a whole character stays
    # Not cut by the limit: the log itself ends inside a character, which is shown replaced.
    assert log_tail(data[:-1], len(data) + 1) == LogTail("Loading: ██\ufffd", cut=False)


def test_an_empty_read_is_empty() -> None:
    assert log_tail(b"", LIMIT_BYTES) == LogTail("", cut=False)


def _followed(data: bytes, limit: int) -> Followed:
    followed = Followed("ml", "run", max_iter=None)
    tail = log_tail(data, limit)
    fold(followed, tail.text, NOW, final=not tail.cut)
    return followed


def test_a_latin1_byte_in_the_last_lines_keeps_the_progress_and_the_final_words() -> None:
    lines = TWO_EPOCHS.rstrip(b"\n").split(b"\n")
    lines.insert(len(lines) - 3, b"[WARNING] d\xe9j\xe0 vu in the data loader")
    dirty = _followed(b"\n".join(lines) + b"\n", LIMIT_BYTES)
    clean = _followed(TWO_EPOCHS, LIMIT_BYTES)
    assert dirty.progress == clean.progress
    assert dirty.progress is not None and dirty.progress.verdict == "complete"
    assert dirty.last_lines[-4:] == [
        "[WARNING] d\ufffdj\ufffd vu in the data loader",
        "[2026-10-01 08:01:30.000000] [Save Model_Checkpoint][Start]",
        "[2026-10-01 08:01:40.000000] [INFO] training complete!",
        "Process 99 exits successfully.",
    ]


def test_a_tail_cut_inside_a_progress_bar_keeps_the_progress() -> None:
    running = TWO_EPOCHS[: TWO_EPOCHS.index(b"[2026-10-01 08:01:01")]  # three steps done, the fourth running
    data = running + b"Saving: " + BAR * 100
    limit = len(data) - 1  # the read ends inside the last █
    followed = _followed(data[:limit], limit)
    assert followed.progress == _followed(running, LIMIT_BYTES).progress
    assert followed.last_lines[-1] == "Saving: " + "█" * 99  # no U+FFFD for the character the limit cut


def test_the_parse_log_command_reads_any_bytes(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(TWO_EPOCHS + b"caf\xe9\n" + BAR[:2])
    result = subprocess.run(
        [sys.executable, "-m", "finetune_operator.cli", "parse-log", str(log)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert (status["verdict"], status["progressPercentage"]) == ("complete", 100)


@given(data=st.binary(max_size=64), limit=st.integers(min_value=1, max_value=80))
@PROPERTY
def test_any_bytes_are_text(data: bytes, limit: int) -> None:
    tail = log_tail(data, limit)
    assert tail.cut == (len(data) >= limit)
    assert tail.text == data.decode("utf-8", errors="replace") or tail.cut


@given(text=st.text(max_size=40), at=st.integers(min_value=0, max_value=200))
@PROPERTY
def test_a_cut_read_of_utf8_is_a_prefix_short_of_at_most_one_character(text: str, at: int) -> None:
    data = text.encode()[:at]
    tail = log_tail(data, len(data))
    assert text.startswith(tail.text)
    assert 0 <= len(data) - len(tail.text.encode()) <= 3
