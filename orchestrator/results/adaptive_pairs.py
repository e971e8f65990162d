"""The cells of an adaptive-seeds sweep and the comparisons the rounds judge: each ablation cell against its
baseline cell, as the deciding table (`seeds.table`, else the first table) pairs them.

The deciding table must show deltas (`delta: true`): the rounds stop on a delta's interval, and a table
without deltas would show numbers the rounds never judged while the deltas they judged appear nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.results.labels import display
from orchestrator.results.layout import cell_dims, table_key
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec, TableSpec


def cell_of(run: RunSpec) -> str:
    """A run's cell as adaptive.json names it: `backbone / dataset / axis=value / ablation`."""
    axes = [f"{key}={display(value)}" for key, value in run.axes.items()]
    return " / ".join([display(run.backbone), display(run.dataset), *axes, run.ablation])


@dataclass(frozen=True)
class Layout:
    """The cells of an adaptive sweep: runs by seed, and each ablation cell's baseline cell."""

    cells: dict[str, dict[int, RunSpec]]
    pairs: dict[str, str]
    """Ablation cell -> its baseline cell (the family of comparisons)."""
    facts: dict[str, dict[str, Any]]
    """Cell -> backbone, dataset, axes, ablation (display strings), to match table cells."""


def rule_table(spec: SweepSpec) -> TableSpec:
    """The table whose first metric and scale the rule reads (and whose cells it pairs)."""
    name = spec.seeds.table if spec.seeds is not None else None
    return next((t for t in spec.tables if t.name == name), spec.tables[0]) if name else spec.tables[0]


def check_rule_table(spec: SweepSpec) -> TableSpec:
    """The deciding table; SpecError when it shows no deltas (`delta: false`): the rounds would decide
    on deltas no table shows, and its stop column would sit beside numbers that were never tested."""
    table = rule_table(spec)
    if not table.delta:
        field = "seeds.table" if spec.seeds is not None and spec.seeds.table else "seeds (no seeds.table: the first)"
        raise SpecError(
            f"{spec.source}: tables.{table.name}.delta: false, but it is the table adaptive seeds decide on "
            f"({field}); set delta: true there, or name a table with deltas in seeds.table"
        )
    return table


def layout(spec: SweepSpec, runs: list[RunSpec]) -> Layout:
    """Group planned runs into cells and pair every ablation cell with its baseline cell as the deciding
    table pairs them (`rule_table`): the same table coordinates with ablation := the baseline row.

    A row that swaps the backbone (`model.backbone: vit_...`) is a cell of its resolved backbone; where the
    table pools the backbone (`split: []`) it is compared with the baseline of its other coordinates, as the
    table compares it. SpecError when the deciding table shows no deltas, or would pool two cells (or two
    runs of one seed) in one cell: the rounds and the table would then judge different comparisons."""
    baseline = next(iter(spec.ablations))
    table = check_rule_table(spec)
    dims = cell_dims(table, spec, f"{spec.source}: tables.{table.name}")
    cells: dict[str, dict[int, RunSpec]] = {}
    facts: dict[str, dict[str, Any]] = {}
    for run in runs:
        key = cell_of(run)
        seeds = cells.setdefault(key, {})
        if run.seed in seeds and seeds[run.seed].run_id != run.run_id:
            raise SpecError(
                f"{spec.source}: ablations.{run.ablation}: runs {seeds[run.seed].name!r} and {run.name!r} are one "
                f"cell ({key}) with the same seed; adaptive seeds pair one run per seed: give them their own rows"
            )
        seeds[run.seed] = run
        axes = {axis: display(value) for axis, value in run.axes.items()}
        facts[key] = {"backbone": display(run.backbone), "dataset": display(run.dataset), "axes": axes}
        facts[key]["ablation"] = run.ablation
    by_table = _table_cells(spec, table, dims, facts)
    if "ablation" not in dims:  # one ablation row (more would pool): nothing to compare
        return Layout(cells, {}, facts)
    at = dims.index("ablation")
    pairs = {}
    for key, tkey in ((k, table_key(facts[k], dims)) for k in cells if facts[k]["ablation"] != baseline):
        base = by_table.get((*tkey[:at], baseline, *tkey[at + 1 :]))
        if base is not None:
            pairs[key] = base
    return Layout(cells, pairs, facts)


def _table_cells(
    spec: SweepSpec, table: TableSpec, dims: list[str], facts: dict[str, dict[str, Any]]
) -> dict[tuple[str, ...], str]:
    """Table coordinates -> the cell there; SpecError where two cells would share one table cell."""
    out: dict[tuple[str, ...], str] = {}
    for key, fact in facts.items():
        other = out.setdefault(table_key(fact, dims), key)
        if other != key:
            mine, theirs = _flat(fact), _flat(facts[other])
            dim = next(d for d in mine if mine[d] != theirs.get(d))
            raise SpecError(
                f"{spec.source}: tables.{table.name}: cells would pool {dim} values ({theirs[dim]}, {mine[dim]}); "
                f"put {dim!r} in the table's rows, columns, group or split (adaptive seeds pair the table's cells)"
            )
    return out


def _flat(fact: dict[str, Any]) -> dict[str, str]:
    return {**{k: str(v) for k, v in fact.items() if k != "axes"}, **{k: str(v) for k, v in fact["axes"].items()}}
