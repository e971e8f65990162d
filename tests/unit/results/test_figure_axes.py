"""Figure axes respect the metric's range: top-1 within 0..100 %, deltas symmetric about 0; an ablation
figure's dashed baseline is each row's own; a training curve's outlier leaves its axis on the others."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from orchestrator.results import figures, figures_curves


def test_two_seed_interval_keeps_the_top1_axis_within_0_and_100() -> None:
    rows = [("Baseline", [40.0, 90.0]), ("+ Aug", [55.0, 60.0]), ("+ Drop", [95.0])]
    figure = figures.ablation_figure(rows, "top-1 (%)")
    low, high = figure.axes[0].get_ylim()
    assert 0.0 <= low < 40.0 and 95.0 < high <= 100.0  # unclipped, Baseline's mean ± std reaches 100.4


def test_a_metric_outside_percent_is_left_to_autoscale() -> None:
    figure = figures.ablation_figure([("Baseline", [2.0, 3.0]), ("+ Aug", [2.5, 2.6])], "loss")
    low, high = figure.axes[0].get_ylim()
    assert low < 2.5 - 0.7071 and high > 2.5 + 0.7071  # no range known: the whole mean ± std shows


def test_delta_axis_is_symmetric_and_bounded_by_the_data() -> None:
    looks = [(2, 3.0, -40.0, 46.0), (4, 2.0, -1.0, 5.0), (1, 1.0, float("-inf"), float("inf"))]
    figure = figures.rounds_figure([("+ Aug vs Baseline", looks)], "Δ top-1 (%)")
    low, high = figure.axes[0].get_ylim()
    assert low == -high and 46.0 <= high <= 1.05 * 46.0 + 1e-9


def _dashed(figure: Figure) -> list[tuple[str, list[tuple[float, float, float]]]]:
    """The dashed baseline artists of an ablation figure: (legend label, [(x from, x to, y)])."""
    ax = figure.axes[0]
    found = [
        (str(line.get_label()), [(0.0, 1.0, float(line.get_ydata()[0]))])
        for line in ax.lines
        if "mean" in line.get_label()
    ]
    for marks in ax.collections:
        if isinstance(marks, LineCollection) and "baseline" in str(marks.get_label()):
            found.append((str(marks.get_label()), [(s[0][0], s[1][0], s[0][1]) for s in marks.get_segments()]))
    return found


GRID_ROWS = [
    ("Baseline (lr=0.1)", [90.0, 91.0]),
    ("+ Aug (lr=0.1)", [92.0, 93.0]),
    ("Baseline (lr=0.01)", [70.0, 71.0]),
    ("+ Aug (lr=0.01)", [72.0, 73.0]),
]


def test_rows_of_several_learning_rates_are_marked_at_their_own_baseline() -> None:
    """The dashed line sat at the first row's mean (lr=0.1, 90.5): the lr=0.01 rows, compared against
    70.5, looked 20 points below their baseline. Each row now gets a mark at its own baseline's mean."""
    figure = figures.ablation_figure(GRID_ROWS, "top-1 (%)", baselines=[0, 0, 2, 2])
    ((name, marks),) = _dashed(figure)
    assert name == "the row's baseline (mean)"
    assert [(round(a, 2), round(b, 2), y) for a, b, y in marks] == [
        (-0.4, 0.45, 90.5),
        (0.6, 1.45, 90.5),
        (1.6, 2.45, 70.5),
        (2.6, 3.45, 70.5),
    ]
    caption = figures.baseline_caption(GRID_ROWS, [0, 0, 2, 2], "Baseline", ["lr"])
    assert "different baselines: a dashed mark at each row's baseline mean (Baseline at the same lr)" in caption


def test_one_baseline_for_every_row_is_one_line_at_its_mean_wherever_it_is() -> None:
    rows = [("+ Aug", [92.0, 93.0]), ("Baseline", [80.0, 81.0]), ("+ Drop", [85.0])]
    figure = figures.ablation_figure(rows, "top-1 (%)", baselines=[1, 1, 1])
    assert _dashed(figure) == [("Baseline (mean)", [(0.0, 1.0, 80.5)])]
    assert figures.baseline_caption(rows, [1, 1, 1], "Baseline", []).startswith("the dashed line the mean of Baseline")


def test_no_finished_baseline_draws_no_line_and_the_caption_says_so() -> None:
    """A baseline without a value (its runs failed) and rows without one: no line at another row's mean.
    Where only some rows have a finished baseline, only they are marked."""
    rows = [("Baseline", []), ("+ Aug", [92.0, 93.0])]
    assert _dashed(figures.ablation_figure(rows, "top-1 (%)", baselines=[0, 0])) == []
    assert figures.baseline_caption(rows, [0, 0], "Baseline", []) == (
        "no baseline line: Baseline has no finished run in this figure"
    )
    partial = [*GRID_ROWS[:2], ("Baseline (lr=0.01)", []), GRID_ROWS[3]]
    ((_, marks),) = _dashed(figures.ablation_figure(partial, "top-1 (%)", baselines=[0, 0, 2, 2]))
    assert [y for _, _, y in marks] == [90.5, 90.5]
    assert figures.baseline_caption(partial, [0, 0, 2, 2], "Baseline", ["lr"]).endswith(
        "; none where it has no finished run"
    )


def _history(loss_outlier: float, metric_outlier: float) -> pd.DataFrame:
    """3 seeds x 6 epochs: losses 2.2 -> 0.4, top-1 0.55 -> 0.8; one value of each made an outlier."""
    rows = [
        {"epoch": e, "seed": str(s), "train_loss": 2.0 / e + 0.1 * s, "val_loss": 2.2 / e, "val_top1": 0.5 + 0.05 * e}
        for s in range(3)
        for e in range(1, 7)
    ]
    rows[8]["train_loss"] = loss_outlier  # seed 1, epoch 3
    rows[9]["val_top1"] = metric_outlier  # seed 1, epoch 4
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("loss_outlier", "metric_outlier"), [(1e308, math.inf), (1e6, -1e300), (math.inf, 1e9)])
def test_an_outlier_in_one_history_leaves_the_curve_axes_on_the_other_values(
    loss_outlier: float, metric_outlier: float
) -> None:
    """A 1e308 in one run's history set the loss axis to 0..1e308: every curve a flat line at 0. The axes
    span the bulk of the values; the outlier is drawn at the edge, marked and counted in the title."""
    loss_ax, metric_ax = figures_curves.curves_figure(_history(loss_outlier, metric_outlier)).axes[:2]
    low, high = loss_ax.get_ylim()
    assert 0.0 < low < 0.3 and 2.2 < high < 3.0
    low, high = metric_ax.get_ylim()
    assert 50.0 < low < 56.0 and 80.0 <= high < 85.0  # top-1 in % as the tables give it
    for ax in (loss_ax, metric_ax):
        assert ax.get_title().endswith(" (1 point off the axis: ▲▼)")
        (marker,) = [line for line in ax.lines if line.get_marker() in ("^", "v")]
        assert marker.get_ydata()[0] in ax.get_ylim()


def test_curves_without_outliers_keep_every_value_on_the_axis() -> None:
    """A loss falling from 10 to 0.1 is no outlier: its first epochs stay on the axis, nothing is marked."""
    history = pd.DataFrame(
        {"epoch": range(1, 21), "seed": "0", "train_loss": [10.0 / e**1.5 for e in range(1, 21)], "val_top1": 0.5}
    )
    loss_ax, metric_ax = figures_curves.curves_figure(history).axes[:2]
    assert loss_ax.get_ylim()[1] >= 10.0 and loss_ax.get_ylim()[0] <= 10.0 / 20**1.5
    assert loss_ax.get_title() == "loss" and metric_ax.get_title() == "validation metrics"
    assert metric_ax.get_ylim()[0] < 50.0 < metric_ax.get_ylim()[1]  # top-1 in %
    assert figures_curves.robust_limits(np.array([np.nan, np.inf])) is None
