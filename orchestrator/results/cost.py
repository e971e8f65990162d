"""Cost before submit: estimated device-hours per cell, from throughput a `--smoke` run measured.

A smoke run of a cell trains a few batches of the real dataset on the real device and records
its training images/s and the size of the full train split. The estimate of the real run is
`epochs x train images / images per s x processes`; without a smoke measurement the cell is
"unknown", never a guess. The smoke batch is at most 16, so on a GPU the estimate is an upper
bound (larger batches run faster); on the node the smoke run ran on, it is the same device.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from orchestrator.results import reader
from orchestrator.sweep import store
from orchestrator.sweep.plan import RunSpec, smoke_plan
from orchestrator.sweep.spec import SweepSpec


@dataclass(frozen=True)
class CellCost:
    """Estimated hours of one (backbone, dataset, ablation, axes) cell, all seeds together."""

    cell: str
    runs: int
    hours: float | None
    """None: not measured."""
    unit: str
    """GPU-hours, or CPU-hours when the smoke run ran on a CPU."""
    images_per_s: float | None


def run_hours(run: RunSpec, measured: reader.Throughput) -> float | None:
    """Device-hours of one run from a smoke measurement of its cell (None without a train size)."""
    train = measured.train_images
    if train is None:
        return None
    cap = run.config.data.dataset.max_samples
    train = min(train, cap) if cap is not None else train
    steps = run.config.max_steps_per_epoch
    per_epoch = min(train, steps * run.config.data.batch_size) if steps is not None else train
    return run.config.epochs * per_epoch / measured.images_per_s * measured.processes / 3600.0


def estimate(spec: SweepSpec, runs: list[RunSpec]) -> list[CellCost]:
    """One CellCost per cell, in plan order."""
    smoke_root = store.sweep_root(spec, smoke=True)
    cells: dict[str, list[tuple[RunSpec, reader.Throughput | None]]] = defaultdict(list)
    for run, smoke in zip(runs, smoke_plan(runs), strict=True):
        cell = run.name.rsplit("/", 1)[0]  # the name without its seed
        cells[cell].append((run, reader.throughput(store.run_path(smoke_root, smoke.run_id))))
    out = []
    for cell, members in cells.items():
        hours = [run_hours(run, measured) if measured else None for run, measured in members]
        measured = [m for _, m in members if m is not None]
        known = None if any(h is None for h in hours) else sum(h for h in hours if h is not None)
        unit = "CPU-hours" if measured and measured[0].device.lower() == "cpu" else "GPU-hours"
        speed = measured[0].images_per_s if measured else None
        out.append(CellCost(cell, len(members), known, unit, speed))
    return out


def summary(costs: list[CellCost]) -> str:
    """One line: the total of the measured cells, and how many are unknown."""
    unknown = [c for c in costs if c.hours is None]
    if len(unknown) == len(costs):
        return "estimated compute: unknown (no smoke measurement; `submit --smoke` measures each cell's throughput)"
    totals: dict[str, float] = defaultdict(float)
    for cost in costs:
        if cost.hours is not None:
            totals[cost.unit] += cost.hours
    known = ", ".join(f"{hours:.3g} {unit}" for unit, hours in totals.items())
    tail = f"; {len(unknown)} of {len(costs)} cells unknown (no smoke measurement)" if unknown else ""
    return f"estimated compute: {known} over {len(costs) - len(unknown)} measured cells{tail}"
