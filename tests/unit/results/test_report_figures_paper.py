"""The report's figures at a paper's page width: many ablation rows stay readable, a pair without a
finished run says so, curve axes name their metric and unit as the tables do, a bar cut at 0..100%
is captioned."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import pytest
from tables_fixture import REPORT_SPEC, fake_run, report_fixture

from orchestrator import store
from orchestrator.results import collect, figures, figures_curves
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec
from trainers.rundir import State


def _rows(count: int) -> list[tuple[str, list[float]]]:
    return [(f"+ modifier number {i}", [70.0 + i * 0.1, 71.0 + i * 0.1, 72.0]) for i in range(count)]


def test_thirty_ablation_rows_fit_the_page_with_every_name_and_value() -> None:
    """30 rows side by side made a 3,420 px wide figure the page shrank to unreadable text: past a few
    rows they go down the page, each with its name, its seeds and its mean ± std."""
    figure = figures.ablation_figure(_rows(30), "top-1 (%)", planned=[3] * 30)
    width_px, height_px = figure.get_size_inches() * figures.DPI
    assert width_px <= 800 and height_px <= 1300
    ax = figure.axes[0]
    names = [tick.get_text() for tick in ax.get_yticklabels()]
    assert names[0] == "+ modifier number 0  n=3" and names[29] == "+ modifier number 29  n=3"
    (means,) = ax.child_axes  # the right-hand axis
    assert [tick.get_text() for tick in means.get_yticklabels()][:2] == ["71.0 ± 1.0", "71.1 ± 1.0"]
    assert ax.get_xlabel() == "top-1 (%)"
    figure.canvas.draw()
    assert ax.get_position().width > 0.3  # names and values leave the axes a third of the width


def test_a_few_ablation_rows_stay_side_by_side() -> None:
    figure = figures.ablation_figure(_rows(3), "top-1 (%)")
    assert figure.axes[0].get_xticklabels()[0].get_text() == "+ modifier\nnumber 0\nn=3"


def _two_datasets(tmp_path: Path) -> Path:
    """The report fixture's sweep with a second dataset none of whose runs finished."""
    spec_path = tmp_path / "two.yaml"
    second = "dataset: [{name: digits, label: Digits}, {name: digits, label: Small digits, max_samples: 10}]"
    text = REPORT_SPEC.replace("{out}", str(tmp_path / "results"))
    spec_path.write_text(text.replace("dataset: [{name: digits, label: Digits}]", second))
    spec = load_spec(spec_path)
    store.write_snapshot(spec, spec.output_path)
    for run in plan(spec):
        if run.dataset == "Digits":
            fake_run(spec, run, 0.9 + 0.01 * run.seed)
        else:
            fake_run(spec, run, None, state=State.FAILED)
    written = collect.write_tables(spec, spec.output_path, report=True)
    assert written.report_path is not None
    return written.report_path


def test_a_pair_without_a_finished_run_gets_a_line_not_an_empty_figure(tmp_path: Path) -> None:
    """Its figure was empty axes whose only word was `n=0 of 3` under each row."""
    path = _two_datasets(tmp_path)
    page = html.unescape(path.read_text())
    assert "No ablation figure for test_resnet / Small digits: no run has a finished top-1 (%)." in page
    (only,) = (path.parent / "img").glob("ablation-*.png")
    assert "small" not in only.name


def test_curve_axes_name_the_metric_and_its_unit_as_the_tables_do() -> None:
    """The y axes had no label and top-1 was drawn as 0.8 where every table says 80.0 (%)."""
    history = pd.DataFrame({"epoch": [1, 2], "seed": "0", "train_loss": [2.0, 1.0], "val_top1": [0.5, 0.8]})
    loss_ax, metric_ax = figures_curves.curves_figure(history).axes[:2]
    assert loss_ax.get_ylabel() == "loss" and metric_ax.get_ylabel() == "validation metric (%)"
    assert metric_ax.lines[0].get_ydata().tolist() == pytest.approx([50.0, 80.0])
    as_fraction = figures_curves.curves_figure(history, scale=1.0).axes[1]
    assert as_fraction.get_ylabel() == "validation metric (fraction)"
    mixed = history.assign(val_hamming_loss=[0.2, 0.1])  # no fraction the tables scale: its legend says which is %
    legend = [t.get_text() for t in figures_curves.curves_figure(mixed).axes[1].get_legend().get_texts()]
    assert legend == ["val_top1 (%)", "val_hamming_loss"]


def test_a_bar_cut_at_the_percent_range_is_captioned(tmp_path: Path) -> None:
    """A mean ± std past 100% was cut at the axis's end without a word: the bar looked shorter than the std."""
    spec, _ = report_fixture(tmp_path)
    for run in plan(spec):
        if run.ablation == "Baseline":  # 99.9, 80.0, 99.9: 93.3 ± 11.5, past 100%
            fake_run(spec, run, 0.8 if run.seed == 1 else 0.999, epochs=8)
    written = collect.write_tables(spec, spec.output_path, report=True)
    assert written.report_path is not None
    page = html.unescape(written.report_path.read_text())
    assert "the ± std bar of Baseline is cut at the 0..100% range (the tables give the whole std)" in page
    assert page.count("is cut at the 0..100% range") == 2  # its caption, as figure alt text and caption
