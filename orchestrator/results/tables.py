"""Ablation tables: pandas computes every number, Jinja templates only lay them out.

Model: Table 1 of report 004. Rows are ablation rows in spec order (baseline
first), one column per dataset with `mean ± std (Δ vs baseline)` over seeds,
then GFLOPs and Params (M) with their relative delta to the baseline row.

A `tables:` entry of the spec (orchestrator.sweep.spec.TableSpec) picks the metric(s)
and lays the plan's dimensions out: `rows`, `columns`, row `group`s, one table
per `split` value. Dimensions are backbone, dataset, ablation, metric, seed and
every extra grid axis; a dimension left out is pooled with the seeds, which is
only allowed when each cell then holds a single value of it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from orchestrator.sweep import complexity
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SpecError, SweepSpec, TableSpec

if TYPE_CHECKING:
    import pandas as pd

TEMPLATES = Path(__file__).parent / "templates"
# (metrics column, header, decimals)
COMPLEXITY = (("complexity.gflops", "GFLOPs", 2), ("complexity.params_m", "Params (M)", 3))
FIXED_DIMS = ("backbone", "dataset", "ablation", "metric", "seed")
METRIC_LABELS = {
    "top1": "top-1",
    "top5": "top-5",
    "macro_f1": "macro F1",
    "micro_f1": "micro F1",
    "weighted_f1": "weighted F1",
    "macro_precision": "macro precision",
    "macro_recall": "macro recall",
    "micro_precision": "micro precision",
    "micro_recall": "micro recall",
    "exact_match": "exact match",
    "label_accuracy": "per-label accuracy",
    "hamming_accuracy": "per-label accuracy",
    "loss": "loss",
}
LEVEL_LABELS = {"super": "super-class", "sub": "sub-class"}
_SPLITS = ("test", "val")
# Marks a complexity cell over the spec's budget; the table's notes explain it.
BUDGET_MARK = "†"


# ---------------------------------------------------------------------------- table model


@dataclass(frozen=True)
class Cell:
    """One table cell, every number already computed; `n == 0` renders as `-`.

    The `*_text` properties are the numbers as strings (one formatting rule for every
    output format); templates only add markup around them (bold, ±, escaping).
    """

    mean: float | None
    std: float | None
    n: int
    n_expected: int
    delta: float | None = None
    """Difference to the baseline row, in the cell's unit (absolute) or percent (relative)."""
    relative: bool = False
    """Whether `delta` is a relative change in percent (complexity columns)."""
    best: bool = False
    decimals: int = 2
    over_budget: bool = False
    """Complexity cell above the spec's budget."""

    @property
    def empty(self) -> bool:
        """No finished run: rendered as `-`."""
        return self.n == 0 or self.mean is None

    @property
    def mean_text(self) -> str:
        """`89.47`."""
        return "-" if self.mean is None else f"{self.mean:.{self.decimals}f}"

    @property
    def std_text(self) -> str | None:
        """`0.12`, or None for a single value."""
        return None if self.std is None or math.isnan(self.std) else f"{self.std:.{self.decimals}f}"

    @property
    def delta_text(self) -> str | None:
        """`-0.02` or `+0.11%` (relative), or None for the baseline row."""
        if self.delta is None or self.empty:
            return None
        if self.relative:
            # The same model as the baseline row: report 004 prints the bare value.
            if self.delta == 0:
                return None
            return f"{self.delta:+.2f}%"
        return f"{self.delta:+.{self.decimals}f}"

    @property
    def seeds_text(self) -> str | None:
        """`3/5 seeds` when some runs of the cell have not finished."""
        if self.empty or self.relative or self.n >= self.n_expected:
            return None
        return f"{self.n}/{self.n_expected} seeds"

    @property
    def text(self) -> str:
        """Plain text of the cell (CSV, tests): `89.47 ± 0.12 (-0.02) (3/5 seeds)`."""
        if self.empty:
            return "-"
        out = self.mean_text
        if self.std_text is not None:
            out += f" ± {self.std_text}"
        if self.delta_text is not None:
            out += f" ({self.delta_text})"
        if self.seeds_text is not None:
            out += f" ({self.seeds_text})"
        if self.over_budget:
            out += BUDGET_MARK
        return out


@dataclass
class Row:
    """One table row: its label, cells (scores then complexity) and row group."""

    label: str
    cells: list[Cell]
    group: str | None = None
    """Row-group heading this row belongs to (None: no groups)."""
    first_in_group: bool = False
    """The template starts a new group heading before this row."""


@dataclass(frozen=True)
class HeaderSpan:
    """One spanning header above the column headers."""

    label: str
    width: int
    first: int
    last: int


@dataclass
class Table:
    """One rendered table: e.g. a backbone's ablation ladder for one metric."""

    title: str
    row_header: str
    columns: list[str]
    """Header of every cell column (scores, then GFLOPs and Params)."""
    header_groups: list[tuple[str, int]] | None = None
    """Spanning headers above `columns` ((label, span), '' over the row header and complexity)."""
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    name: str = "table"
    """File stem of the table spec this table comes from."""

    @property
    def width(self) -> int:
        """Columns including the row-label column."""
        return 1 + len(self.columns)

    @property
    def header_spans(self) -> list[HeaderSpan]:
        """`header_groups` with their 1-based first and last column (LaTeX \\cmidrule, HTML colspan)."""
        spans: list[HeaderSpan] = []
        first = 1
        for label, width in self.header_groups or []:
            spans.append(HeaderSpan(label, width, first, first + width - 1))
            first += width
        return spans

    @property
    def flat_columns(self) -> list[str]:
        """Column headers with their spanning header prepended (formats without spans)."""
        if not self.header_groups:
            return list(self.columns)
        owners = [label for label, span in self.header_groups[1:] for _ in range(span)]
        return [f"{o}: {c}" if o else c for o, c in zip(owners, self.columns, strict=True)]


# ---------------------------------------------------------------------------- metric names


def metric_column(metric: str) -> str:
    """Column of runs.csv holding a metric: `top1` -> `test.top1`; `val.top1` stays."""
    head = metric.split(".", 1)[0]
    return metric if head in (*_SPLITS, "complexity", "timing") else f"test.{metric}"


def metric_label(metric: str, scale: float = 100.0, overrides: dict[str, str] | None = None) -> str:
    """Header of a metric: `super.macro_f1` -> `super-class macro F1 (%)`."""
    if overrides and metric in overrides:
        return overrides[metric]
    parts = metric_column(metric).split(".")
    split, rest = parts[0], parts[1:]
    base = METRIC_LABELS.get(rest[-1], rest[-1].replace("_", " ")) if rest else metric
    levels = [LEVEL_LABELS.get(p, p.replace("_", " ")) for p in rest[:-1]]
    words = " ".join([*levels, base])
    prefix = "val " if split == "val" else ""
    unit = " (%)" if scale == 100.0 and rest and rest[-1] != "loss" else ""
    return f"{prefix}{words}{unit}"


# ---------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """Which plan dimension goes where in a table (resolved from a TableSpec)."""

    rows: list[str]
    columns: list[str]
    group: str | None
    split: list[str]
    pooled: list[str]


def axis_dims(spec: SweepSpec) -> list[str]:
    """Extra grid axes (not backbone, dataset, seed): table dimensions named as in `grid:`."""
    return [axis for axis in spec.grid if axis not in ("backbone", "dataset", "seed")]


def resolve_layout(table: TableSpec, spec: SweepSpec, where: str) -> Layout:
    """Rows, columns, group and split of a table, defaults filled in; unknown names are SpecErrors."""
    axes = axis_dims(spec)
    known = [*FIXED_DIMS, *axes]

    def check(names: Sequence[str], key: str) -> list[str]:
        out = []
        for name in names:
            resolved = _resolve_dim(name, axes)
            if resolved is None:
                raise SpecError(f"{where}: {key}: unknown dimension {name!r}; valid: {', '.join(known)}")
            out.append(resolved)
        return out

    rows = check(table.rows, "rows") if table.rows is not None else None
    columns = check(table.columns, "columns") if table.columns is not None else None
    group = check([table.group], "group")[0] if table.group is not None else None
    split = check(table.split, "split") if table.split is not None else None
    taken = {*(rows or []), *(columns or []), *([group] if group else []), *(split or [])}
    multi = len(table.metrics) > 1
    if columns is None:
        columns = [d for d in ("dataset", *(["metric"] if multi else [])) if d not in taken]
        taken.update(columns)
    if rows is None:
        rows = [d for d in ("ablation", *axes) if d not in taken]
        taken.update(rows)
    if split is None:
        split = [d for d in ("backbone",) if d not in taken]
        taken.update(split)
    used = [*rows, *columns, *([group] if group else []), *split]
    twice = sorted({d for d in used if used.count(d) > 1})
    if twice:
        raise SpecError(f"{where}: dimension {twice[0]!r} is used twice (rows, columns, group, split)")
    if multi and "metric" not in used:
        raise SpecError(f"{where}: several metrics need `metric` in rows, columns, group or split")
    pooled = [d for d in known if d not in used and d != "metric"]
    return Layout(rows, columns, group, split, pooled)


def _resolve_dim(name: str, axes: list[str]) -> str | None:
    """A dimension by its name, or an axis by its full or last dotted segment."""
    if name in FIXED_DIMS or name in axes:
        return name
    short = [axis for axis in axes if axis_short(axis) == name or axis.rsplit(".", 1)[-1] == name]
    return short[0] if len(short) == 1 else None


def axis_short(axis: str) -> str:
    """An axis as tables name it: its last segment, `model.head_dropout` -> `head_dropout`;
    `loss.name` -> `loss` (a bare `name` says nothing)."""
    parts = axis.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def dim_title(dim: str) -> str:
    """Header word of a dimension: `model.head_dropout` -> `head_dropout`, `ablation` -> `Ablation`."""
    return dim.capitalize() if dim in FIXED_DIMS else axis_short(dim)


def display(value: Any) -> str:
    """A dimension value as shown in a table."""
    if isinstance(value, dict):
        for key in ("label", "name"):
            if value.get(key):
                return str(value[key])
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}" if abs(value) < 1e6 else str(value)
    return str(value)


def _key_text(dims: Sequence[str], values: Sequence[str]) -> str:
    """`Baseline (head_dropout=0.2)`: the first value plain, axis values as key=value."""
    parts = [v if d in FIXED_DIMS else f"{axis_short(d)}={v}" for d, v in zip(dims, values, strict=True)]
    if not parts:
        return ""
    first, rest = parts[0], parts[1:]
    if dims[0] not in FIXED_DIMS:
        return ", ".join(parts)
    return first + (f" ({', '.join(rest)})" if rest else "")


# ---------------------------------------------------------------------------- the plan as a frame


def plan_frame(planned: list[RunSpec], spec: SweepSpec) -> pd.DataFrame:
    """One row per planned run: its dimension values as display strings, in plan order."""
    import pandas as pd

    axes = axis_dims(spec)
    records = []
    for order, run in enumerate(planned):
        record = {
            "run_id": run.run_id,
            "order": order,
            "backbone": display(run.backbone),
            "dataset": display(run.dataset),
            "ablation": run.ablation,
            "seed": display(run.seed),
            "name": run.name,
            "ckey": complexity.complexity_key(run.config),
        }
        record.update({axis: display(run.axes.get(axis)) for axis in axes})
        records.append(record)
    columns = ["run_id", "order", "backbone", "dataset", "ablation", "seed", "name", "ckey", *axes]
    return pd.DataFrame(records, columns=columns)


def joined_frame(
    frame: pd.DataFrame, planned: list[RunSpec], spec: SweepSpec, profile: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Planned runs joined with their collected columns (state, path, metrics). Metrics count only
    for completed runs (`done`); complexity of runs not done comes from `profile` (ckey ->
    complexity.gflops, complexity.params_m), marked in `complexity.source`."""
    plan = plan_frame(planned, spec)
    keep = [c for c in frame.columns if c not in plan.columns or c == "run_id"]
    joined = plan.merge(frame[keep], on="run_id", how="left")
    joined["state"] = joined["state"].fillna("missing") if "state" in joined.columns else "missing"
    joined["done"] = joined["state"] == "completed"
    for column, _, _ in COMPLEXITY:
        if column not in joined.columns:
            joined[column] = float("nan")
        joined[column] = joined[column].astype(float).where(joined["done"])
    joined["complexity.source"] = joined[COMPLEXITY[0][0]].notna().map({True: "run", False: None})
    if profile is not None and not profile.empty:
        lookup = profile.drop_duplicates("ckey").set_index("ckey")
        for column, _, _ in COMPLEXITY:
            if column in lookup.columns:
                filled = joined["ckey"].map(lookup[column])
                missing = joined[column].isna() & filled.notna()
                joined.loc[missing, column] = filled[missing]
                joined.loc[missing, "complexity.source"] = "profile"
    return joined


# ---------------------------------------------------------------------------- building tables


def ablation_tables(
    spec: SweepSpec,
    frame: pd.DataFrame,
    planned: list[RunSpec],
    table: TableSpec | None = None,
    profile: pd.DataFrame | None = None,
) -> list[Table]:
    """The tables of one TableSpec (default: the spec's first) from a collected frame."""
    return build_tables(joined_frame(frame, planned, spec, profile), spec, table or spec.tables[0])


def build_tables(
    joined: pd.DataFrame, spec: SweepSpec, table: TableSpec, where: str = "tables", now: float | None = None
) -> list[Table]:
    """The tables of one TableSpec (one per split value) from `joined_frame`."""
    import pandas as pd

    layout = resolve_layout(table, spec, where)
    metrics = table.metrics
    missing = [m for m in metrics if metric_column(m) not in joined.columns]
    long_parts = []
    for metric in metrics:
        part = joined.copy()
        part["metric"] = metric_label(metric, table.scale, table.metric_labels)
        column = metric_column(metric)
        values = part[column].astype(float).where(part["done"]) if metric not in missing else float("nan")
        part["value"] = values * table.scale
        long_parts.append(part)
    long = pd.concat(long_parts, ignore_index=True)
    ranks = _ranks(long, spec, [metric_label(m, table.scale, table.metric_labels) for m in metrics])
    _check_pooled(long, layout, where)
    out = []
    for split_key, part in _ordered_groups(long, layout.split, ranks):
        title = _title(table, metrics, layout, split_key)
        built = _one_table(part, spec, table, layout, ranks, title)
        built.notes.extend(_legend(spec, table, layout, metrics))
        if missing:
            built.warnings.append(f"no run reports {', '.join(metric_column(m) for m in missing)}")
        built.notes.extend(provenance_notes(part[part["metric"] == part["metric"].iloc[0]], now))
        built.warnings.extend(provenance_warnings(part[part["metric"] == part["metric"].iloc[0]]))
        out.append(built)
    return out


def _ranks(long: pd.DataFrame, spec: SweepSpec, metric_labels: list[str]) -> dict[str, dict[str, int]]:
    """Order of every dimension's values: plan order (ablations in spec order, metrics as listed)."""
    ranks: dict[str, dict[str, int]] = {}
    ordered = long.sort_values("order", kind="stable")
    for dim in (*FIXED_DIMS, *axis_dims(spec)):
        if dim == "metric":
            ranks[dim] = {label: i for i, label in enumerate(dict.fromkeys(metric_labels))}
        elif dim == "ablation":
            ranks[dim] = {name: i for i, name in enumerate(spec.ablations)}
        else:
            ranks[dim] = {value: i for i, value in enumerate(dict.fromkeys(ordered[dim]))}
    return ranks


def _ordered_groups(
    frame: pd.DataFrame, dims: list[str], ranks: dict[str, dict[str, int]]
) -> list[tuple[tuple[str, ...], pd.DataFrame]]:
    """frame grouped by `dims`, groups in rank order (one group with key () when dims is empty)."""
    if not dims:
        return [((), frame)]
    groups = [(tuple(str(v) for v in key), part) for key, part in frame.groupby(dims, sort=False)]
    return sorted(groups, key=lambda item: _rank_key(item[0], dims, ranks))


def _rank_key(values: Sequence[str], dims: Sequence[str], ranks: dict[str, dict[str, int]]) -> tuple[int, ...]:
    return tuple(ranks[d].get(v, len(ranks[d])) for d, v in zip(dims, values, strict=True))


def _check_pooled(long: pd.DataFrame, layout: Layout, where: str) -> None:
    """A pooled dimension (not in rows, columns, group or split) may not mix values in one cell."""
    keys = [*layout.split, *([layout.group] if layout.group else []), *layout.rows, *layout.columns]
    for dim in layout.pooled:
        if dim == "seed":
            continue
        counts = long.groupby(keys, sort=False)[dim].nunique() if keys else long[[dim]].nunique()
        if int(counts.max()) > 1:
            values = ", ".join(dict.fromkeys(long[dim]))
            raise SpecError(
                f"{where}: cells would pool {dim} values ({values}); "
                f"put {dim!r} in the table's rows, columns, group or split"
            )


def _title(table: TableSpec, metrics: list[str], layout: Layout, split_key: tuple[str, ...]) -> str:
    """`convnextv2_large: test top-1 (%)`; a custom title gets the split values prepended."""
    where = _key_text(layout.split, split_key) if split_key else ""
    if table.title:
        return f"{where}: {table.title}" if where else table.title
    what = "test " + metric_label(metrics[0], table.scale, table.metric_labels) if len(metrics) == 1 else "test metrics"
    if metric_column(metrics[0]).startswith("val.") and len(metrics) == 1:
        what = metric_label(metrics[0], table.scale, table.metric_labels)
    return f"{where}: {what}" if where else what


def _one_table(
    part: pd.DataFrame,
    spec: SweepSpec,
    table: TableSpec,
    layout: Layout,
    ranks: dict[str, dict[str, int]],
    title: str,
) -> Table:
    group_dims = [layout.group] if layout.group else []
    row_dims = [*group_dims, *layout.rows]
    col_keys = [key for key, _ in _ordered_groups(part, layout.columns, ranks)]
    row_keys = [key for key, _ in _ordered_groups(part, row_dims, ranks)]
    stats = _cell_stats(part, [*row_dims, *layout.columns])
    baseline = next(iter(spec.ablations))
    cells: dict[tuple[tuple[str, ...], tuple[str, ...]], Cell] = {}
    for rk in row_keys:
        for ck in col_keys:
            mean, std, n, n_expected = stats.get((*rk, *ck), (None, None, 0, 0))
            base = _baseline_key(rk, ck, row_dims, layout.columns, baseline)
            base_mean = stats.get((*base[0], *base[1]), (None,))[0] if base is not None else None
            delta = _delta(mean, base_mean, False) if table.delta and base is not None else None
            cells[(rk, ck)] = Cell(mean, std, n, n_expected, delta, False, False, table.decimals)
    _mark_best(cells, row_keys, col_keys, len(group_dims), table)
    complexity = _complexity_cells(part, row_keys, row_dims, layout, ranks, spec) if table.complexity else None
    built = Table(
        title=title,
        row_header=", ".join(dim_title(d) for d in layout.rows) or "",
        columns=[_key_text_columns(layout.columns, ck) for ck in col_keys],
        name=table.name,
    )
    if len(layout.columns) > 1:
        built.header_groups = _header_groups(layout.columns, col_keys, table.complexity)
        built.columns = [_key_text_columns(layout.columns[1:], ck[1:]) for ck in col_keys]
    if complexity is not None:
        built.columns += [label for _, label, _ in COMPLEXITY]
    previous_group: str | None = None
    for rk in row_keys:
        group = _key_text(group_dims, rk[: len(group_dims)]) if group_dims else None
        row_cells = [cells[(rk, ck)] for ck in col_keys]
        if complexity is not None:
            row_cells += complexity[0][rk]
        label = _key_text(layout.rows, rk[len(group_dims) :]) if layout.rows else (group or "")
        built.rows.append(Row(label, row_cells, group, group is not None and group != previous_group))
        previous_group = group
    if complexity is not None:
        built.notes.extend(complexity[1])
    return built


def _key_text_columns(dims: Sequence[str], values: Sequence[str]) -> str:
    """Column header: values joined; axis values as key=value."""
    return " ".join(v if d in FIXED_DIMS else f"{axis_short(d)}={v}" for d, v in zip(dims, values, strict=True))


def _header_groups(
    dims: Sequence[str], col_keys: list[tuple[str, ...]], with_complexity: bool
) -> list[tuple[str, int]]:
    """Spans of the first column dimension: [('', 1), ('CUB', 2), ..., ('', 2)]."""
    groups: list[tuple[str, int]] = [("", 1)]
    for key in col_keys:
        label = _key_text_columns(dims[:1], key[:1])
        if groups[-1][0] == label and len(groups) > 1:
            groups[-1] = (label, groups[-1][1] + 1)
        else:
            groups.append((label, 1))
    if with_complexity:
        groups.append(("", len(COMPLEXITY)))
    return groups


def _cell_stats(
    part: pd.DataFrame, keys: list[str]
) -> dict[tuple[str, ...], tuple[float | None, float | None, int, int]]:
    """(mean, std, n finished, n planned) of `value` per cell; std over seeds (ddof=1)."""
    if not keys:
        part = part.assign(_all="")
        keys = ["_all"]
    grouped = part.groupby(keys, sort=False)["value"].agg(["mean", "std", "count", "size"])
    out = {}
    for key, row in grouped.iterrows():
        key_t = tuple(str(v) for v in key) if isinstance(key, tuple) else (str(key),)
        if keys == ["_all"]:
            key_t = ()
        n = int(row["count"])
        mean = float(row["mean"]) if n else None
        std = float(row["std"]) if n > 1 else None
        out[key_t] = (mean, std, n, int(row["size"]))
    return out


def _baseline_key(
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


def _mark_best(
    cells: dict[tuple[tuple[str, ...], tuple[str, ...]], Cell],
    row_keys: list[tuple[str, ...]],
    col_keys: list[tuple[str, ...]],
    n_group_dims: int,
    table: TableSpec,
) -> None:
    """Bold the best mean of each column within each row group (compared as displayed)."""
    if table.best == "none":
        return
    groups: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for rk in row_keys:
        groups.setdefault(rk[:n_group_dims], []).append(rk)
    pick = max if table.best == "max" else min
    for rows in groups.values():
        for ck in col_keys:
            shown = {rk: round(c.mean, table.decimals) for rk in rows if (c := cells[(rk, ck)]).mean is not None}
            if len(shown) < 2:
                continue
            best = pick(shown.values())
            if all(value == best for value in shown.values()):
                continue  # every row ties: nothing stands out
            for rk, value in shown.items():
                if value == best:
                    cells[(rk, ck)] = replace(cells[(rk, ck)], best=True)


def _complexity_cells(
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
    names = [column for column, _, _ in COMPLEXITY]
    runs = part[part["metric"] == part["metric"].iloc[0]]
    col_dims = [d for d in layout.columns if d != "metric"]
    values: dict[tuple[str, ...], list[float | None]] = {}
    shown_from: set[str] = set()
    differs = False
    for rk in row_keys:
        rows = runs
        for dim, value in zip(row_dims, rk, strict=True):
            rows = rows[rows[dim] == value]
        per_column = [
            (key, sub[names].mean())
            for key, sub in _ordered_groups(rows, col_dims, ranks)
            if sub[names].notna().any().all()
        ]
        if not per_column:
            values[rk] = [None for _ in names]
            continue
        key, shown = per_column[0]
        values[rk] = [float(shown[c]) for c in names]
        shown_from.add(_key_text_columns(col_dims, key))
        differs |= any(not _close(float(other[c]), float(shown[c])) for _, other in per_column for c in names)
    baseline = next(iter(spec.ablations))
    budget = spec.budget
    limits = (budget.max_gflops_increase_pct, budget.max_params_increase_pct) if budget else (None, None)
    columns: list[list[Cell]] = [[] for _ in names]
    for rk in row_keys:
        base = _baseline_key(rk, (), row_dims, [], baseline)
        base_values = values.get(base[0]) if base is not None else None
        for index, (_, _, decimals) in enumerate(COMPLEXITY):
            mean = values[rk][index]
            delta = _delta(mean, base_values[index] if base_values else None, True)
            limit = limits[index]
            over = complexity.exceeds(delta, limit)
            columns[index].append(Cell(mean, None, int(mean is not None), 1, delta, True, False, decimals, over))
    fixed = [_enough_decimals(column) for column in columns]
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


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _enough_decimals(cells: list[Cell], digits: int = 3) -> list[Cell]:
    """Raise a column's decimals until its smallest value shows `digits` significant digits (tiny models)."""
    values = [abs(c.mean) for c in cells if c.mean]
    if not values:
        return cells
    needed = complexity.decimals_for(min(values), cells[0].decimals, digits)
    return [replace(c, decimals=needed) for c in cells]


def _delta(value: float | None, base: float | None, relative: bool) -> float | None:
    if value is None or base is None or (relative and base == 0):
        return None
    diff = value - base
    return 100.0 * diff / base if relative else diff


def _legend(spec: SweepSpec, table: TableSpec, layout: Layout, metrics: list[str]) -> list[str]:
    """What the numbers are."""
    baseline = next(iter(spec.ablations))
    what = ", ".join(metric_label(m, table.scale, table.metric_labels) for m in metrics)
    delta = f", (Δ) against '{baseline}'" if table.delta else ""
    best = {"max": "; highest in bold", "min": "; lowest in bold", "none": ""}[table.best]
    if layout.group:
        best += f" per {dim_title(layout.group).lower()}" if best else ""
    notes = [
        f"Cells: {what} as mean ± std over seeds{delta}; (n/N seeds) where runs are missing; "
        f"'-' where none finished{best}."
    ]
    if table.complexity:
        notes.append(
            "GFLOPs: 2 x multiply-adds at batch 1 and the run's input size (torch.utils.flop_counter); "
            "params: exact count of the model trained; (Δ%) relative to the baseline row."
        )
    return notes


# ---------------------------------------------------------------------------- provenance


def provenance_notes(runs: pd.DataFrame, now: float | None = None) -> list[str]:
    """Code versions, date range, devices and compute of the finished runs of one table."""
    done = runs[runs["state"] == "completed"] if "state" in runs.columns else runs.iloc[0:0]
    if done.empty:
        return ["No finished runs yet."]
    notes = []
    versions = _code_versions(done)
    if versions:
        notes.append(f"Code version(s): {', '.join(versions)}.")
    started = _column(done, "started_at").dropna()
    finished = _column(done, "finished_at").dropna()
    if not finished.empty:
        first = _date(float(started.min()) if not started.empty else float(finished.min()))
        last = _date(float(finished.max()))
        notes.append(f"Runs from {first} to {last}." if first != last else f"Runs on {first}.")
    devices = _column(done, "provenance.device").dropna().astype(str)
    if not devices.empty:
        counts = devices.value_counts()
        notes.append("Devices: " + ", ".join(f"{name} ({n} runs)" for name, n in counts.items()) + ".")
    hours = compute_hours(done)
    if hours:
        notes.append("Compute: " + ", ".join(f"{value:.2f} {unit}" for unit, value in hours.items()) + ".")
    return notes


def compute_hours(done: pd.DataFrame) -> dict[str, float]:
    """{'GPU-hours': x, 'CPU-hours': y}: wall time x processes of the finished runs."""
    wall = _column(done, "timing.wall_s").astype(float)
    procs = _column(done, "provenance.num_processes").astype(float).fillna(1.0)
    device = _column(done, "provenance.device").astype(str)
    hours = wall * procs / 3600.0
    on_cpu = device.str.lower().isin(["cpu", "nan", "none"])
    out = {}
    if hours[~on_cpu].notna().any():
        out["GPU-hours"] = float(hours[~on_cpu].sum())
    if hours[on_cpu].notna().any():
        out["CPU-hours"] = float(hours[on_cpu].sum())
    return out


def provenance_warnings(runs: pd.DataFrame) -> list[str]:
    """Cells from different code versions, or one backbone from different pretrained checkpoints."""
    done = runs[runs["state"] == "completed"] if "state" in runs.columns else runs.iloc[0:0]
    warnings = []
    versions = _code_versions(done)
    if len(versions) > 1:
        warnings.append(f"cells come from {len(versions)} code versions ({', '.join(versions)}).")
    checkpoint = _column(done, "pretrained_sha256").fillna(_column(done, "pretrained_path"))
    if checkpoint.notna().any():
        frame = done.assign(_ckpt=checkpoint)
        for backbone, sub in frame.groupby("backbone", sort=False):
            found = sorted({str(v) for v in sub["_ckpt"].dropna()})
            if len(found) > 1:
                warnings.append(f"{backbone} runs come from {len(found)} pretrained checkpoints ({', '.join(found)}).")
    return warnings


def _code_versions(done: pd.DataFrame) -> list[str]:
    commits = _column(done, "provenance.git_commit")
    dirty = _column(done, "provenance.git_dirty")
    versions = set()
    for commit, is_dirty in zip(commits, dirty, strict=True):
        if isinstance(commit, str) and commit:
            versions.add(commit[:10] + (" (uncommitted changes)" if is_dirty is True else ""))
    return sorted(versions)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    import pandas as pd

    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _date(stamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(stamp))


# ---------------------------------------------------------------------------- rendering


def environment(loader: jinja2.BaseLoader | None = None) -> jinja2.Environment:
    """The Jinja environment of every table format: strict, filters for escaping only."""
    env = jinja2.Environment(
        loader=loader or jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "htm.j2"), default_for_string=False),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tex"] = latex_escape
    env.filters["md"] = markdown_escape
    env.filters["slug"] = slug
    env.filters["braced"] = lambda value: "{" + str(value) + "}"
    return env


def render(tables: list[Table], fmt: str = "md", context: dict[str, Any] | None = None) -> str:
    """Render tables with the packaged template of a format (md, tex, html)."""
    if fmt == "csv":
        return to_csv(tables)
    return environment().get_template(f"table.{fmt}.j2").render(tables=tables, **(context or {}))


def render_file(path: Path, tables: list[Table], context: dict[str, Any] | None = None) -> str:
    """Render tables with a user's template file (its own folder is the template search path)."""
    env = environment(jinja2.FileSystemLoader(path.parent))
    return env.get_template(path.name).render(tables=tables, **(context or {}))


def to_csv(tables: list[Table]) -> str:
    """All tables as one CSV: table title, row group, row, then one column per table column (plain text)."""
    import pandas as pd

    records = []
    for table in tables:
        for row in table.rows:
            record = {"table": table.title, "group": row.group or "", table.row_header or "row": row.label}
            record.update({column: cell.text for column, cell in zip(table.flat_columns, row.cells, strict=True)})
            records.append(record)
    return str(pd.DataFrame(records).to_csv(index=False))


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "†": r"\textsuperscript{\dag}",
    "–": "--",
    "—": "---",
    "'": "'",
    "µ": r"$\mu$",
}


def latex_escape(value: Any) -> str:
    """Text safe inside a LaTeX tabular (pdflatex): specials escaped, common symbols as math."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(value))


def markdown_escape(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("|", r"\|").replace("\n", " ")


def slug(value: Any) -> str:
    """Lowercase letters, digits and '-' (HTML ids, LaTeX labels)."""
    text = "".join(ch.lower() if ch.isalnum() else "-" for ch in str(value))
    return "-".join(part for part in text.split("-") if part)
