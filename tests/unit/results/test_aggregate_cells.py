"""A table's cells by column positions (aggregate.cell_data, the complexity columns) give what a frame
per cell gave: the implementations they replaced are kept here as the oracle, and hypothesis draws
tables with missing values, repeated seeds, cells without complexity, heads that differ by column
and adaptive stop reasons."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.results import aggregate
from orchestrator.results.adaptive import STOP_COLUMN
from orchestrator.results.join import COMPLEXITY
from orchestrator.results.labels import key_text_columns
from orchestrator.results.layout import Layout, ordered_groups, ordered_keys

NAMES = [column for column, _, _ in COMPLEXITY]
DIMS = ["backbone", "ablation", "dataset"]


def oracle_cell_data(part: pd.DataFrame, keys: list[str]) -> dict[tuple[str, ...], aggregate.CellData]:
    """cell_data as it was: a frame per cell."""
    if not keys:
        part = part.assign(_all="")
        keys = ["_all"]
    out = {}
    for key, sub in part.groupby(keys, sort=False):
        key_t = tuple(str(v) for v in key) if isinstance(key, tuple) else (str(key),)
        done = sub[sub["value"].notna()]
        seeds = [str(s) for s in done["seed"]]
        if len(set(seeds)) < len(seeds):
            seeds = [f"{s}#{i}#{'/'.join(key_t)}" for i, s in enumerate(seeds)]
        values = dict(zip(seeds, done["value"].astype(float), strict=True))
        stops = [str(s) for s in sub[STOP_COLUMN].dropna()] if STOP_COLUMN in sub.columns else []
        stop = stops[0] if stops else None
        out[() if keys == ["_all"] else key_t] = aggregate.CellData(values, len(sub), int(sub["broken"].sum()), stop)
    return out


def oracle_complexity(
    part: pd.DataFrame, row_keys: list[tuple[str, ...]], row_dims: list[str], columns: list[str], ranks: Any
) -> tuple[dict[tuple[str, ...], list[float | None]], set[str], bool]:
    """_complexity_values as it was: a frame per row, then per column."""
    runs = part[part["metric"] == part["metric"].iloc[0]]
    col_dims = [d for d in columns if d != "metric"]
    values: dict[tuple[str, ...], list[float | None]] = {}
    shown_from: set[str] = set()
    differs = False
    for rk in row_keys:
        rows = runs
        for dim, value in zip(row_dims, rk, strict=True):
            rows = rows[rows[dim] == value]
        per_column = [
            (key, sub[NAMES].mean())
            for key, sub in ordered_groups(rows, col_dims, ranks)
            if sub[NAMES].notna().any().all()
        ]
        if not per_column:
            values[rk] = [None for _ in NAMES]
            continue
        key, shown = per_column[0]
        values[rk] = [float(shown[c]) for c in NAMES]
        shown_from.add(key_text_columns(col_dims, key))
        differs |= any(not aggregate._close(float(o[c]), float(shown[c])) for _, o in per_column for c in NAMES)
    return values, shown_from, differs


maybe_float = st.one_of(st.none(), st.floats(0.0, 100.0))


@st.composite
def tables(draw: st.DrawFn) -> pd.DataFrame:
    """The long frame of one metric: runs with dimension texts, seeds (some repeated), values or
    NaN, broken flags, complexity or none, and a stop reason on some rows."""
    n = draw(st.integers(1, 40))
    rows = []
    for _ in range(n):
        rows.append(
            {
                "backbone": draw(st.sampled_from(["a", "b"])),
                "ablation": draw(st.sampled_from(["Baseline", "+ x", "+ y"])),
                "dataset": draw(st.sampled_from(["d0", "d1", "d2"])),
                "seed": draw(st.integers(0, 3)),
                "value": draw(maybe_float),
                "broken": draw(st.booleans()),
                NAMES[0]: draw(maybe_float),
                NAMES[1]: draw(st.one_of(st.none(), st.sampled_from([1.5, 2.5]))),
                STOP_COLUMN: draw(st.one_of(st.none(), st.sampled_from(["resolved", "max"]))),
            }
        )
    frame = pd.DataFrame(rows)
    frame["value"] = pd.to_numeric(frame["value"])
    frame["metric"] = "top-1 (%)"
    if draw(st.booleans()):
        frame = frame.drop(columns=STOP_COLUMN)
    return frame


@settings(max_examples=300, deadline=None)
@given(tables(), st.lists(st.sampled_from(DIMS), unique=True, max_size=3))
def test_cell_data_by_positions_is_a_frame_per_cell(part: pd.DataFrame, keys: list[str]) -> None:
    got, want = aggregate.cell_data(part, keys), oracle_cell_data(part, keys)
    assert list(got) == list(want)
    for key, cell in want.items():
        assert list(got[key].values.items()) == list(cell.values.items())  # order too: unpaired resamples by it
        assert (got[key].n_expected, got[key].broken, got[key].stop) == (cell.n_expected, cell.broken, cell.stop)


@settings(max_examples=300, deadline=None)
@given(
    tables(),
    st.lists(st.sampled_from(DIMS), unique=True, max_size=2),
    st.booleans(),
    st.permutations(["d2", "d0", "d1"]),
)
def test_complexity_by_one_groupby_is_a_frame_per_row(
    part: pd.DataFrame, row_dims: list[str], by_dataset: bool, dataset_order: list[str]
) -> None:
    columns = ["metric", "dataset"] if by_dataset and "dataset" not in row_dims else ["metric"]
    ranks: dict[str, dict[str, int]] = {d: {} for d in DIMS}
    ranks["dataset"] = {name: i for i, name in enumerate(dataset_order)}
    row_keys = [key for key, _ in ordered_groups(part, row_dims, ranks)]
    layout = Layout(rows=row_dims, columns=columns, group=None, split=[], pooled=[])
    got = aggregate._complexity_values(part, row_keys, row_dims, layout, ranks)
    want = oracle_complexity(part, row_keys, row_dims, columns, ranks)
    assert got[1:3] == want[1:]  # got[3]: the values by column, the baseline delta's (test_complexity_delta...)
    assert got[0].keys() == want[0].keys()
    for rk, values in want[0].items():
        for a, b in zip(got[0][rk], values, strict=True):
            assert (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12))


@settings(max_examples=300, deadline=None)
@given(tables(), st.lists(st.sampled_from(DIMS), unique=True, max_size=3), st.permutations(["d2", "d0", "d1"]))
def test_ordered_keys_are_ordered_groups_keys(part: pd.DataFrame, dims: list[str], dataset_order: list[str]) -> None:
    ranks: dict[str, dict[str, int]] = {d: {} for d in DIMS}
    ranks["dataset"] = {name: i for i, name in enumerate(dataset_order)}
    if len(part) > 2:
        part = part.assign(ablation=part["ablation"].where(part.index % 3 != 1))  # missing values drop out
    assert ordered_keys(part, dims, ranks) == [key for key, _ in ordered_groups(part, dims, ranks)]
