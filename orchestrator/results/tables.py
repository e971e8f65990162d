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

from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.results.aggregate import baseline_key, cell_stats, complexity_cells, difference, mark_best
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
from orchestrator.results.layout import Layout, check_pooled, ordered_groups, ranks_of, resolve_layout
from orchestrator.results.model import BUDGET_MARK, Cell, HeaderSpan, Row, Table
from orchestrator.results.provenance import compute_hours, provenance_notes, provenance_warnings
from orchestrator.results.render import environment, latex_escape, markdown_escape, render, render_file, slug, to_csv
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec, TableSpec

if TYPE_CHECKING:
    import pandas as pd

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
    ranks = ranks_of(long, spec, [metric_label(m, table.scale, table.metric_labels) for m in metrics])
    check_pooled(long, layout, where)
    out = []
    for split_key, part in ordered_groups(long, layout.split, ranks):
        title = _title(table, metrics, layout, split_key)
        built = _one_table(part, spec, table, layout, ranks, title)
        built.notes.extend(_legend(spec, table, layout, metrics))
        if missing:
            built.warnings.append(f"no run reports {', '.join(metric_column(m) for m in missing)}")
        built.notes.extend(provenance_notes(part[part["metric"] == part["metric"].iloc[0]], now))
        built.warnings.extend(provenance_warnings(part[part["metric"] == part["metric"].iloc[0]]))
        out.append(built)
    return out


def _title(table: TableSpec, metrics: list[str], layout: Layout, split_key: tuple[str, ...]) -> str:
    """`convnextv2_large: test top-1 (%)`; a custom title gets the split values prepended."""
    where = key_text(layout.split, split_key) if split_key else ""
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
    col_keys = [key for key, _ in ordered_groups(part, layout.columns, ranks)]
    row_keys = [key for key, _ in ordered_groups(part, row_dims, ranks)]
    stats = cell_stats(part, [*row_dims, *layout.columns])
    baseline = next(iter(spec.ablations))
    cells: dict[tuple[tuple[str, ...], tuple[str, ...]], Cell] = {}
    for rk in row_keys:
        for ck in col_keys:
            mean, std, n, n_expected = stats.get((*rk, *ck), (None, None, 0, 0))
            base = baseline_key(rk, ck, row_dims, layout.columns, baseline)
            base_mean = stats.get((*base[0], *base[1]), (None,))[0] if base is not None else None
            delta = difference(mean, base_mean, False) if table.delta and base is not None else None
            cells[(rk, ck)] = Cell(mean, std, n, n_expected, delta, False, False, table.decimals)
    mark_best(cells, row_keys, col_keys, len(group_dims), table)
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
    return built


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
