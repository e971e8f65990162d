"""The report's figures read as a paper's author reads them: the bars are the tables' numbers, each
row says how many seeds it stands on, and long names or long histories leave a readable figure."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from tables_fixture import report_fixture

from orchestrator.results import collect, figures, figures_curves


def _ticks(figure: Figure) -> list[str]:
    return [tick.get_text() for tick in figure.axes[0].get_xticklabels()]


def test_each_ablation_row_says_its_seeds_and_its_missing_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row of 2 finished runs of 3 planned and a row of none were drawn like full rows: a failed
    or missing run vanished from the figure while the table said `(2/3 seeds)`."""
    spec, _ = report_fixture(tmp_path)
    drawn: list[Figure] = []
    draw = figures.ablation_figure

    def recorded(*args: Any, **kwargs: Any) -> Figure:
        drawn.append(draw(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(figures, "ablation_figure", recorded)
    written = collect.write_tables(spec, spec.output_path, report=True)

    (figure,) = drawn
    counts = [tick.rsplit("\n", 1)[1] for tick in _ticks(figure)]
    assert counts == ["n=3", "n=2 of 3", "n=0 of 3"]
    assert written.report_path is not None
    page = html.unescape(written.report_path.read_text())
    assert "(n: its finished seeds, of its planned runs where fewer)" in page


def test_an_ablation_rows_bar_is_the_tables_mean_and_std() -> None:
    """The bar was each mean's 95% t-interval (at 3 seeds 2.48 around a mean of 2, 12.7 standard errors
    at 2 seeds): no table reports it, the cells say mean ± std."""
    figure = figures.ablation_figure([("Baseline", [1.0, 2.0, 3.0])], "loss")
    (bar,) = [c for c in figure.axes[0].collections if isinstance(c, LineCollection)]
    (((_, low), (_, high)),) = bar.get_segments()
    assert (low, high) == pytest.approx((1.0, 3.0))  # 2 ± stdev([1, 2, 3]) = 2 ± 1


def test_a_long_row_name_leaves_the_ablation_axes_their_width() -> None:
    """A 200-character row name, slanted under the axis, squeezed the axes to nothing (matplotlib:
    'constrained_layout not applied because axes sizes collapsed to zero')."""
    rows = [("Baseline", [70.0, 71.0]), ("+ " + "very long modifier name " * 8, [72.0, 73.0])]
    figure = figures.ablation_figure(rows, "top-1 (%)", baselines=[0, 0], planned=[2, 2])
    figure.canvas.draw()
    assert figure.axes[0].get_position().width > 0.5
    assert all(len(line) <= 16 for tick in _ticks(figure) for line in tick.split("\n"))


def test_a_long_class_name_leaves_the_bars_their_width() -> None:
    """A 300-character class name of per_class.csv squeezed the per-class F1 bars to nothing."""
    scores = pd.Series([0.4, 0.9], index=["x" * 300, "cat"])
    figure = figures.bars_figure(scores)
    figure.canvas.draw()
    assert figure.axes[0].get_position().width > 0.3
    assert max(len(tick) for tick in _ticks_y(figure)) == figures.MAX_LABEL_CHARS


def _ticks_y(figure: Figure) -> list[str]:
    return [tick.get_text() for tick in figure.axes[0].get_yticklabels()]


def test_a_long_history_is_drawn_in_spans_that_keep_its_extremes() -> None:
    """300,000 epochs of history.csv were drawn point by point, minutes for one cell's figure."""
    epochs = 5 * figures_curves.MAX_CURVE_POINTS
    loss = np.linspace(2.0, 0.5, epochs)
    loss[1234] = 2.5  # one epoch's spike: the band still reaches it
    history = pd.DataFrame({"epoch": range(epochs), "train_loss": loss, "seed": "0"})
    figure = figures_curves.curves_figure(history)
    loss_ax = figure.axes[0]
    (line,) = loss_ax.lines
    assert len(line.get_xdata()) == figures_curves.MAX_CURVE_POINTS
    assert line.get_xdata()[0] == 0 and line.get_xdata()[-1] == epochs - 5
    (band,) = loss_ax.collections
    assert band.get_paths()[0].vertices[:, 1].max() == pytest.approx(2.5)
    assert loss_ax.get_xlabel() == f"epoch ({epochs:,} drawn in {figures_curves.MAX_CURVE_POINTS:,} spans)"
