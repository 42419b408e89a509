"""The loss history kept in status (bounded, spread over the steps, deterministic) and its sparkline."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune_operator.api.status import MAX_LOSS_POINTS, LossPoint
from finetune_operator.observe.trend import downsample, sparkline, with_point

PROPERTY = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _points(*steps: int) -> list[LossPoint]:
    return [LossPoint(step=step, loss=str(step)) for step in steps]


def test_a_new_step_adds_a_point_and_the_same_step_replaces_its_loss() -> None:
    history = with_point([], 1, "3.5")
    assert history == [LossPoint(step=1, loss="3.5")]
    history = with_point(history, 4, "2.25")
    assert history == [LossPoint(step=1, loss="3.5"), LossPoint(step=4, loss="2.25")]
    # A loss logged before the step's END: the newest point is that step's, with the newer loss.
    assert with_point(history, 4, "2.0") == [LossPoint(step=1, loss="3.5"), LossPoint(step=4, loss="2.0")]
    assert with_point(history, 4, "2.25") is history  # the same read again changes nothing
    assert with_point(history, 3, "9.0") is history  # an older step (a stale read) neither


def test_a_full_history_drops_the_point_closest_to_its_neighbours() -> None:
    # Neighbours' spans: 2 (at 1), 2 (at 2), 6 (at 3), 7 (at 8); the first smallest goes.
    assert downsample(_points(0, 1, 2, 3, 9, 10), 5) == _points(0, 2, 3, 9, 10)
    assert downsample(_points(0, 1, 2, 3, 9, 10), 4) == _points(0, 3, 9, 10)
    assert downsample(_points(0, 5, 10), 1) == _points(0, 10)  # the first and the newest always stay
    assert downsample(_points(0, 5), 5) == _points(0, 5)


def test_a_long_run_keeps_its_points_spread_over_every_step() -> None:
    history: list[LossPoint] = []
    for step in range(1, 1001):
        history = with_point(history, step, f"{10 - step / 100:.2f}")
    assert len(history) == MAX_LOSS_POINTS
    assert (history[0].step, history[-1].step) == (1, 1000)
    gaps = [b.step - a.step for a, b in itertools.pairwise(history)]
    even = 999 / (MAX_LOSS_POINTS - 1)  # 32.2 steps between points, spread perfectly
    assert (min(gaps), max(gaps)) == (20, 46)
    assert even / 2 < min(gaps) and max(gaps) < 1.5 * even


def test_the_sparkline_draws_low_to_high_and_marks_what_is_no_number() -> None:
    assert sparkline(["8", "6", "4", "2", "0"]) == "█▇▅▃▁"
    assert sparkline(["1.5", "1.5"]) == "▄▄"
    assert sparkline(["2", "nan", "1", "inf"]) == "█×▁×"
    assert sparkline(["nan"]) == "×"
    assert sparkline([]) == ""
    # Floats as far apart as floats go still draw (their difference would overflow).
    assert sparkline(["-1.7e308", "0", "1.7e308"]) == "▁▅█"


@PROPERTY
@given(steps=st.lists(st.integers(0, 10**6), max_size=200), limit=st.integers(0, 40))
def test_any_reads_keep_a_bounded_ordered_history_with_its_ends(steps: list[int], limit: int) -> None:
    history: list[LossPoint] = []
    for step in steps:
        history = with_point(history, step, str(step), limit)
    assert len(history) <= max(limit, 2)
    assert [p.step for p in history] == sorted({p.step for p in history})
    if steps:
        assert history[0].step == steps[0]
        assert history[-1].step == max(steps)


@PROPERTY
@given(losses=st.lists(st.one_of(st.floats().map(repr), st.text(max_size=5)), max_size=MAX_LOSS_POINTS))
def test_any_losses_draw_one_bar_each(losses: list[str]) -> None:
    line = sparkline(losses)
    assert len(line) == len(losses)
    assert set(line) <= set("▁▂▃▄▅▆▇█×")
