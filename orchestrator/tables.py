"""Ablation tables: pandas computes every number, Jinja templates only format them.

Model: Table 1 of report 004. Rows are ablation rows in spec order (baseline
first), one column per dataset with `mean ± std (Δ vs baseline)` over seeds,
then GFLOPs and Params (M) with their relative delta to the baseline row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from orchestrator.plan import RunSpec

if TYPE_CHECKING:
    import pandas as pd

TEMPLATES = Path(__file__).parent / "templates"
# (metrics column, header, decimals)
COMPLEXITY = (("complexity.gflops", "GFLOPs", 2), ("complexity.params_m", "Params (M)", 3))


@dataclass(frozen=True)
class Cell:
    """One table cell, all numbers already computed; `n == 0` renders as `-`."""

    mean: float | None
    std: float | None
    n: int
    n_expected: int
    delta: float | None = None
    """Difference to the baseline row, in the cell's unit (absolute) or percent (relative)."""
    relative: bool = False
    """Whether `delta` is a relative change in percent."""
    best: bool = False
    decimals: int = 2


@dataclass
class Table:
    """One rendered table: a backbone's ablation ladder for one metric."""

    title: str
    metric: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def row_label(run: RunSpec) -> str:
    """Table row of a run: its ablation row, plus extra grid axis values when there are any."""
    if not run.axes:
        return run.ablation
    extras = ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in run.axes.items())
    return f"{run.ablation} ({extras})"


def ablation_tables(
    frame: pd.DataFrame, planned: list[RunSpec], metric: str = "test.top1", scale: float = 100.0
) -> list[Table]:
    """One table per backbone from the collected frame and the planned runs (which fix rows and columns)."""
    import pandas as pd

    plan = pd.DataFrame(
        [{"run_id": r.run_id, "backbone": r.backbone, "row": row_label(r), "dataset": r.dataset} for r in planned]
    )
    done = frame[frame["state"] == "completed"] if "state" in frame else frame.iloc[0:0]
    values = [c for c in (metric, *(name for name, _, _ in COMPLEXITY)) if c in done.columns]
    joined = plan.merge(done[["run_id", *values]], on="run_id", how="left")
    return [
        _backbone_table(joined[joined["backbone"] == backbone], backbone, metric, scale)
        for backbone in plan["backbone"].unique()
    ]


def _backbone_table(joined: pd.DataFrame, backbone: str, metric: str, scale: float) -> Table:
    rows = list(dict.fromkeys(joined["row"]))
    datasets = list(dict.fromkeys(joined["dataset"]))
    table = Table(title=backbone, metric=metric, columns=[*datasets, *(label for _, label, _ in COMPLEXITY)])
    scores = {d: _column(joined[joined["dataset"] == d], rows, metric, scale, False, 2) for d in datasets}
    # Complexity depends on the head's class count: report it for the first dataset column.
    first = joined[joined["dataset"] == datasets[0]]
    complexity = [_column(first, rows, name, 1.0, True, decimals) for name, _, decimals in COMPLEXITY]
    complexity = [_enough_decimals(column) for column in complexity]
    for index, row in enumerate(rows):
        cells = [scores[d][index] for d in datasets] + [column[index] for column in complexity]
        table.rows.append((row, cells))
    if len(datasets) > 1:
        table.notes.append(f"GFLOPs and params of the model trained on {datasets[0]} (the head depends on classes).")
    return table


def _column(
    group: pd.DataFrame, rows: list[str], column: str, scale: float, relative: bool, decimals: int
) -> list[Cell]:
    """Cells of one column: mean ± std over seeds, delta to the first row, best mean marked.

    Relative columns (complexity) are the same for every seed: no std, no best.
    """
    stats = []
    for row in rows:
        expected = group[group["row"] == row]
        values = (expected[column].dropna() * scale) if column in expected else expected["run_id"].iloc[0:0]
        n = int(values.count())
        mean = float(values.mean()) if n else None
        std = float(values.std(ddof=1)) if n > 1 and not relative else None
        stats.append((mean, std, n, len(expected)))
    base = stats[0][0] if stats else None
    means = [s[0] for s in stats if s[0] is not None]
    best = max(means) if means and not relative and len(means) > 1 else None
    cells = []
    for index, (mean, std, n, n_expected) in enumerate(stats):
        delta = _delta(mean, base, relative) if index > 0 else None
        is_best = best is not None and mean == best
        cells.append(Cell(mean, std, n, n_expected, delta, relative, is_best, decimals))
    return cells


def _enough_decimals(cells: list[Cell], digits: int = 3) -> list[Cell]:
    """Raise a column's decimals until its smallest value shows `digits` significant digits (tiny models)."""
    values = [abs(c.mean) for c in cells if c.mean]
    if not values:
        return cells
    needed = max(cells[0].decimals, digits - 1 - math.floor(math.log10(min(values))))
    return [replace(c, decimals=needed) for c in cells]


def _delta(value: float | None, base: float | None, relative: bool) -> float | None:
    if value is None or base is None or (relative and base == 0):
        return None
    diff = value - base
    return 100.0 * diff / base if relative else diff


def render(tables: list[Table], fmt: str = "md", context: dict[str, Any] | None = None) -> str:
    """Render tables with the packaged Jinja template of a format (`md`)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.tests["finite"] = lambda x: x is not None and math.isfinite(x)
    return env.get_template(f"table.{fmt}.j2").render(tables=tables, **(context or {}))
