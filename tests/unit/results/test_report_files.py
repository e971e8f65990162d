"""The report's figure files (history.csv, per-class and confusion tables, split.json) broken by hand:
each is a problem naming the run and the reason, printed by collect and listed in the report, and
the figure is drawn from the other runs; class names with control characters are drawn as text."""

from __future__ import annotations

import html
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from deadline import deadline
from tables_fixture import report_fixture, write_csv

from orchestrator import store
from orchestrator.results import collect, figures, figures_curves, folder_reads
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec
from trainers import rundir

SPLIT = {"info": {"task": "single", "num_classes": 10}, "splits": {"test": {"count": 145}}}


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A read that blocks (a FIFO opened for reading waits for a writer) fails the test instead."""
    with deadline(120):
        yield


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)


def _sparse(path: Path) -> None:
    path.write_bytes(b"")
    os.truncate(path, 3 * 1024**3)  # 3 GB that take no disk: read whole, collect ran out of memory


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _not_parsed(path: Path) -> None:
    path.write_text('class,f1\n"zero,1\n')  # UTF-8, but an unclosed quote: neither CSV nor JSON


# A way to break a file -> what its problem says (a CSV table, split.json).
BREAKS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "fifo": (_fifo, "is a FIFO, not a file", "is a FIFO, not a file"),
    "garbage": (_garbage, "not UTF-8 text", "not UTF-8 text"),
    "sparse": (_sparse, "3,221,225,472 bytes, more than the", "3,221,225,472 bytes, more than the"),
    "dev_zero": (_dev_zero, "is a symbolic link", "is a symbolic link"),
    "not_parsed": (_not_parsed, "invalid CSV", "invalid JSON"),
}


def _baseline(spec: SweepSpec, runs: list[RunSpec]) -> list[tuple[RunSpec, Path]]:
    """Baseline's three completed runs (seeds 0, 1, 2, the dataset's first finished runs) and their folders."""
    chosen = sorted((run for run in runs if run.ablation == "Baseline"), key=lambda run: run.seed)
    return [(run, store.run_path(spec.output_path, run.run_id)) for run in chosen]


def _page_text(report: Path) -> str:
    return html.unescape(report.read_text())


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_a_broken_figure_file_is_a_problem_and_the_figure_uses_the_other_runs(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = report_fixture(tmp_path)
    for run in runs:
        if run.ablation != "+ Augmentation + Dropout":
            rundir.write_json(store.run_path(spec.output_path, run.run_id) / rundir.SPLIT, SPLIT)
    first, second, third = (run for run, _ in _baseline(spec, runs))
    breaks, csv_reason, json_reason = BREAKS[kind]
    broken = {
        (first.run_id, rundir.HISTORY): csv_reason,
        (first.run_id, rundir.SPLIT): json_reason,
        (second.run_id, "per_class.csv"): csv_reason,
        (third.run_id, "confusion_matrix.csv"): csv_reason,
    }
    for (run_id, name), _ in broken.items():
        path = store.run_path(spec.output_path, run_id) / name
        path.unlink()
        breaks(path)
    monkeypatch.setenv(folder_reads.WORKERS_ENV, "2")  # figures on forked workers: their problems come back

    written = collect.write_tables(spec, spec.output_path, report=True)

    names = {run.run_id: run.name for run in runs}
    got = {p for p in written.problems if "left out of the report's figures" in p.reason}
    assert len(got) == len(broken), sorted(map(str, written.problems))
    for (run_id, name), reason in broken.items():
        [problem] = [p for p in got if p.run_id == run_id and p.reason.startswith(name)]
        assert reason in problem.reason and problem.name == names[run_id]
    assert written.report_path is not None
    page = _page_text(written.report_path)
    assert all(str(problem) in page for problem in got), "listed in the report too"
    baseline = page.split("/ Baseline</h3>")[1].split("</section>")[0]
    assert "Training curves of 2 run(s)" in baseline
    assert "Confusion matrix (test), summed over 2 run(s)" in baseline
    assert "Per-class F1, mean over 2 run(s)" in baseline
    assert "info.num_classes" in page, "split facts from the next run's split.json"


def test_a_class_listed_twice_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    """Two rows of one class could not be summed or averaged (pandas refused the duplicate index)."""
    spec, runs = report_fixture(tmp_path)
    (run, path), *_ = _baseline(spec, runs)
    rows = [{"class": "0", "precision": 0.8, "recall": 0.8, "f1": 0.5, "support": 9}] * 2
    write_csv(path / "per_class.csv", rows)

    written = collect.write_tables(spec, spec.output_path, report=True)

    reasons = [p.reason for p in written.problems if p.run_id == run.run_id]
    assert reasons == ["per_class.csv: class '0' listed twice; left out of the report's figures"]
    assert written.report_path is not None and "Per-class F1, mean over 2 run(s)" in _page_text(written.report_path)


HOSTILE_CLASSES = ["\x1b[31mred\x1b[0m", "rtl\u202eltr", "tab\there", "zero\u200bwidth", "plain"]


def test_class_names_with_control_characters_are_drawn_as_text(tmp_path: Path) -> None:
    """An ESC in a class name leaked `Glyph 27 missing from font` warnings onto stderr and drew boxes."""
    spec, runs = report_fixture(tmp_path)
    for _, path in _baseline(spec, runs):
        write_csv(path / "per_class.csv", [{"class": c, "f1": 0.5, "support": 9} for c in HOSTILE_CLASSES])
        matrix = [{"true": c, **{o: int(c == o) for o in HOSTILE_CLASSES}} for c in HOSTILE_CLASSES]
        write_csv(path / "confusion_matrix.csv", matrix)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = collect.write_tables(spec, spec.output_path, report=True)

    assert written.report_path is not None
    glyphs = [str(w.message) for w in caught if "Glyph" in str(w.message)]
    assert glyphs == []
    assert not written.problems


def _texts(labels: list[object]) -> list[str]:
    return [label.get_text() for label in labels]  # type: ignore[attr-defined]


SHOWN = ["\\x1b[31mred\\x1b[0m", "rtl\\u202eltr", "tab\\x09here", "zero\\u200bwidth", "plain"]


def test_figures_draw_control_characters_escaped() -> None:
    scores = pd.Series([0.1, 0.2, 0.3, 0.4, 0.5], index=HOSTILE_CLASSES)
    bars = figures.bars_figure(scores)
    assert _texts(bars.axes[0].get_yticklabels()) == SHOWN
    frame = pd.DataFrame([[1, 0], [0, 1]], index=HOSTILE_CLASSES[:2], columns=HOSTILE_CLASSES[:2])
    confusion = figures.confusion_figure(frame, 1)
    assert _texts(confusion.axes[0].get_xticklabels()) == SHOWN[:2]
    assert _texts(confusion.axes[0].get_yticklabels()) == SHOWN[:2]
    counts = figures.distribution_figure(pd.Series([5, 4, 3, 2, 1], index=HOSTILE_CLASSES))
    assert _texts(counts.axes[0].get_xticklabels()) == SHOWN
    history = pd.DataFrame({"epoch": [1, 2], "seed": ["0", "0"], "val_\x1btop1": [0.5, 0.6], "train_loss": [1, 0.5]})
    curves = figures_curves.curves_figure(history)
    legend = curves.axes[1].get_legend()
    assert legend is not None and _texts(legend.get_texts()) == ["val_\\x1btop1"]
    ablation = figures.ablation_figure([("Base\x1b[2J", [0.5, 0.6]), ("+ x\u202e", [0.7])], "top-1\x07")
    assert _texts(ablation.axes[0].get_xticklabels()) == ["Base\\x1b[2J\nn=2", "+ x\\u202e\nn=1"]
    assert ablation.axes[0].get_ylabel() == "top-1\\x07"
    ticks = [text.rsplit("\n", 1)[0] for text in _texts(ablation.axes[0].get_xticklabels())]  # the line before n=
    assert not any(re.search(r"[\x00-\x1f\u202e]", text) for text in ticks)
