"""The visual report of a sweep: `<root>/report/index.html` with PNGs beside it, no network assets.

Content, from the run folders only: the sweep's tables, then per cell (backbone,
dataset, ablation row, extra axes) the training curves of every seed (history.csv),
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

from orchestrator.results import tables
from orchestrator.sweep.spec import SweepSpec, TableSpec
from trainers import rundir

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

REPORT_DIR = "report"
INDEX = "index.html"
IMG_DIR = "img"
# Name fragments of the CSV tables a run writes beside metrics.json (trainers/metrics.py).
CONFUSION = "confusion"  # confusion_matrix.csv, confusion_matrix_super.csv, per_label_confusion.csv
PER_CLASS = ("per_class", "per_label")
SPLIT_FACTS = (rundir.SPLIT,)
# Axis-tick labels stop being readable beyond these class counts.
MAX_TICK_LABELS = 40
MAX_ANNOTATED = 15
MAX_BARS = 50
DPI = 90


@dataclass
class Plot:
    """One image of the report: file name (under img/) and caption."""

    file: str
    caption: str


@dataclass
class CellReport:
    """One cell's section: its runs and figures."""

    anchor: str
    title: str
    runs: list[dict[str, Any]]
    """{'name', 'state', 'seed', 'run_id'} of every planned run of the cell."""
    figures: list[Plot] = field(default_factory=list)


@dataclass
class DatasetReport:
    """One dataset's summary."""

    anchor: str
    name: str
    facts: list[tuple[str, str]]
    figures: list[Plot] = field(default_factory=list)


def write_report(
    spec: SweepSpec,
    root: Path,
    joined: pd.DataFrame,
    built: list[tuple[TableSpec, list[tables.Table]]],
    context: dict[str, Any],
) -> Path:
    """Write `<root>/report/index.html` and its images; returns the index path."""
    out = root / REPORT_DIR
    img = out / IMG_DIR
    img.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    cells = [_cell_report(spec, key, part, img, written) for key, part in _cells(joined, spec)]
    datasets = [_dataset_report(name, part, img, written) for name, part in _by_dataset(joined)]
    for stale in img.glob("*.png"):
        if stale.name not in written:
            stale.unlink()
    states = joined["state"].fillna("missing").value_counts() if "state" in joined.columns else None
    counts = ", ".join(f"{n} {state}" for state, n in states.items()) if states is not None else ""
    html = (
        tables.environment()
        .get_template("report.html.j2")
        .render(
            tables=[t for _, group in built for t in group],
            cells=cells,
            datasets=datasets,
            counts=counts,
            n_runs=len(joined),
            generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            **context,
        )
    )
    path = out / INDEX
    rundir.write_text(path, html)
    return path


def _cells(joined: pd.DataFrame, spec: SweepSpec) -> list[tuple[tuple[str, ...], pd.DataFrame]]:
    """Planned runs grouped into cells (seeds together), in plan order."""
    keys = ["backbone", "dataset", "ablation", *tables.axis_dims(spec)]
    ordered = joined.sort_values("order", kind="stable")
    groups = ordered.groupby(keys, sort=False)
    return sorted(
        ((tuple(str(v) for v in key), part) for key, part in groups),
        key=lambda item: int(item[1]["order"].min()),
    )


def _by_dataset(joined: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    ordered = joined.sort_values("order", kind="stable")
    return [(str(name), part) for name, part in ordered.groupby("dataset", sort=False)]


def _run_dirs(part: pd.DataFrame, states: tuple[str, ...] = ("completed",)) -> list[tuple[str, Path]]:
    """(seed, run folder) of the cell's runs in the given states."""
    if "path" not in part.columns or "state" not in part.columns:
        return []
    rows = part[part["state"].isin(states) & part["path"].notna()]
    return [(str(seed), Path(str(path))) for seed, path in zip(rows["seed"], rows["path"], strict=True)]


def _cell_report(spec: SweepSpec, key: tuple[str, ...], part: pd.DataFrame, img: Path, written: set[str]) -> CellReport:
    axes = tables.axis_dims(spec)
    backbone, dataset, ablation, *axis_values = key
    extras = ", ".join(f"{tables.axis_short(a)}={v}" for a, v in zip(axes, axis_values, strict=True))
    title = f"{backbone} / {dataset} / {ablation}" + (f" ({extras})" if extras else "")
    index = int(part["order"].min())
    stem = f"{index:04d}-{tables.slug(title)[:80]}"
    runs = [
        {
            "name": str(row.get("name") or ""),
            "state": str(row.get("state") if isinstance(row.get("state"), str) else "missing"),
            "seed": str(row["seed"]),
            "run_id": str(row["run_id"]),
        }
        for _, row in part.iterrows()
    ]
    cell = CellReport(anchor=f"cell-{tables.slug(stem)}", title=title, runs=runs)
    # Curves of running runs too: a half-trained run's history is worth seeing.
    histories = _histories(_run_dirs(part, ("completed", "running", "failed")))
    if histories:
        caption = (
            f"Training curves of {len(histories)} run(s), one colour per seed: "
            "loss (train solid, validation dashed) and validation metrics"
        )
        cell.figures.append(_save(_curves_figure(histories), img, f"{stem}-curves.png", written, caption))
    finished = _run_dirs(part)
    for name, matrix in _confusions(finished):
        label = name.replace("confusion_matrix", "").replace(CONFUSION, "").strip("_").replace("_", " ") or "test"
        figure = _confusion_figure(matrix, len(finished))
        caption = f"Confusion matrix ({label}), summed over {len(finished)} run(s), rows normalised"
        cell.figures.append(_save(figure, img, f"{stem}-{tables.slug(name)}.png", written, caption))
    for name, scores in _per_class_f1(finished):
        level = name.replace("per_class", "").replace("per_label", "").strip("_").replace("_", " ")
        kind = "label" if "label" in name else "class"
        caption = f"Per-{kind} F1{f' ({level})' if level else ''}, mean over {len(finished)} run(s)"
        if len(scores) > MAX_BARS:
            caption += f"; the {MAX_BARS // 2} lowest and highest of {len(scores)}"
        cell.figures.append(_save(_bars_figure(scores), img, f"{stem}-{tables.slug(name)}-f1.png", written, caption))
    return cell


def _dataset_report(name: str, part: pd.DataFrame, img: Path, written: set[str]) -> DatasetReport:
    report = DatasetReport(anchor=f"dataset-{tables.slug(name)}", name=name, facts=[])
    finished = _run_dirs(part)
    for _, path in finished[:1]:
        for file in SPLIT_FACTS:
            data = rundir.read_json(path / file)
            if data:
                report.facts.extend((k, _short(v)) for k, v in _flat(data).items())
                break
    counts = _class_support(finished[:1])
    if counts is not None and len(counts):
        total = int(counts.sum())
        report.facts.append(("test images (from per-class support)", str(total)))
        report.facts.append(("classes", str(len(counts))))
        report.facts.append(
            ("images per class: min / median / max", f"{counts.min()} / {counts.median():g} / {counts.max()}")
        )
        figure = _distribution_figure(counts)
        caption = "Test-split class distribution (count and share of images)"
        report.figures.append(_save(figure, img, f"dataset-{tables.slug(name)}-classes.png", written, caption))
    return report


# ---------------------------------------------------------------------------- reading run files


def _histories(dirs: list[tuple[str, Path]]) -> list[tuple[str, pd.DataFrame]]:
    import pandas as pd

    out = []
    for seed, path in dirs:
        file = path / rundir.HISTORY
        if file.is_file():
            frame = pd.read_csv(file)
            if not frame.empty and "epoch" in frame.columns:
                out.append((seed, frame))
    return out


def _tables_named(path: Path, fragment: str) -> dict[str, Path]:
    """CSV tables of a run folder whose name contains `fragment` (name without .csv -> path)."""
    found = {}
    for file in sorted(path.rglob(f"*{fragment}*.csv")):
        if rundir.CHECKPOINTS in file.relative_to(path).parts:
            continue
        found[file.stem] = file
    # The test split when the run also wrote validation tables.
    test = {k: v for k, v in found.items() if "val" not in k.split("_")}
    return test or found


def _confusions(dirs: list[tuple[str, Path]]) -> list[tuple[str, pd.DataFrame]]:
    """Confusion matrices by table name, summed over runs (class names as index and columns)."""
    import pandas as pd

    sums: dict[str, pd.DataFrame] = {}
    for _, path in dirs:
        for name, file in _tables_named(path, CONFUSION).items():
            frame = pd.read_csv(file)
            if frame.empty:
                continue
            frame = frame.set_index(frame.columns[0])
            frame = frame.apply(pd.to_numeric, errors="coerce").fillna(0)
            sums[name] = sums[name].add(frame, fill_value=0) if name in sums else frame
    return sorted(sums.items(), key=_level_order)


def _per_class_f1(dirs: list[tuple[str, Path]]) -> list[tuple[str, pd.Series]]:
    """Per-class (or per-label) F1 by table name, mean over runs, in class order."""
    import pandas as pd

    values: dict[str, list[pd.Series]] = {}
    for _, path in dirs:
        for fragment in PER_CLASS:
            for name, file in _tables_named(path, fragment).items():
                if CONFUSION in name:
                    continue
                frame = pd.read_csv(file)
                if "f1" not in frame.columns or frame.empty:
                    continue
                values.setdefault(name, []).append(frame.set_index(frame.columns[0])["f1"].astype(float))
    ordered = sorted(values.items(), key=_level_order)
    return [(name, pd.concat(series, axis=1).mean(axis=1)) for name, series in ordered]


def _level_order(item: tuple[str, Any]) -> tuple[bool, str]:
    """Tables of the super level before the sub level, then by name."""
    return ("super" not in item[0], item[0])


def _class_support(dirs: list[tuple[str, Path]]) -> pd.Series | None:
    import pandas as pd

    for _, path in dirs:
        for fragment in PER_CLASS:
            for name, file in _tables_named(path, fragment).items():
                if CONFUSION in name:
                    continue
                frame = pd.read_csv(file)
                if "support" in frame.columns and not frame.empty:
                    return frame.set_index(frame.columns[0])["support"].astype(int)
    return None


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------- figures


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def _save(figure: Figure, img: Path, name: str, written: set[str], caption: str) -> Plot:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    with rundir.atomic_open(img / name) as handle:
        handle.write(buffer.getvalue())
    written.add(name)
    return Plot(f"{IMG_DIR}/{name}", caption)


def _curves_figure(histories: list[tuple[str, pd.DataFrame]]) -> Figure:
    """Loss (train solid, val dashed) and validation metrics per epoch, one colour per seed."""
    figure = _figure(10, 3.4)
    loss_ax, metric_ax = figure.subplots(1, 2)
    colors = [f"C{i % 10}" for i in range(len(histories))]
    metric_names: list[str] = []
    for (_, frame), _color in zip(histories, colors, strict=True):
        metric_names += [c for c in frame.columns if c.startswith("val_") and c != "val_loss"]
    metric_names = list(dict.fromkeys(metric_names))
    styles = ["-", "--", ":", "-."]
    for (seed, frame), color in zip(histories, colors, strict=True):
        epoch = frame["epoch"]
        for column, style in (("train_loss", "-"), ("val_loss", "--")):
            if column in frame.columns and frame[column].notna().any():
                loss_ax.plot(epoch, frame[column], style, color=color, marker=".", label=f"{column} s{seed}")
        for index, column in enumerate(metric_names):
            if column in frame.columns and frame[column].notna().any():
                style = styles[index % len(styles)]
                metric_ax.plot(epoch, frame[column], style, color=color, marker=".", label=f"{column} s{seed}")
    loss_ax.set(title="loss", xlabel="epoch")
    metric_ax.set(title="validation metrics", xlabel="epoch")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7, ncol=2 if len(histories) > 2 else 1)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return figure


def _confusion_figure(matrix: pd.DataFrame, n_runs: int) -> Figure:
    """Row-normalised heatmap (recall on the diagonal); counts written in small matrices."""
    n_rows, n_cols = matrix.shape
    side = min(9.0, max(3.5, 0.32 * max(n_rows, n_cols) + 1.5))
    figure = _figure(side + 1.0, side)
    ax = figure.subplots()
    totals = matrix.sum(axis=1).replace(0, 1)
    shares = matrix.div(totals, axis=0)
    image = ax.imshow(shares.to_numpy(dtype=float), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    figure.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    if max(n_rows, n_cols) <= MAX_TICK_LABELS:
        ax.set_xticks(range(n_cols), [str(c) for c in matrix.columns], rotation=90, fontsize=7)
        ax.set_yticks(range(n_rows), [str(i) for i in matrix.index], fontsize=7)
    if max(n_rows, n_cols) <= MAX_ANNOTATED:
        values = matrix.to_numpy()
        shares_np = shares.to_numpy(dtype=float)
        for i in range(n_rows):
            for j in range(n_cols):
                color = "white" if shares_np[i, j] > 0.6 else "black"
                ax.text(j, i, f"{values[i, j]:g}", ha="center", va="center", fontsize=7, color=color)
    outcomes = [str(c) for c in matrix.columns] == ["tn", "fp", "fn", "tp"]
    if outcomes:  # multilabel: one row per label, its test images by outcome
        ax.set(xlabel="outcome", ylabel="label")
        image.colorbar.set_label("share of the test images")  # type: ignore[union-attr]
    else:
        ax.set(xlabel="predicted", ylabel="true")
    return figure


def _bars_figure(scores: pd.Series) -> Figure:
    """Horizontal F1 bars, worst at the top; only the extremes when there are many classes."""
    import pandas as pd

    ordered = scores.sort_values()
    if len(ordered) > MAX_BARS:
        ordered = pd.concat([ordered.head(MAX_BARS // 2), ordered.tail(MAX_BARS // 2)])
    height = max(2.0, 0.22 * len(ordered) + 0.8)
    figure = _figure(5.5, height)
    ax = figure.subplots()
    labels = [str(i) for i in ordered.index]
    ax.barh(range(len(ordered)), ordered.to_numpy(dtype=float), color="C0")
    ax.set_yticks(range(len(ordered)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="F1")
    ax.grid(axis="x", alpha=0.3)
    return figure


def _distribution_figure(counts: pd.Series) -> Figure:
    """Images per class, sorted, with each class's share of the split."""
    ordered = counts.sort_values(ascending=False)
    if len(ordered) > MAX_BARS:
        ordered = ordered.head(MAX_BARS)
    figure = _figure(max(5.0, 0.25 * len(ordered) + 1.5), 3.2)
    ax = figure.subplots()
    ax.bar(range(len(ordered)), ordered.to_numpy(dtype=float), color="C2")
    ticks = [str(i) for i in ordered.index] if len(ordered) <= MAX_TICK_LABELS else []
    if ticks:
        ax.set_xticks(range(len(ordered)), ticks, rotation=90, fontsize=7)
    ax.set(ylabel="images")
    total = float(counts.sum()) or 1.0

    def to_share(x: Any) -> Any:
        return x / total * 100.0

    def from_share(x: Any) -> Any:
        return x * total / 100.0

    share = ax.secondary_yaxis("right", functions=(to_share, from_share))
    share.set_ylabel("% of split")
    return figure
