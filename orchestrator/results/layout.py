"""Where each plan dimension goes in a table (rows, columns, group, split), and the order of values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.results.labels import FIXED_DIMS, axis_dims, axis_short
from orchestrator.sweep.spec import SpecError, SweepSpec, TableSpec

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Layout:
    """Which plan dimension goes where in a table (resolved from a TableSpec)."""

    rows: list[str]
    columns: list[str]
    group: str | None
    split: list[str]
    pooled: list[str]


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


def cell_dims(table: TableSpec, spec: SweepSpec, where: str) -> list[str]:
    """The dimensions that tell a table's cells apart, metric and seed aside (adaptive seeds pair these cells)."""
    found = resolve_layout(table, spec, where)
    used = [*found.split, *([found.group] if found.group else []), *found.rows, *found.columns]
    return [d for d in used if d not in ("metric", "seed")]


def table_key(fact: dict[str, Any], dims: list[str]) -> tuple[str, ...]:
    """A cell's coordinates in a table from its display strings (backbone, dataset, ablation, `axes`)."""
    return tuple(str(fact[d]) if d in ("backbone", "dataset", "ablation") else str(fact["axes"].get(d)) for d in dims)


def _resolve_dim(name: str, axes: list[str]) -> str | None:
    """A dimension by its name, or an axis by its full or last dotted segment."""
    if name in FIXED_DIMS or name in axes:
        return name
    short = [axis for axis in axes if axis_short(axis) == name or axis.rsplit(".", 1)[-1] == name]
    return short[0] if len(short) == 1 else None


def ranks_of(long: pd.DataFrame, spec: SweepSpec, metric_labels: list[str]) -> dict[str, dict[str, int]]:
    """Order of every dimension's values: plan order (ablations in spec order, metrics as listed)."""
    ranks: dict[str, dict[str, int]] = {}
    ordered = long.sort_values("order", kind="stable")
    for dim in (*FIXED_DIMS, *axis_dims(spec)):
        if dim == "metric":
            ranks[dim] = {label: i for i, label in enumerate(dict.fromkeys(metric_labels))}
        elif dim == "ablation":
            ranks[dim] = {name: i for i, name in enumerate(spec.ablations)}
        else:
            ranks[dim] = {value: i for i, value in enumerate(dict.fromkeys(ordered[dim].tolist()))}
    return ranks


def ordered_groups(
    frame: pd.DataFrame, dims: list[str], ranks: dict[str, dict[str, int]]
) -> list[tuple[tuple[str, ...], pd.DataFrame]]:
    """frame grouped by `dims`, groups in rank order (one group with key () when dims is empty)."""
    if not dims:
        return [((), frame)]
    groups = [(tuple(str(v) for v in key), part) for key, part in frame.groupby(dims, sort=False)]
    return sorted(groups, key=lambda item: rank_key(item[0], dims, ranks))


def ordered_keys(frame: pd.DataFrame, dims: list[str], ranks: dict[str, dict[str, int]]) -> list[tuple[str, ...]]:
    """ordered_groups' keys alone: no frame per group (a table of 1,000 rows built 1,000 to list them)."""
    if not dims:
        return [()]
    # groupby's groups: rows with a missing value in a dimension dropped, in order of first appearance.
    first = frame[dims].dropna().drop_duplicates()
    keys = [tuple(str(v) for v in row) for row in first.itertuples(index=False, name=None)]
    return sorted(keys, key=lambda key: rank_key(key, dims, ranks))


def rank_key(values: Sequence[str], dims: Sequence[str], ranks: dict[str, dict[str, int]]) -> tuple[int, ...]:
    return tuple(ranks[d].get(v, len(ranks[d])) for d, v in zip(dims, values, strict=True))


def check_pooled(long: pd.DataFrame, layout: Layout, where: str) -> None:
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
