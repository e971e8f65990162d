"""Cell numbers from the joined frame: mean, std and counts over seeds, deltas, best marks, complexity."""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from orchestrator.results import stats
from orchestrator.results.adaptive import STOP_COLUMN
from orchestrator.results.join import COMPLEXITY
from orchestrator.results.labels import decimals_for, key_text_columns
from orchestrator.results.layout import Layout, rank_key
from orchestrator.results.model import BUDGET_MARK, Cell
from orchestrator.results.stats import Comparison
from orchestrator.sweep.budget import exceeds
from orchestrator.sweep.spec import SweepSpec, TableSpec

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class CellData:
    """The finished values of one cell (seed -> value), its planned run count and its broken runs."""

    values: dict[str, float]
    n_expected: int
    broken: int
    stop: str | None = None
    """Adaptive seeds: how the cell stopped (None for a fixed grid)."""

    @property
    def mean(self) -> float | None:
        """Mean over seeds (None when no value)."""
        return statistics.fmean(self.values.values()) if self.values else None

    @functools.cached_property  # asked per table cell and again for the table's noise note
    def std(self) -> float | None:
        """Sample standard deviation over seeds (ddof=1; None below 2 values)."""
        return statistics.stdev(self.values.values()) if len(self.values) > 1 else None


def cell_data(part: pd.DataFrame, keys: list[str]) -> dict[tuple[str, ...], CellData]:
    """Every cell's values by seed. Seeds repeated within a cell (a pooled dimension) keep every value
    under a per-run key, so such cells compare unpaired."""
    if not keys:
        part = part.assign(_all="")
        keys = ["_all"]
    # Columns once, then each cell by its rows' positions: a table of 1,000 cells spent 0.7 s in
    # a frame per cell (the cells in groupby's order: that of their first row).
    value = part["value"].to_numpy(dtype=float)
    seed = [str(s) for s in part["seed"].tolist()]
    broken = part["broken"].to_numpy(dtype=bool)
    stop = part[STOP_COLUMN] if STOP_COLUMN in part.columns else None
    stop_text = [str(v) for v in stop.tolist()] if stop is not None else []
    stop_set = stop.notna().to_numpy() if stop is not None else None
    cells = sorted(part.groupby(keys, sort=False).indices.items(), key=lambda item: int(item[1][0]))
    out = {}
    for key, rows in cells:
        key_t = tuple(str(v) for v in key) if isinstance(key, tuple) else (str(key),)
        done = [int(i) for i in rows if not math.isnan(value[i])]
        seeds = [seed[i] for i in done]
        if len(set(seeds)) < len(seeds):  # keys of this cell alone: two such cells shared `0#0` and paired by position
            seeds = [f"{s}#{n}#{'/'.join(key_t)}" for n, s in enumerate(seeds)]
        values = {s: float(value[i]) for s, i in zip(seeds, done, strict=True)}
        stops = [stop_text[i] for i in rows if stop_set[i]] if stop_set is not None else []
        out[() if keys == ["_all"] else key_t] = CellData(
            values, len(rows), int(broken[rows].sum()), stops[0] if stops else None
        )
    return out


def score_cells(
    data: dict[tuple[str, ...], CellData],
    row_keys: list[tuple[str, ...]],
    col_keys: list[tuple[str, ...]],
    row_dims: list[str],
    col_dims: list[str],
    table: TableSpec,
    baseline: str,
    memo: stats.Memo | None = None,
) -> tuple[dict[tuple[tuple[str, ...], tuple[str, ...]], Cell], list[tuple[tuple[str, ...], Comparison]]]:
    """Score cells with their delta against the baseline cell: interval and Holm-adjusted p-value
    (`memo`: stats.compare's, shared with mark_best); and each comparison by its cell's key in `data`."""
    empty = CellData({}, 0, 0)
    found: dict[tuple[tuple[str, ...], tuple[str, ...]], Comparison | None] = {}
    for rk in row_keys:
        for ck in col_keys:
            base = baseline_key(rk, ck, row_dims, col_dims, baseline)
            if table.delta and base is not None:
                base_values = data.get((*base[0], *base[1]), empty).values
                cell = data.get((*rk, *ck), empty)
                if cell.stop is not None and set(cell.values) <= set(base_values):
                    # Adaptive seeds: the baseline ran on for other rows; pair on this row's seeds.
                    base_values = {seed: base_values[seed] for seed in cell.values}
                found[(rk, ck)] = stats.compare(cell.values, base_values, memo)
    keys = [key for key, comparison in found.items() if comparison is not None]
    adjusted = dict(zip(keys, stats.holm([found[k].p for k in keys]), strict=True))  # type: ignore[union-attr]
    cells = {}
    for rk in row_keys:
        for ck in col_keys:
            cell = data.get((*rk, *ck), empty)
            c = found.get((rk, ck))
            cells[(rk, ck)] = Cell(
                mean=cell.mean,
                std=cell.std,
                n=len(cell.values),
                n_expected=cell.n_expected,
                delta=c.delta if c else None,
                decimals=table.decimals,
                low=c.low if c else None,
                high=c.high if c else None,
                p=c.p if c else None,
                p_adjusted=adjusted.get((rk, ck)),
                broken=cell.broken,
                stop=cell.stop,
            )
    return cells, [((*rk, *ck), c) for (rk, ck), c in found.items() if c is not None]


def baseline_key(
    rk: tuple[str, ...], ck: tuple[str, ...], row_dims: list[str], col_dims: list[str], baseline: str
) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The baseline cell of a cell: the same coordinates with ablation := baseline row.

    None for the baseline cell itself and when ablation is not laid out in rows or columns.
    """
    if "ablation" in row_dims:
        i = row_dims.index("ablation")
        if rk[i] == baseline:
            return None
        return ((*rk[:i], baseline, *rk[i + 1 :]), ck)
    if "ablation" in col_dims:
        i = col_dims.index("ablation")
        if ck[i] == baseline:
            return None
        return (rk, (*ck[:i], baseline, *ck[i + 1 :]))
    return None


def mark_best(
    cells: dict[tuple[tuple[str, ...], tuple[str, ...]], Cell],
    data: dict[tuple[str, ...], CellData],
    row_keys: list[tuple[str, ...]],
    col_keys: list[tuple[str, ...]],
    n_group_dims: int,
    table: TableSpec,
    memo: stats.Memo | None = None,
) -> None:
    """Bold the best mean of each column within each row group, only when it is significantly better
    than the runner-up (95% interval of their difference excludes 0 and p < ALPHA). `memo`:
    score_cells' comparisons (the runner-up is most often the baseline)."""
    if table.best == "none":
        return
    groups: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for rk in row_keys:
        groups.setdefault(rk[:n_group_dims], []).append(rk)
    for rows in groups.values():
        for ck in col_keys:
            shown = {rk: round(c.mean, table.decimals) for rk in rows if (c := cells[(rk, ck)]).mean is not None}
            ranked = sorted(shown, key=lambda rk: shown[rk], reverse=table.best == "max")
            if len(ranked) < 2 or shown[ranked[0]] == shown[ranked[1]]:
                continue  # nothing to compare, or a tie: nothing stands out
            best, runner_up = ranked[0], ranked[1]
            comparison = stats.compare(data[(*best, *ck)].values, data[(*runner_up, *ck)].values, memo)
            # Paired on the shared seeds, the best mean can lose to the runner-up (its extra seeds
            # lifted its mean): only a difference in the column's direction earns the bold.
            ahead = comparison is not None and (comparison.delta > 0 if table.best == "max" else comparison.delta < 0)
            if comparison is not None and ahead and _significant(comparison):
                cells[(best, ck)] = replace(cells[(best, ck)], best=True)


def _significant(comparison: Comparison) -> bool:
    """The interval excludes 0 and the test rejects at ALPHA. Paired differences without spread have no
    interval (stats.paired), but every seed moved the same nonzero way: the exact test alone decides."""
    excludes_zero = comparison.has_interval and not comparison.within_noise
    flat = comparison.paired and comparison.spread == 0.0 and comparison.delta != 0.0
    return (excludes_zero or flat) and comparison.p is not None and comparison.p < stats.ALPHA


def complexity_cells(
    part: pd.DataFrame,
    row_keys: list[tuple[str, ...]],
    row_dims: list[str],
    layout: Layout,
    ranks: dict[str, dict[str, int]],
    spec: SweepSpec,
) -> tuple[dict[tuple[str, ...], list[Cell]], list[str]]:
    """GFLOPs and params per row (one value per model, not per seed), relative delta, budget marks.

    A row's models may differ across columns (the head depends on the class count):
    the first column that has a value is shown, and a note says which.
    """
    values, shown_from, differs, by_column = _complexity_values(part, row_keys, row_dims, layout, ranks)
    baseline = next(iter(spec.ablations))
    budget = spec.budget
    limits = (budget.max_gflops_increase_pct, budget.max_params_increase_pct) if budget else (None, None)
    columns: list[list[Cell]] = [[] for _ in COMPLEXITY]
    for rk in row_keys:
        base = baseline_key(rk, (), row_dims, [], baseline)
        # The baseline's model in the column this row's values come from: another column's model (another
        # dataset's head) is no baseline for it; none there, no delta.
        base_values = by_column.get(base[0], {}).get(by_column.get(rk, {}).get(SHOWN, ())) if base else None
        for index, (_, _, decimals) in enumerate(COMPLEXITY):
            mean = values[rk][index]
            delta = difference(mean, base_values[index] if base_values else None, True)
            limit = limits[index]
            over = exceeds(delta, limit)
            cell = Cell(
                mean=mean,
                std=None,
                n=int(mean is not None),
                n_expected=1,
                delta=delta,
                relative=True,
                decimals=decimals,
                over_budget=over,
            )
            columns[index].append(cell)
    fixed = [enough_decimals(column) for column in columns]
    out = {rk: [column[i] for column in fixed] for i, rk in enumerate(row_keys)}
    over = any(c.over_budget for column in fixed for c in column)
    return out, _complexity_notes(sorted(shown_from) if differs else [], limits if over else None)


def _complexity_notes(shown_from: list[str], limits: tuple[float | None, float | None] | None) -> list[str]:
    """Which column's model the complexity comes from (when heads differ), and the budget mark."""
    notes = []
    if shown_from:
        notes.append(
            f"GFLOPs and params are those of the model trained on {', '.join(shown_from)} "
            "(the head depends on the class count)."
        )
    if limits is not None:
        parts = []
        if limits[0] is not None:
            parts.append(f"GFLOPs more than {limits[0]:g}% above")
        if limits[1] is not None:
            parts.append(f"params more than {limits[1]:g}% above")
        notes.append(f"{BUDGET_MARK} over the compute budget: {' or '.join(parts)} the baseline row.")
    return notes


def _complexity_values(
    part: pd.DataFrame,
    row_keys: list[tuple[str, ...]],
    row_dims: list[str],
    layout: Layout,
    ranks: dict[str, dict[str, int]],
) -> tuple[dict[tuple[str, ...], list[float | None]], set[str], bool, dict[tuple[str, ...], dict[Any, Any]]]:
    """(GFLOPs, params) per row from its first column with values; the columns shown; whether others
    differ; and per row, its values by column key (under SHOWN: the key of the column shown)."""
    col_dims = [d for d in layout.columns if d != "metric"]
    by_row = _complexity_by_cell(part[part["metric"] == part["metric"].iloc[0]], row_dims, col_dims)
    values: dict[tuple[str, ...], list[float | None]] = {}
    by_column: dict[tuple[str, ...], dict[Any, Any]] = {}
    shown_from: set[str] = set()
    differs = False
    for rk in row_keys:
        per_column = sorted(by_row.get(rk, []), key=lambda item: rank_key(item[0], col_dims, ranks))
        if not per_column:
            values[rk] = [None for _ in COMPLEXITY]
            continue
        key, shown = per_column[0]
        values[rk] = list(shown)
        by_column[rk] = {**dict(per_column), SHOWN: key}
        shown_from.add(key_text_columns(col_dims, key))
        differs |= any(not _close(a, b) for _, other in per_column for a, b in zip(other, shown, strict=True))
    return values, shown_from, differs, by_column


SHOWN = "shown"
"""Key, in a row's complexity by column, of the column key its shown values come from."""


def _complexity_by_cell(
    runs: pd.DataFrame, row_dims: list[str], col_dims: list[str]
) -> dict[tuple[str, ...], list[tuple[tuple[str, ...], list[float]]]]:
    """Per row key, (column key, mean GFLOPs and params) of each of its cells with a value of both,
    in the order of their first run: one groupby for the table (a frame per row and column was 3 s
    of a table of 1,000 rows)."""
    import pandas as pd

    names = [column for column, _, _ in COMPLEXITY]
    keys = [*row_dims, *col_dims]
    numbers = runs[names].apply(pd.to_numeric, errors="coerce").assign(**{k: runs[k] for k in keys}, _all="")
    grouped = numbers.groupby(keys or ["_all"], sort=False)[names]
    means, counts = grouped.mean(), grouped.count()
    out: dict[tuple[str, ...], list[tuple[tuple[str, ...], list[float]]]] = {}
    for key, mean, count in zip(means.index, means.to_numpy(dtype=float), counts.to_numpy(), strict=True):
        if not (count > 0).all():
            continue  # a column without a value in this cell
        key_t = tuple(str(v) for v in key) if isinstance(key, tuple) else (str(key),)
        cell_key = key_t[len(row_dims) :] if keys else ()
        out.setdefault(key_t[: len(row_dims)], []).append((cell_key, [float(v) for v in mean]))
    return out


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def enough_decimals(cells: list[Cell], digits: int = 3) -> list[Cell]:
    """Raise a column's decimals until its smallest value shows `digits` significant digits (tiny models)."""
    values = [abs(c.mean) for c in cells if c.mean]
    if not values:
        return cells
    needed = decimals_for(min(values), cells[0].decimals, digits)
    return [replace(c, decimals=needed) for c in cells]


SAME_MODEL_REL_TOL = 1e-12
"""Complexity values this close are one model: the mean of 3 runs' and of 2 runs' identical GFLOPs
differ in the last bits (pandas sums pairwise), and read `(+0.00%)` on a row with the baseline's model."""


def difference(value: float | None, base: float | None, relative: bool) -> float | None:
    """`value - base`, or its change in percent of `base` (relative: 0 for one model's float noise)."""
    if value is None or base is None or (relative and base == 0):
        return None
    if relative and math.isclose(value, base, rel_tol=SAME_MODEL_REL_TOL):
        return 0.0
    diff = value - base
    return 100.0 * diff / base if relative else diff
