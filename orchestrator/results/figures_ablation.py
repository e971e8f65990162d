"""The report's ablation figures (one per backbone and dataset) and the adaptive-seeds rounds figure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.results import figures
from orchestrator.results.figures_files import Plot, save
from orchestrator.results.labels import axis_dims, axis_short, key_text, metric_column, metric_label
from orchestrator.results.render import slug
from orchestrator.sweep.spec import SweepSpec

if TYPE_CHECKING:
    import pandas as pd

MAX_ABLATION_FIGURES = 24


def ablation_plots(spec: SweepSpec, joined: pd.DataFrame, img: Path, written: set[str], notes: list[str]) -> list[Plot]:
    """One ablation figure per (backbone, dataset) for the first table's first metric: seeds as dots,
    each row's mean with its interval, its baseline's mean dashed (figures.baseline_marks). A pair
    without a finished run gets no figure but a line in `notes`; a bar cut at 0..100% is captioned."""
    import pandas as pd

    table = spec.tables[0]
    metric = table.metrics[0]
    column = metric_column(metric)
    if column not in joined.columns:
        return []
    label = metric_label(metric, table.scale_of(metric), table.metric_labels)
    values = pd.to_numeric(joined[column], errors="coerce").where(joined["done"]) * table.scale_of(metric)
    frame = joined.assign(_value=values).sort_values("order", kind="stable")
    keys, baseline = ["ablation", *axis_dims(spec)], next(iter(spec.ablations))
    plots: list[Plot] = []
    most_rows = 0
    for (backbone, dataset), part in frame.groupby(["backbone", "dataset"], sort=False):
        if len(plots) == MAX_ABLATION_FIGURES:
            notes.append(f"Ablation figures for the first {MAX_ABLATION_FIGURES} backbone/dataset pairs.")
            break
        cells = {
            tuple(str(v) for v in (key if isinstance(key, tuple) else (key,))): sub["_value"]
            for key, sub in part.groupby(keys, sort=False)
        }
        rows = [(key_text(keys, key), seeds.dropna().tolist()) for key, seeds in cells.items()]
        # Each row's baseline: the baseline row at its grid values, as the tables pair them (baseline_key).
        positions = {key: i for i, key in enumerate(cells)}
        bases = [positions.get((baseline, *key[1:])) for key in cells]
        most_rows = max(most_rows, len(rows))
        if not any(values for _, values in rows):  # a figure of empty rows said it only by its n=0 labels
            notes.append(f"No ablation figure for {backbone} / {dataset}: no run has a finished {label}.")
            continue
        # Its position first: pairs whose names slug alike ("Digits (A)", "digits-a") or alike in their
        # first 80 characters wrote one file, and both figures showed the last pair's values.
        name = f"ablation-{len(plots):02d}-{slug(f'{backbone}-{dataset}-{metric}')[:80]}.png"
        caption = (
            f"{backbone} / {dataset}: {label} per row (n: its finished seeds, of its planned runs where fewer); "
            "dots are seeds, diamonds the mean ± std over seeds as in the tables, "
            + figures.baseline_caption(rows, bases, baseline, [axis_short(a) for a in keys[1:]])
            + _cut_caption(figures.cut_rows(rows, label))
        )
        figure = figures.ablation_figure(rows, label, baselines=bases, planned=[len(v) for v in cells.values()])
        plots.append(save(figure, img, name, written, caption))
    if most_rows > figures.MAX_ABLATION_ROWS:
        notes.append(
            f"Ablation figures show the first {figures.MAX_ABLATION_ROWS} of up to {most_rows} rows; "
            "the tables hold every row."
        )
    return plots


def rounds_plot(spec: SweepSpec, root: Path, img: Path, written: set[str]) -> list[Plot]:
    """Adaptive seeds: how each delta's interval narrowed round by round (from adaptive.json)."""
    from orchestrator.results import adaptive

    if spec.seeds is None or not (root / adaptive.ADAPTIVE_FILE).exists():
        return []
    inf = float("inf")
    rows: dict[str, list[tuple[int, float, float, float]]] = {}
    for h in adaptive.history(root):
        low, high = -inf if h["low"] is None else h["low"], inf if h["high"] is None else h["high"]
        rows.setdefault(str(h["cell"]), []).append((int(h["n"]), float(h["delta"]), low, high))
    if not rows:
        return []
    table = adaptive.rule_table(spec)
    label = f"Δ {metric_label(table.metrics[0], table.scale_of(table.metrics[0]), table.metric_labels)}"
    caption = "Adaptive seeds: each delta's sequential interval after every round it was judged in (adaptive.json)"
    return [save(figures.rounds_figure(list(rows.items()), label), img, "adaptive-rounds.png", written, caption)]


def _cut_caption(rows: list[str]) -> str:
    """Where a row's mean ± std passes the metric's 0..100% range: the bar stops at the range's end."""
    if not rows:
        return ""
    named = ", ".join(figures.label(r) for r in rows[:3]) + (f" and {len(rows) - 3} more" if len(rows) > 3 else "")
    return f"; the ± std bar of {named} is cut at the 0..100% range (the tables give the whole std)"
