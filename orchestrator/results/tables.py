"""Ablation tables: pandas computes every number, Jinja templates only lay them out.

The table builder. Model: Table 1 of report 004. Rows are ablation rows in spec order (baseline
first), one column per dataset with `mean ± std (Δ vs baseline)` over seeds,
then GFLOPs and Params (M) with their relative delta to the baseline row.

A `tables:` entry of the spec (orchestrator.sweep.spec.TableSpec) picks the metric(s)
and lays the plan's dimensions out: `rows`, `columns`, row `group`s, one table
per `split` value. Dimensions are backbone, dataset, ablation, metric, seed and
every extra grid axis; a dimension left out is pooled with the seeds, which is
only allowed when each cell then holds a single value of it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.results import adaptive, compare_cache, reader
from orchestrator.results.aggregate import CellData, cell_data, complexity_cells, mark_best, score_cells
from orchestrator.results.join import COMPLEXITY, joined_frame, plan_frame
from orchestrator.results.labels import (
    FIXED_DIMS,
    METRIC_LABELS,
    axis_dims,
    axis_short,
    dim_title,
    display,
    key_text,
    key_text_columns,
    metric_column,
    metric_label,
)
from orchestrator.results.layout import Layout, check_pooled, ordered_groups, ordered_keys, ranks_of, resolve_layout
from orchestrator.results.legend import broken_runs, legend, noise_notes, power_notes
from orchestrator.results.model import BUDGET_MARK, Cell, HeaderSpan, Row, Table
from orchestrator.results.provenance import compute_hours, provenance_notes, provenance_warnings, retry_notes
from orchestrator.results.render import (
    TemplateRefused,
    environment,
    latex_escape,
    markdown_escape,
    render,
    render_file,
    slug,
    to_csv,
)
from orchestrator.results.stats import Comparison
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec, TableSpec
from trainers import contract

if TYPE_CHECKING:
    import pandas as pd

Keyed = list[tuple[tuple[str, ...], Comparison]]
"""A table's comparisons, each by its cell's key in cell_data (score_cells)."""

__all__ = [
    "BUDGET_MARK",
    "COMPLEXITY",
    "FIXED_DIMS",
    "METRIC_LABELS",
    "Cell",
    "HeaderSpan",
    "Layout",
    "Row",
    "Table",
    "TemplateRefused",
    "ablation_tables",
    "axis_dims",
    "axis_short",
    "build_tables",
    "compute_hours",
    "dim_title",
    "display",
    "environment",
    "joined_frame",
    "latex_escape",
    "markdown_escape",
    "metric_column",
    "metric_label",
    "plan_frame",
    "provenance_notes",
    "provenance_warnings",
    "render",
    "render_file",
    "resolve_layout",
    "slug",
    "to_csv",
]


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
    layout = resolve_layout(table, spec, where)
    metrics = table.metrics
    rounds = adaptive.STOP_COLUMN in joined.columns  # adaptive seeds with decided rounds (adaptive.annotate)
    decided = rounds and table.name == adaptive.rule_table(spec).name
    if rounds and not decided:  # the stops belong to the deltas the rounds tested: the deciding table's
        joined = joined.drop(columns=adaptive.STOP_COLUMN)
    missing = [m for m in metrics if metric_column(m) not in joined.columns]
    long = _long_frame(joined, table, missing)
    ranks = ranks_of(long, spec, [metric_label(m, table.scale_of(m), table.metric_labels) for m in metrics])
    check_pooled(long, layout, where)
    out = []
    for split_key, part in ordered_groups(long, layout.split, ranks):
        title = _title(table, metrics, layout, split_key)
        built, comparisons, data = _one_table(part, spec, table, layout, ranks, title)
        built.notes.extend(legend(spec, table, layout, metrics, part))
        built.notes.extend(_noise(data, comparisons, table, layout))
        built.notes.extend(adaptive.stop_notes(built, spec, decided) if rounds else [])
        if missing:
            built.warnings.append(f"no run reports {', '.join(metric_column(m) for m in missing)}")
        first_metric = part[part["metric"] == part["metric"].iloc[0]]
        built.notes.extend(provenance_notes(first_metric, now))
        built.notes.extend(retry_notes(first_metric))
        built.warnings.extend(provenance_warnings(first_metric))
        built.problems = broken_runs(part)
        built.warnings.extend(unfinished_runs(part))
        out.append(built)
    return out


def unfinished_runs(part: pd.DataFrame, listed: int = 10) -> list[str]:
    """A partial table names its runs that are not in it: one line, by state (failed, missing, running...),
    each run by its readable name (the first `listed` per state)."""
    rows = part[~part["done"].astype(bool) & ~part["broken"].astype(bool)].drop_duplicates("run_id")
    if rows.empty:
        return []
    groups = []
    for state, group in rows.groupby("state", sort=True):
        names = [str(name) for name in group["name"]]
        more = f" and {len(names) - listed} more" if len(names) > listed else ""
        groups.append(f"{state} ({len(names)}): {', '.join(names[:listed])}{more}")
    return [f"partial table, {len(rows)} run(s) not in it: " + "; ".join(groups)]


def _long_frame(joined: pd.DataFrame, table: TableSpec, missing: list[str]) -> pd.DataFrame:
    """One row per (run, metric) with its `value` (finished runs only, scaled) and `broken` flag.

    Broken: the run's files could not be read (state broken or unknown), or it completed without a
    usable value of the metric (missing, null, non-finite, out of range: the reader dropped it).
    """
    import pandas as pd

    bad_state = joined["state"].isin([reader.BROKEN, reader.UNKNOWN])
    parts = []
    for metric in table.metrics:
        part = joined.copy(deep=False)  # new columns only: joined's own columns are never written
        if metric != table.metrics[0] and adaptive.STOP_COLUMN in part.columns:
            part = part.drop(columns=adaptive.STOP_COLUMN)  # the rounds tested the first metric's deltas only
        part["metric"] = metric_label(metric, table.scale_of(metric), table.metric_labels)
        column = metric_column(metric)
        present = metric not in missing
        raw = pd.to_numeric(part[column], errors="coerce") if present else pd.Series(float("nan"), index=part.index)
        part["value"] = raw.where(part["done"]) * table.scale_of(metric)
        part["broken"] = bad_state | (part["done"] & raw.isna() & present)
        part["broken_column"] = column
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _title(table: TableSpec, metrics: list[str], layout: Layout, split_key: tuple[str, ...]) -> str:
    """`convnextv2_large: test top-1 (%)`; a custom title gets the split values prepended."""
    where = key_text(layout.split, split_key) if split_key else ""
    if table.title:
        return f"{where}: {table.title}" if where else table.title
    label = metric_label(metrics[0], table.scale_of(metrics[0]), table.metric_labels)
    what = "test " + label if len(metrics) == 1 else "test metrics"
    if metric_column(metrics[0]).split(".", 1)[0] == contract.VAL and len(metrics) == 1:
        what = label
    return f"{where}: {what}" if where else what


def _noise(data: dict[tuple[str, ...], CellData], comparisons: Keyed, table: TableSpec, layout: Layout) -> list[str]:
    """noise_notes of a table; the detectable delta per metric where the table holds several (a spread
    pooled over top-1 points and loss values sized a delta in no unit)."""
    keys = [*([layout.group] if layout.group else []), *layout.rows, *layout.columns]
    counts = [len(cell.values) for cell in data.values()]
    spreads = [(cell.std, len(cell.values)) for cell in data.values() if cell.std is not None]
    shown = list(dict.fromkeys(key[keys.index("metric")] for key in data)) if "metric" in keys else []
    if len(shown) < 2:
        return noise_notes(counts, [c for _, c in comparisons], table, spreads)
    at = keys.index("metric")
    notes = noise_notes(counts, [c for _, c in comparisons], table, spreads, power=False)
    for metric in shown:
        cells = [cell for key, cell in data.items() if key[at] == metric]
        mine = [(cell.std, len(cell.values)) for cell in cells if cell.std is not None]
        n = statistics.median([len(cell.values) for cell in cells if cell.values] or [0])
        found = [c for key, c in comparisons if key[at] == metric]
        notes.extend(f"{metric}: {note}" for note in power_notes(n, found, table, mine))
    return notes


def _one_table(
    part: pd.DataFrame,
    spec: SweepSpec,
    table: TableSpec,
    layout: Layout,
    ranks: dict[str, dict[str, int]],
    title: str,
) -> tuple[Table, Keyed, dict[tuple[str, ...], CellData]]:
    group_dims = [layout.group] if layout.group else []
    row_dims = [*group_dims, *layout.rows]
    col_keys = ordered_keys(part, layout.columns, ranks)
    row_keys = ordered_keys(part, row_dims, ranks)
    data = cell_data(part, [*row_dims, *layout.columns])
    baseline = next(iter(spec.ablations))
    # A best mark against the baseline is a delta compared already; the folder's cache holds the rest.
    memo = compare_cache.memo()
    cells, comparisons = score_cells(data, row_keys, col_keys, row_dims, layout.columns, table, baseline, memo)
    mark_best(cells, data, row_keys, col_keys, len(group_dims), table, memo)
    complexity = complexity_cells(part, row_keys, row_dims, layout, ranks, spec) if table.complexity else None
    built = Table(
        title=title,
        row_header=", ".join(dim_title(d) for d in layout.rows) or "",
        columns=[key_text_columns(layout.columns, ck) for ck in col_keys],
        name=table.name,
    )
    if len(layout.columns) > 1:
        built.header_groups = _header_groups(layout.columns, col_keys, table.complexity)
        built.columns = [key_text_columns(layout.columns[1:], ck[1:]) for ck in col_keys]
    if complexity is not None:
        built.columns += [label for _, label, _ in COMPLEXITY]
    previous_group: str | None = None
    for rk in row_keys:
        group = key_text(group_dims, rk[: len(group_dims)]) if group_dims else None
        row_cells = [cells[(rk, ck)] for ck in col_keys]
        if complexity is not None:
            row_cells += complexity[0][rk]
        label = key_text(layout.rows, rk[len(group_dims) :]) if layout.rows else (group or "")
        built.rows.append(Row(label, row_cells, group, group is not None and group != previous_group))
        previous_group = group
    if complexity is not None:
        built.notes.extend(complexity[1])
    return built, comparisons, data


def _header_groups(
    dims: Sequence[str], col_keys: list[tuple[str, ...]], with_complexity: bool
) -> list[tuple[str, int]]:
    """Spans of the first column dimension: [('', 1), ('CUB', 2), ..., ('', 2)]."""
    groups: list[tuple[str, int]] = [("", 1)]
    for key in col_keys:
        label = key_text_columns(dims[:1], key[:1])
        if groups[-1][0] == label and len(groups) > 1:
            groups[-1] = (label, groups[-1][1] + 1)
        else:
            groups.append((label, 1))
    if with_complexity:
        groups.append(("", len(COMPLEXITY)))
    return groups
