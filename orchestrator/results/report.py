"""The visual report of a sweep: `<root>/report/index.html` with PNGs beside it, no network assets.

Content, from DataFrames (run folders read by results.reader, results.run_files): the sweep's
tables, then per cell (backbone, dataset, ablation row, extra axes) the training curves of every seed (history.csv),
the confusion matrix summed over seeds and the per-class F1 (the CSV tables the
trainer writes beside metrics.json), and per dataset a summary (split facts and the
class distribution of the test split). pandas computes, matplotlib draws, the Jinja
template lays out.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.results import figures, figures_ablation, figures_curves, figures_history, run_files
from orchestrator.results.figures_files import IMG_DIR as IMG_DIR  # collect names the image folder by it
from orchestrator.results.figures_files import Plot
from orchestrator.results.figures_files import save as _save
from orchestrator.results.labels import axis_dims, axis_short
from orchestrator.results.model import Table
from orchestrator.results.outputs import Outputs
from orchestrator.results.render import environment, slug
from orchestrator.results.run_files import RunDir
from orchestrator.store.run_states import Problem
from orchestrator.sweep import forked
from orchestrator.sweep.spec import SpecError, SweepSpec, TableSpec

if TYPE_CHECKING:
    import pandas as pd

REPORT_DIR = "report"
INDEX = "index.html"


@dataclass
class CellReport:
    """One cell's section: its runs and figures."""

    anchor: str
    title: str
    runs: list[dict[str, Any]]
    """{'name', 'state', 'seed', 'run_id'} of the cell's first MAX_RUNS_LISTED planned runs."""
    figures: list[Plot] = field(default_factory=list)
    n_runs: int = 0
    """Planned runs of the cell (more than `runs` lists when capped)."""
    note: str | None = None
    """Why the cell has no figures although it has finished runs (the cap)."""


@dataclass
class DatasetReport:
    """One dataset's summary."""

    anchor: str
    name: str
    facts: list[tuple[str, str]]
    figures: list[Plot] = field(default_factory=list)


MAX_CELLS_WITH_FIGURES = 60
"""Cells that get figures; the others are listed (the tables hold every cell)."""
MAX_RUNS_PER_FIGURE = 50
"""Runs read per cell figure (curves, confusion, per-class): the first ones in plan order."""
MAX_RUNS_LISTED = 50
"""Runs listed in a cell's section."""


def write_report(
    spec: SweepSpec,
    root: Path,
    joined: pd.DataFrame,
    built: list[tuple[TableSpec, list[Table]]],
    context: dict[str, Any],
    problems: list[str] | None = None,
    outputs: Outputs | None = None,
) -> tuple[Path, list[Problem]]:
    """Write `<root>/report/index.html` and its images; returns the index path and the run files its
    figures could not use (by run; listed on the page after `problems`, and `collect` prints them).
    `outputs` checks and records every write (only inside `root`, never through a symlink, see
    results/outputs.py)."""
    outputs = outputs or Outputs(root)
    out = outputs.folder(REPORT_DIR)
    img = outputs.folder(REPORT_DIR, IMG_DIR)
    foreign = sorted(p.name for p in img.iterdir() if p.name.endswith(".png") and not outputs.ours(p))
    if foreign:  # a figure of ours would replace it
        raise SpecError(f"{img}: {foreign[0]} was not written by collect; move it aside to write the report here")
    written: set[str] = set()
    found: list[Problem] = []
    groups = _cells(joined, spec)
    cells = [_cell_report(spec, key, part) for key, part in groups]
    _add_cell_figures(spec, groups, cells, img, written, found)
    notes = []
    if len(groups) > MAX_CELLS_WITH_FIGURES:
        notes.append(
            f"Figures for the first {MAX_CELLS_WITH_FIGURES} of {len(groups)} cells; the tables hold every cell."
        )
    ablations = figures_ablation.ablation_plots(spec, joined, img, written, notes)
    ablations += figures_ablation.rounds_plot(spec, root, img, written)
    datasets = [
        _dataset_report(i, name, part, img, written, found) for i, (name, part) in enumerate(_by_dataset(joined))
    ]
    found = list(dict.fromkeys(found))  # a run's per-class table is read for its cell and its dataset
    for name in written:
        outputs.record(img / name, (img / name).read_bytes())
    outputs.remove_stale(img, ".png", written)  # only figures collect wrote itself
    states = joined["state"].fillna("missing").value_counts() if "state" in joined.columns else None
    counts = ", ".join(f"{n} {state}" for state, n in states.items()) if states is not None else ""
    html = (
        environment()
        .get_template("report.html.j2")
        .render(
            tables=[t for _, group in built for t in group],
            cells=cells,
            datasets=datasets,
            ablations=ablations,
            notes=notes,
            problems=[*(problems or []), *(str(p) for p in found)],
            counts=counts,
            n_runs=len(joined),
            generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            **context,
        )
    )
    path = out / INDEX
    outputs.write_text(path, html)
    return path, found


def _cells(joined: pd.DataFrame, spec: SweepSpec) -> list[tuple[tuple[str, ...], pd.DataFrame]]:
    """Planned runs grouped into cells (seeds together), in plan order."""
    keys = ["backbone", "dataset", "ablation", *axis_dims(spec)]
    ordered = joined.sort_values("order", kind="stable")
    groups = ordered.groupby(keys, sort=False)
    return sorted(
        ((tuple(str(v) for v in key), part) for key, part in groups),
        key=lambda item: int(item[1]["order"].min()),
    )


def _by_dataset(joined: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    ordered = joined.sort_values("order", kind="stable")
    return [(str(name), part) for name, part in ordered.groupby("dataset", sort=False)]


def _run_dirs(part: pd.DataFrame, states: tuple[str, ...] = ("completed",)) -> list[RunDir]:
    """The folders of the cell's runs in the given states, with their seed, run id and name."""
    if "path" not in part.columns or "state" not in part.columns:
        return []
    rows = part[part["state"].isin(states) & part["path"].notna()]
    names = rows["name"] if "name" in rows.columns else [""] * len(rows)
    columns = zip(rows["seed"], rows["path"], rows["run_id"], names, strict=True)
    return [RunDir(str(seed), Path(str(path)), str(run_id), str(name)) for seed, path, run_id, name in columns]


def _title_stem(spec: SweepSpec, key: tuple[str, ...], part: pd.DataFrame) -> tuple[str, str]:
    """A cell's section title and the stem of its figures' file names (its plan position first)."""
    axes = axis_dims(spec)
    backbone, dataset, ablation, *axis_values = key
    extras = ", ".join(f"{axis_short(a)}={v}" for a, v in zip(axes, axis_values, strict=True))
    title = f"{backbone} / {dataset} / {ablation}" + (f" ({extras})" if extras else "")
    return title, f"{int(part['order'].min()):04d}-{slug(title)[:80]}"


def _cell_report(spec: SweepSpec, key: tuple[str, ...], part: pd.DataFrame) -> CellReport:
    """A cell's section without its figures (_add_cell_figures draws them)."""
    title, stem = _title_stem(spec, key, part)
    runs = [
        {
            "name": str(row.get("name") or ""),
            "state": str(row.get("state") if isinstance(row.get("state"), str) else "missing"),
            "seed": str(row["seed"]),
            "run_id": str(row["run_id"]),
        }
        for _, row in part.head(MAX_RUNS_LISTED).iterrows()
    ]
    return CellReport(anchor=f"cell-{slug(stem)}", title=title, runs=runs, n_runs=len(part))


FIGURES_PARALLEL_FROM = 4
"""Cells with figures from which they are drawn on forked workers (a figure's PNG takes about 0.06 s:
three per cell were most of a report of 60 cells)."""


def _add_cell_figures(
    spec: SweepSpec,
    groups: list[tuple[tuple[str, ...], pd.DataFrame]],
    cells: list[CellReport],
    img: Path,
    written: set[str],
    found: list[Problem],
) -> None:
    """The figures of the first MAX_CELLS_WITH_FIGURES cells, written under `img` (on forked workers,
    in order; each worker writes its own files) and added to `written`, the run files they could not
    use to `found`; the others get a note."""
    figured = min(len(cells), MAX_CELLS_WITH_FIGURES)
    for cell in cells[figured:]:
        cell.note = f"No figures: past the first {MAX_CELLS_WITH_FIGURES} cells."
    scale = _curve_scale(spec)
    jobs = [(part, _title_stem(spec, key, part)[1]) for key, part in groups[:figured]]

    # A position goes to the worker; the frames are there by fork.
    def figures_of(i: int) -> tuple[list[Plot], list[Problem]]:
        return _cell_figures(*jobs[i], img, scale)

    drawn = forked.ForkedMap(figures_of, list(range(figured)), forked.worker_count(figured, FIGURES_PARALLEL_FROM), 1)
    for cell, (plots, problems) in zip(cells[:figured], drawn, strict=True):
        cell.figures = plots
        written.update(Path(plot.file).name for plot in plots)
        found.extend(problems)


def _cell_figures(part: pd.DataFrame, stem: str, img: Path, scale: float = 100.0) -> tuple[list[Plot], list[Problem]]:
    """Curves (mean and band over seeds; fraction metrics times `scale`), confusion matrix and
    per-class F1 of a cell's first runs, and the run files they could not use."""
    written: set[str] = set()
    plots: list[Plot] = []
    found: list[Problem] = []
    curves = _curves_plot(part, stem, img, written, found, scale)
    plots.extend([curves] if curves is not None else [])
    finished = _run_dirs(part)[:MAX_RUNS_PER_FIGURE]
    # Captions count the runs whose table was read: a broken one is left out (and named in `found`).
    for name, matrix, summed in run_files.confusions(finished, found):
        label = (
            name.replace("confusion_matrix", "").replace(run_files.CONFUSION, "").strip("_").replace("_", " ") or "test"
        )
        figure = figures.confusion_figure(matrix, summed)
        caption = f"Confusion matrix ({label}), summed over {summed} run(s), rows normalised"
        plots.append(_save(figure, img, f"{stem}-{slug(name)}.png", written, caption))
    for name, scores, averaged in run_files.per_class_f1(finished, found):
        level = _level(name)
        kind = "label" if "label" in name else "class"
        caption = f"Per-{kind} F1{f' ({level})' if level else ''}, mean over {averaged} run(s)"
        if len(scores) > figures.MAX_BARS:
            caption += f"; the {figures.MAX_BARS // 2} lowest and highest of {len(scores)}"
        plots.append(_save(figures.bars_figure(scores), img, f"{stem}-{slug(name)}-f1.png", written, caption))
    return plots, found


def _curves_plot(
    part: pd.DataFrame, stem: str, img: Path, written: set[str], found: list[Problem], scale: float = 100.0
) -> Plot | None:
    """Training curves of the cell's completed and running runs (a half-trained run's history is worth
    seeing; the caption says how many are running). Failed runs are left out, as from the tables: a
    diverged or crashed run's last epochs pulled the mean and widened the band of the runs reported.
    Fraction metrics are drawn times `scale`, as the tables show them. Memory: figures_history."""
    dirs = _run_dirs(part, ("completed", "running"))[:MAX_RUNS_PER_FIGURE]
    history = figures_history.read_histories(dirs, found)
    if history.empty:
        return None
    n_running = len({run.seed for run in dirs} & set(part["seed"][part["state"] == "running"].astype(str)))
    still = f" ({n_running} still running: later epochs average fewer runs)" if n_running else ""
    caption = (
        f"Training curves of {history.mean['seed'].nunique()} run(s){still}, mean over seeds with the min-max band: "
        "loss (train solid, validation dashed; per level too in a hierarchical run) and validation metrics"
        f"{figures_curves.metric_unit(scale)}"
    )
    return _save(figures_curves.curves_figure(history, scale), img, f"{stem}-curves.png", written, caption)


def _curve_scale(spec: SweepSpec) -> float:
    """The factor the curves draw fraction metrics times: the first table's (100, as %, unless it sets `scale`)."""
    scale = spec.tables[0].scale if spec.tables else None
    return 100.0 if scale is None else float(scale)


def _dataset_report(
    index: int, name: str, part: pd.DataFrame, img: Path, written: set[str], found: list[Problem]
) -> DatasetReport:
    """A dataset's split facts and class distribution, from its first finished run whose files read
    (a broken split.json or per-class table is added to `found` and the next run's is used). `index`
    (its position) keeps its anchor and file apart from a dataset whose name slugs alike."""
    stem = f"dataset-{index:02d}-{slug(name)[:80]}"
    report = DatasetReport(anchor=stem, name=name, facts=[])
    finished = _run_dirs(part)[:MAX_RUNS_PER_FIGURE]
    report.facts.extend((k, _short(v)) for k, v in run_files.split_facts(finished, found).items())
    counts = run_files.class_support(finished, found)
    if counts is not None and len(counts):
        # per_label.csv (indexed by `label`): a label's support counts the test images that have it; an
        # image has several labels or none, so their sum is no image count (split.json's count is).
        multilabel = counts.index.name == "label"
        what, share_of = ("label", "all positive labels") if multilabel else ("class", "the split")
        level, per_level = _counted_level(finished, found, counts)
        of, where = (f" ({level})", f", {level}") if level else ("", "")
        total = int(counts.sum())
        if multilabel:
            report.facts.append(("positive labels in the test split (from per-label support)", str(total)))
        else:
            report.facts.append((f"test images (from per-class support{where})", str(total)))
        report.facts.extend([("classes per level", per_level)] if per_level else [])
        report.facts.append((("labels" if multilabel else "classes") + of, str(len(counts))))
        stats = f"{counts.min()} / {counts.median():g} / {counts.max()}"
        report.facts.append((f"images per {what}{of}: min / median / max", stats))
        figure = figures.distribution_figure(counts, share_of)
        caption = f"Test-split {what} distribution{where} (images per {what} and their share of {share_of})"
        report.figures.append(_save(figure, img, f"{stem}-classes.png", written, caption))
    return report


def _counted_level(finished: list[RunDir], found: list[Problem], counts: pd.Series) -> tuple[str, str]:
    """Of a hierarchical dataset's per-class tables (per_class_super, per_class_sub): the level whose
    classes `counts` (class_support) counts (`sub level`) and the classes per level (`super 3, sub 10`);
    ('', '') for a dataset of one level."""
    levels = [(_level(name), scores) for name, scores, _ in run_files.per_class_f1(finished, found)]
    if not any(level for level, _ in levels):
        return "", ""
    counted = next((level for level, scores in levels if set(counts.index) <= set(scores.index)), "unknown")
    return f"{counted} level", ", ".join(f"{level} {len(scores)}" for level, scores in levels)


def _level(table: str) -> str:
    """The level a per-class table is of: `per_class_super` -> `super`, `per_class` -> ''."""
    return table.replace("per_class", "").replace("per_label", "").strip("_").replace("_", " ")


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
