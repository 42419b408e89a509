"""The small decisions of observe/: log values at their bounds, timestamps, the TTL deadline, peering,
ownership, and following a log (when a write, an event or a condition is due)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from finetune_operator.api.status import Condition, FineTuneJobStatus, LossPoint, Metric, TrainerStatus
from finetune_operator.observe import log_values
from finetune_operator.observe.following import (
    Followed,
    comparable,
    first_step_due,
    fold,
    last_lines,
    progress_seen,
    readable_again,
    stalled,
    unreadable_condition,
)
from finetune_operator.observe.owners import controller_of, owns
from finetune_operator.observe.peering import is_active
from finetune_operator.observe.progress import Mark, Progress, Start, parse_log, trainer_status
from finetune_operator.observe.status import model_path_condition
from finetune_operator.observe.times import parse_timestamp, timestamp
from finetune_operator.observe.ttl import Retention, cleanup_deadline

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
INT64_MAX = 2**63 - 1


@pytest.mark.parametrize(("value", "kept"), [(0, 0), (-1, None), (INT64_MAX, INT64_MAX), (INT64_MAX + 1, None)])
def test_bounded(value: int, kept: int | None) -> None:
    assert log_values.bounded(value) == kept


@pytest.mark.parametrize(
    ("digits", "value"),
    [
        ("0", 0),
        ("", 0),
        ("000", 0),
        ("0042", 42),
        ("9223372036854775807", INT64_MAX),
        # Leading zeros do not count against the length: still an int64.
        ("0009223372036854775807", INT64_MAX),
        ("9223372036854775808", None),
        ("10000000000000000000", None),
    ],
)
def test_count(digits: str, value: int | None) -> None:
    assert log_values.count(digits) == value


@pytest.mark.parametrize(("text", "value"), [("-5", -5), ("-05", -5), ("5", 5), ("-0", 0), ("-" + "9" * 20, None)])
def test_signed(text: str, value: int | None) -> None:
    assert log_values.signed(text) == value


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("1.5", "1.5"),
        ("-2e-3", "-2e-3"),
        ("nan", "nan"),
        ("-Inf", "-Inf"),
        ("1e999", None),
        ("1.5.", None),
        ("abc", None),
        ("1" * 32, "1" * 32),
        ("1" * 33, None),
    ],
)
def test_loss(text: str, kept: str | None) -> None:
    assert log_values.loss(text) == kept


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("0", "0"),
        ("0.5", "0.5"),
        ("1234.5", "1234.5"),
        ("-1", None),
        ("inf", None),
        ("1e999", None),
        ("x", None),
        ("1" * 32, "1" * 32),
        ("1" * 33, None),
    ],
)
def test_throughput(text: str, kept: str | None) -> None:
    assert log_values.throughput(text) == kept


def test_evidence_is_stripped_and_cut_at_its_limit() -> None:
    assert log_values.evidence("  Error: x \n") == "Error: x"
    assert log_values.evidence("e" * 1024) == "e" * 1024
    assert log_values.evidence("e" * 1025) == "e" * 1023 + "…"


def test_timestamps_are_utc_with_z_whatever_the_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever the machine's own zone, too.
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    assert timestamp(NOW) == "2026-11-28T12:00:00Z"
    monkeypatch.undo()
    time.tzset()
    assert timestamp(datetime(2026, 11, 28, 14, 0, 5, 900, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-11-28T12:00:05Z"
    )
    assert parse_timestamp("2026-11-28T12:00:00Z") == NOW
    assert parse_timestamp("2026-11-28T14:00:00+02:00") == NOW
    # Without a zone it is UTC (an API server never writes local time).
    naive = parse_timestamp("2026-11-28T12:00:00")
    assert (naive, naive.tzinfo) == (NOW, UTC)
    zoned = parse_timestamp("2026-11-28T14:00:00+02:00")
    assert zoned.utcoffset() == timedelta(hours=2)


def _finished(phase: str | None, completion: str | None = "2026-11-28T12:00:00Z") -> FineTuneJobStatus:
    return FineTuneJobStatus(phase=phase, completion_time=completion)  # type: ignore[arg-type]


def test_cleanup_deadline_by_phase() -> None:
    retention = Retention(after_success=60, after_failure=600)
    assert cleanup_deadline(_finished("Succeeded"), retention) == NOW + timedelta(seconds=60)
    assert cleanup_deadline(_finished("Failed"), retention) == NOW + timedelta(seconds=600)
    assert cleanup_deadline(_finished(None), retention) is None
    assert cleanup_deadline(_finished("Succeeded", None), retention) is None
    assert cleanup_deadline(_finished("Succeeded"), Retention(0, 0)) == NOW


def test_failures_kept_until_deleted_have_no_deadline() -> None:
    assert cleanup_deadline(_finished("Failed"), Retention(60, None)) is None


def test_peers_that_are_not_peers_or_are_dead_do_not_count() -> None:
    assert is_active({"other": "garbage", "me": {"priority": 99}}, "me", 5, NOW) is True
    # Default lifetime 60 s: seen 59 s ago is alive, 60 s ago dead.
    alive = {"priority": 9, "lastseen": "2026-11-28T11:59:01Z"}
    dead = {"priority": 9, "lastseen": "2026-11-28T11:59:00Z"}
    assert is_active({"a": alive}, "me", 5, NOW) is False
    assert is_active({"a": dead}, "me", 5, NOW) is True
    # A dead peer is skipped, not the end of the search.
    assert is_active({"a": dead, "b": alive}, "me", 5, NOW) is False
    # Without a priority a peer has 0: it outranks a replica of priority 0 or less only.
    assert is_active({"a": {"lifetime": 60}}, "me", 1, NOW) is True
    assert is_active({"a": {"lifetime": 60}}, "me", 0, NOW) is False


def test_controller_of_is_the_controller_reference_only() -> None:
    child = {
        "metadata": {
            "ownerReferences": [
                {"kind": "Other", "name": "x", "uid": "u0"},
                {"kind": "FineTuneJob", "name": "run", "uid": "u1", "controller": True},
                {"kind": "Late", "name": "y", "uid": "u2", "controller": True},
            ]
        }
    }
    assert controller_of(child) == ("FineTuneJob", "run", "u1")
    assert controller_of({"metadata": {"ownerReferences": [{"uid": "u0", "controller": False}]}}) == (None, None, None)
    assert controller_of({}) == (None, None, None)
    assert owns({"metadata": {"uid": "u1"}}, child) is True
    assert owns({"metadata": {"uid": "u0"}}, child) is False


SCHEDULE = "[INFO] The current training schedule consists of 1 epochs with 4 iterations each.\n"
STEP = "[2026-10-01 08:00:0{0}.000000] [PHISON START] Epoch: 0, Iteration: {0}\n" + (
    "[2026-10-01 08:00:0{1}.000000] [PHISON END] Iteration: {0}\n"
)


def test_fold_says_whether_the_status_changed_and_keeps_the_newest() -> None:
    followed = Followed("ns", "run", max_iter=2)
    assert fold(followed, SCHEDULE, NOW) is True
    assert followed.latest is not None and followed.latest.last_updated_time == "2026-11-28T12:00:00Z"
    # The spec's max_iter caps the steps: 2, not 4.
    assert followed.latest.metric_values() == {"totalEpochs": "1", "iterationsPerEpoch": "4", "totalSteps": "2"}
    # The same again, later: no write is due, and the time of the last one stays.
    assert fold(followed, SCHEDULE, NOW + timedelta(seconds=5)) is False
    assert followed.latest.last_updated_time == "2026-11-28T12:00:00Z"
    # A tail without the schedule line folds into what was read before.
    assert fold(followed, STEP.format(0, 1), NOW + timedelta(seconds=10)) is True
    assert followed.latest.metric_values()["step"] == "1"
    assert followed.latest.metric_values()["totalSteps"] == "2"
    assert followed.latest.last_updated_time == "2026-11-28T12:00:10Z"


def test_fold_waits_for_a_cut_line_unless_final() -> None:
    followed = Followed("ns", "run", max_iter=None)
    assert fold(followed, "", NOW) is True  # the first status, empty
    assert fold(followed, "training complete!", NOW) is False
    assert followed.verdict == "running"
    assert fold(followed, "training complete!", NOW, final=True) is True
    assert followed.verdict == "complete"


def test_a_followed_training_is_running_until_its_log_says_otherwise() -> None:
    assert Followed("ns", "run", None).verdict == "running"
    assert Followed("ns", "run", None, progress=Progress(verdict="failed")).verdict == "failed"


def test_comparable_ignores_only_the_time() -> None:
    assert comparable(None) is None
    status = TrainerStatus(progress_percentage=5, metrics=[Metric(name="step", value="1")], last_updated_time="t")
    assert comparable(status) == {
        "progress_percentage": 5,
        "estimated_remaining_seconds": None,
        "estimated_remaining_time": None,
        "metrics": [{"name": "step", "value": "1"}],
        "loss_history": None,
        "loss_trend": None,
        "checkpoints": None,
    }


def test_last_lines_are_the_last_twenty_non_empty_ones_cut_short() -> None:
    text = "".join(f"line {i}\n\n" for i in range(30)) + "\x1b[31m" + "x" * 300 + "\x1b[0m  \n"
    assert last_lines(text) == [f"line {i}" for i in range(11, 30)] + ["x" * 200]
    # Only the text's end is looked at (20 lines of 200 characters, four times over).
    long = "first\n" + "y" * 16_000
    assert last_lines(long) == ["y" * 200]
    assert last_lines("first\n" + "y" * 15_990) == ["first", "y" * 200]


def test_the_first_step_is_announced_once() -> None:
    followed = Followed("ns", "run", None)
    assert first_step_due(followed) is False
    followed.progress = parse_log(SCHEDULE + "[2026-10-01 08:00:00.000000] [PHISON START] Epoch: 0, Iteration: 0\n")
    assert first_step_due(followed) is False  # begun, not finished
    followed.progress = parse_log(SCHEDULE + STEP.format(0, 1))
    assert (first_step_due(followed), followed.started_announced) == (True, True)
    assert first_step_due(followed) is False


def _log_condition(status: str, reason: str, message: str) -> Condition:
    return Condition(
        type="LogUnreadable",
        status=status,  # type: ignore[arg-type]
        observed_generation=3,
        last_transition_time="2026-11-28T12:00:00Z",
        reason=reason,
        message=message,
    )


def test_an_unreadable_log_shows_after_four_failures_once_and_clears_once() -> None:
    followed = Followed("ns", "run", None)
    assert [unreadable_condition(followed, "gone", 3, NOW) for _ in range(3)] == [None, None, None]
    shown = _log_condition("True", "LogReadFailed", "the training log could not be read 4 times in a row: gone")
    assert unreadable_condition(followed, "gone", 3, NOW) == shown
    assert followed.condition == shown
    assert unreadable_condition(followed, "gone", 3, NOW) is None  # already shown
    assert followed.failures == 5
    cleared = _log_condition("False", "LogRead", "the training log is readable again")
    assert readable_again(followed, 3, NOW) == cleared
    assert (followed.failures, followed.condition) == (0, cleared)
    assert readable_again(followed, 3, NOW) is None
    # After it cleared, four more failures show it again.
    assert [unreadable_condition(followed, "again", 3, NOW) for _ in range(3)] == [None, None, None]
    assert unreadable_condition(followed, "again", 3, NOW) == _log_condition(
        "True", "LogReadFailed", "the training log could not be read 4 times in a row: again"
    )


def test_a_read_that_works_resets_the_failures_even_without_a_condition() -> None:
    followed = Followed("ns", "run", None)
    for _ in range(3):
        unreadable_condition(followed, "gone", 3, NOW)
    assert readable_again(followed, 3, NOW) is None
    assert followed.failures == 0
    assert unreadable_condition(followed, "gone", 3, NOW) is None


def _progressing(status: str, reason: str, message: str) -> Condition:
    return Condition.model_validate(
        {"type": "Progressing", "status": status, "observedGeneration": 3, "lastTransitionTime": "2026-11-28T12:00:00Z",
         "reason": reason, "message": message}
    )  # fmt: skip


def test_a_stall_shows_after_n_quiet_reads_once_and_clears_at_the_next_progress() -> None:
    followed = Followed("ns", "run", None)
    assert progress_seen(followed, True, 3, 15.0, 3, NOW) is None  # progress, never stalled: nothing to tell
    assert [progress_seen(followed, False, 3, 15.0, 3, NOW) for _ in range(2)] == [None, None]
    assert not stalled(followed)
    words = "the training log showed no new progress in 3 reads (45s); the training goes on"
    assert progress_seen(followed, False, 3, 15.0, 3, NOW) == _progressing("False", "NoProgress", words)
    assert stalled(followed) and followed.quiet_reads == 3
    assert progress_seen(followed, False, 3, 15.0, 3, NOW) is None  # shown already
    resumed = _progressing("True", "ProgressResumed", "the training log shows progress again")
    assert progress_seen(followed, True, 3, 15.0, 3, NOW) == resumed
    assert (stalled(followed), followed.quiet_reads, followed.progressing) == (False, 0, resumed)
    # Quiet again: counted from the progress, shown again after three more.
    assert [progress_seen(followed, False, 3, 15.0, 3, NOW) is None for _ in range(3)] == [True, True, False]


def test_a_quiet_read_between_progress_starts_the_count_again() -> None:
    followed = Followed("ns", "run", None)
    for progressed in (False, False, True, False, False):
        assert progress_seen(followed, progressed, 3, 1.0, 0, NOW) is None
    assert followed.quiet_reads == 2


def test_each_new_loss_adds_a_point_to_the_history_and_its_sparkline() -> None:
    followed = Followed("ns", "run", None)
    lines = [ONE_EPOCH]
    for step, loss in enumerate(["9.5", "7.25", "8.0", "3.0"]):
        lines += [
            f"[2026-10-01 08:00:0{step}.000000] [PHISON START] Epoch: 0, Iteration: {step}",
            f"[2026-10-01 08:00:0{step}.100000] [Loss]:{loss}",
            f"[2026-10-01 08:00:0{step}.200000] [PHISON END] Iteration: {step}",
        ]
        assert fold(followed, "\n".join(lines) + "\n", NOW)
    assert followed.latest is not None
    assert followed.latest.loss_history == [
        LossPoint(step=1, loss="9.5"),
        LossPoint(step=2, loss="7.25"),
        LossPoint(step=3, loss="8.0"),
        LossPoint(step=4, loss="3.0"),
    ]
    assert followed.latest.loss_trend == "█▆▇▁"
    # The same tail again: no new point, no write.
    assert not fold(followed, "\n".join(lines) + "\n", NOW)
    # A log without a loss yet: no history at all.
    quiet = Followed("ns", "run", None)
    fold(quiet, ONE_EPOCH + "\n", NOW)
    assert quiet.latest is not None and (quiet.latest.loss_history, quiet.latest.loss_trend) == (None, None)


AT = "[2026-10-01 08:00:00.000000]"
AT_TIME = datetime(2026, 10, 1, 8, 0, 0)
ONE_EPOCH = "[INFO] The current training schedule consists of 1 epochs with 8 iterations each."


def test_of_lines_at_the_same_time_the_later_is_the_newest_and_the_earlier_the_oldest() -> None:
    progress = parse_log(
        f"{AT} [Loss]:2.0\n{AT} [Loss]:1.0\n"
        f"{AT} [PHISON START] Epoch: 0, Iteration: 3\n{AT} [PHISON START] Epoch: 0, Iteration: 4\n"
    )
    assert progress.loss == Mark("1.0", AT_TIME)
    assert (progress.oldest_start, progress.newest_start) == (
        Start(AT_TIME, 0, 3),
        Start(AT_TIME, 0, 4),
    )


def test_the_epoch_banner_gives_the_number_of_epochs() -> None:
    assert parse_log(f"{AT} [INFO] Beginning of Epoch 1/3\n").total_epochs == 3
    assert parse_log(f"{AT} [INFO] Beginning of Epoch 1/{'9' * 20}\n").total_epochs is None


@pytest.mark.parametrize(
    ("line", "verdict"),
    [
        ("Process 1 exits with return code = -0", "running"),
        ("Process 1 exits with return code = 00", "running"),
        ("Process 1 exits with return code = -9", "failed"),
        ("Process 1 exits with return code = 10", "failed"),
    ],
)
def test_a_return_code_fails_the_run_only_when_nonzero(line: str, verdict: str) -> None:
    assert parse_log(line + "\n").verdict == verdict


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        # Windows line ends: the line is the same.
        ("training complete!\r\n", "complete"),
        # tqdm rewrites a line with carriage returns: only the last rewrite counts.
        ("1/3\r2/3 training complete!\r3/3\n", "running"),
        ("1/3\r3/3 training complete!\n", "complete"),
        # A rewrite that blanked the line leaves nothing.
        ("training complete!\r   \n", "running"),
    ],
)
def test_carriage_returns(text: str, verdict: str) -> None:
    assert parse_log(text).verdict == verdict


def test_a_loss_with_trailing_garbage_is_ignored() -> None:
    assert parse_log(f"{AT} [Loss]:1.5X\n").loss is None
    assert parse_log(f"{AT} [Loss]:1.5X\r\n").loss is None


def test_the_callers_max_iter_fills_one_not_known_and_never_replaces_one() -> None:
    assert parse_log("", Progress(), max_iter=5).max_iter == 5
    assert parse_log("", Progress(max_iter=7), max_iter=5).max_iter == 7
    assert parse_log("", Progress(max_iter=7)).max_iter == 7
    assert parse_log("", None, max_iter=5).max_iter == 5


def test_a_progress_made_with_values_out_of_bounds_still_gives_a_valid_status() -> None:
    status = trainer_status(
        Progress(total_epochs=2**63, iterations_per_epoch=-1, loss=Mark("1" * 33, AT_TIME)), "2026-10-01T08:00:00Z"
    )
    assert status.metric_values() == {}
    kept = trainer_status(Progress(total_epochs=2**63 - 1, loss=Mark("1" * 32, AT_TIME)), None)
    assert kept.metric_values() == {"totalEpochs": str(2**63 - 1), "loss": "1" * 32}


def test_a_standing_model_path_warning_keeps_when_it_began() -> None:
    first = model_path_condition(FineTuneJobStatus(), "elsewhere", 3, NOW)
    assert (first.status, first.observed_generation, first.last_transition_time) == ("True", 3, "2026-11-28T12:00:00Z")
    other = Condition(type="Ready", status="True", last_transition_time="2026-11-28T11:00:00Z", reason="R")
    later = model_path_condition(FineTuneJobStatus(conditions=[other, first]), "elsewhere", 4, NOW + timedelta(hours=1))
    assert (later.observed_generation, later.last_transition_time) == (4, "2026-11-28T12:00:00Z")
