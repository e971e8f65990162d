"""The report read as a paper's author reads it: which runs a figure draws, on which axis, and what
the dataset summary's numbers count."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure
from tables_fixture import CLASSES, fake_run, report_fixture, write_csv

from orchestrator import store
from orchestrator.results import collect, figures, figures_curves
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec
from trainers import rundir
from trainers.loop import history as history_file
from trainers.loop.build import HIERARCHICAL_HISTORY
from trainers.rundir import State


def _section(page: str, title_end: str) -> str:
    return page.split(title_end)[1].split("</section>")[0]


def test_hierarchical_level_losses_are_drawn_on_the_loss_axis() -> None:
    """val_super.loss and val_sub.loss were drawn among the validation metrics (fractions), a loss of
    2.3 on the axis of a top-1 of 0.6."""
    columns = history_file.columns(HIERARCHICAL_HISTORY)
    rows = [
        {c: (2.0 / epoch if "loss" in c else 0.5 + 0.05 * epoch) for c in columns} | {"epoch": epoch, "seed": "0"}
        for epoch in range(1, 5)
    ]
    curves = figures_curves.curves_figure(pd.DataFrame(rows))
    loss_ax, metric_ax = curves.axes[:2]
    on_loss = [line.get_label() for line in loss_ax.lines]
    on_metrics = [line.get_label() for line in metric_ax.lines]
    assert set(on_loss) == {
        "train_loss",
        "val_loss",
        "train_super_loss",
        "train_sub_loss",
        "val_super.loss",
        "val_sub.loss",
    }
    assert on_metrics == ["val_top1", "val_macro_f1", "val_super.top1", "val_sub.top1"]
    styles = {line.get_label(): line.get_linestyle() for line in loss_ax.lines}
    assert styles["val_sub.loss"] == "--" and styles["train_sub_loss"] == "-"
    assert figures_curves.is_loss("val_super.loss") and not figures_curves.is_loss("val_hamming_loss")


def test_a_failed_runs_history_is_left_out_of_the_curves(tmp_path: Path) -> None:
    """A failed run is in no table; its diverged history (a loss of 1e6) set the mean and the band of
    the cell's curves. The caption says how many runs are still running."""
    spec, runs = report_fixture(tmp_path)
    run = next(run for run in runs if run.ablation == "Baseline" and run.seed == 2)
    path = store.run_path(spec.output_path, run.run_id)
    (path / rundir.METRICS).unlink()
    rundir.update_status(path, State.FAILED, error="loss is NaN")
    write_csv(path / rundir.HISTORY, [{"epoch": e, "train_loss": 1e6, "val_loss": 1e6} for e in (1, 2, 3)])

    written = collect.write_tables(spec, spec.output_path, report=True)

    assert written.report_path is not None
    page = html.unescape(written.report_path.read_text())
    baseline = _section(page, "/ Baseline</h3>")
    assert 'class="state-failed">failed' in baseline
    assert "Training curves of 2 run(s), mean over seeds" in baseline
    assert "Confusion matrix (test), summed over 2 run(s)" in baseline
    augmented = _section(page, "/ + Augmentation</h3>")
    assert "Training curves of 3 run(s) (1 still running: later epochs average fewer runs)" in augmented


def test_a_multilabel_summary_counts_positive_labels_not_test_images(tmp_path: Path) -> None:
    """per_label.csv's support is the images that have a label: an image has several labels or none, so
    the sum (here 3 x 40 over 50 images) was shown as the test split's image count."""
    spec, runs = report_fixture(tmp_path)
    for run in runs:
        path = store.run_path(spec.output_path, run.run_id)
        for name in ("per_class.csv", "confusion_matrix.csv"):
            (path / name).unlink(missing_ok=True)
        if (path / rundir.METRICS).exists():
            rows = [{"label": f"tag{i}", "accuracy": 0.9, "f1": 0.8, "support": 40} for i in range(3)]
            write_csv(path / "per_label.csv", rows)

    written = collect.write_tables(spec, spec.output_path, report=True)

    assert written.report_path is not None
    page = html.unescape(written.report_path.read_text())
    assert "test images (from per-class support)" not in page
    assert "<th>positive labels in the test split (from per-label support)</th><td>120</td>" in page
    assert "<th>labels</th><td>3</td>" in page
    assert "Test-split label distribution (images per label and their share of all positive labels)" in page
    figure = figures.distribution_figure(pd.Series([40, 40, 40], index=["a", "b", "c"]), "all positive labels")
    assert [ax.get_ylabel() for ax in figure.axes[0].child_axes] == ["% of all positive labels"]


ALIKE = """
name: alike
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid:
  backbone: [test_resnet]
  dataset: [{{name: digits, label: "Digits (A)"}}, {{name: digits, label: digits-a, max_samples: 30}}]
  seed: [0, 1]
modifiers: {{aug: {{data.augment: {{hflip_p: 0.25}}}}}}
ablations: {{Baseline: [], + Aug: [aug]}}
"""


def test_datasets_whose_names_slug_alike_get_their_own_figures(write_spec: Callable[..., Path]) -> None:
    """ "Digits (A)" and "digits-a" wrote one ablation figure and one class-distribution file (the second
    overwrote the first, so one dataset's section showed the other's numbers) and shared an anchor."""
    spec = load_spec(write_spec(ALIKE))
    store.write_snapshot(spec, spec.output_path)
    for run in plan(spec):
        first = run.name.split("/")[1] == "Digits (A)"
        fake_run(spec, run, 0.9 if first else 0.5, classes=CLASSES[:3] if first else CLASSES, epochs=2)

    written = collect.write_tables(spec, spec.output_path, report=True)

    assert written.report_path is not None
    page = written.report_path.read_text()
    images = re.findall(r'<img src="img/((?:ablation|dataset)[^"]+)"', page)
    assert len(images) == len(set(images)) == 4, images
    anchors = re.findall(r'id="(dataset-[^"]+)"', page)
    assert len(anchors) == len(set(anchors)) == 2, anchors
    assert "<th>classes</th><td>3</td>" in page and "<th>classes</th><td>10</td>" in page


LR_GRID = """
name: lr_grid
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid:
  backbone: [test_resnet]
  dataset: [digits]
  seed: [0, 1]
  optim.lr: [0.1, 0.01]
modifiers: {{aug: {{data.augment: {{hflip_p: 0.25}}}}}}
ablations: {{Baseline: [], + Aug: [aug]}}
"""


def test_an_ablation_figure_over_two_learning_rates_pairs_each_row_with_its_own_baseline(
    write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of two learning rates in one figure: the dashed line was the first row's mean (Baseline at
    lr=0.1), the baseline of half the rows; the tables compare each row with Baseline at its own lr."""
    spec = load_spec(write_spec(LR_GRID))
    store.write_snapshot(spec, spec.output_path)
    for run in plan(spec):
        top1 = (0.9 if run.axes["optim.lr"] == 0.1 else 0.6) + (0.05 if run.ablation == "+ Aug" else 0.0)
        fake_run(spec, run, top1 + 0.001 * run.seed)
    drawn: list[tuple[list[tuple[str, list[float]]], list[int | None]]] = []
    draw = figures.ablation_figure

    def recorded(rows: list[tuple[str, list[float]]], ylabel: str, **kwargs: Any) -> Figure:
        drawn.append((rows, list(kwargs.get("baselines", ()))))
        return draw(rows, ylabel, **kwargs)

    monkeypatch.setattr(figures, "ablation_figure", recorded)

    written = collect.write_tables(spec, spec.output_path, report=True)

    ((rows, baselines),) = drawn
    pairs = {rows[i][0]: rows[b][0] for i, b in enumerate(baselines) if b is not None}
    assert pairs == {
        "Baseline (lr=0.1)": "Baseline (lr=0.1)",
        "+ Aug (lr=0.1)": "Baseline (lr=0.1)",
        "Baseline (lr=0.01)": "Baseline (lr=0.01)",
        "+ Aug (lr=0.01)": "Baseline (lr=0.01)",
    }
    assert written.report_path is not None
    page = html.unescape(written.report_path.read_text())
    assert "the dashed line the baseline's mean" not in page
    assert "a dashed mark at each row's baseline mean (Baseline at the same lr)" in page


def test_a_hierarchical_summary_says_which_level_its_classes_count(tmp_path: Path) -> None:
    """per_class_super.csv (3 classes) and per_class_sub.csv (10): the summary said `classes 10`, not of
    which level. It says the level of every count and the classes of each level."""
    spec, runs = report_fixture(tmp_path)
    for run in runs:
        path = store.run_path(spec.output_path, run.run_id)
        if (path / "per_class.csv").exists():
            (path / "per_class.csv").rename(path / "per_class_sub.csv")
            (path / "confusion_matrix.csv").rename(path / "confusion_matrix_sub.csv")
            rows = [{"class": f"g{i}", "precision": 0.8, "recall": 0.8, "f1": 0.7, "support": 40 + i} for i in range(3)]
            write_csv(path / "per_class_super.csv", rows)

    written = collect.write_tables(spec, spec.output_path, report=True)

    assert written.report_path is not None
    page = html.unescape(written.report_path.read_text())
    summary = page.split('id="dataset-00-')[1].split("</section>")[0]
    assert "<th>classes</th>" not in summary
    assert "<th>classes per level</th><td>super 3, sub 10</td>" in summary
    assert "<th>classes (sub level)</th><td>10</td>" in summary
    assert "<th>test images (from per-class support, sub level)</th><td>135</td>" in summary
    assert "<th>images per class (sub level): min / median / max</th><td>9 / 13.5 / 18</td>" in summary
    assert "Test-split class distribution, sub level (images per class and their share of the split)" in summary


def test_a_single_level_summary_names_no_level(tmp_path: Path) -> None:
    spec, _ = report_fixture(tmp_path)
    written = collect.write_tables(spec, spec.output_path, report=True)
    assert written.report_path is not None
    page = html.unescape(written.report_path.read_text())
    assert (
        "<th>classes</th><td>10</td>" in page and "level" not in page.split('id="dataset-00-')[1].split("</section>")[0]
    )
