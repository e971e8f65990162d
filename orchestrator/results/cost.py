"""Cost before submit: estimated device-hours per cell, from measured or site-declared throughput.

A smoke run of a cell (`submit --smoke`) trains a few batches of the real dataset on the real
device and records its training images/s (all processes together) and the size of the full
train split: `epochs x train images / images per s x processes` device-hours. The smoke batch is
at most 16, so on a GPU that is an upper bound (larger batches run faster).

Without a smoke measurement, a site file may declare a device's speed per backbone and input
size (`throughput:` in sites/*.yaml): `epochs x train images / declared images per s per device`
device-hours, which assumes the run's processes scale linearly (a lower bound when they do not).
The train split's size then comes from the dataset's files (trainers.datasets.sizes, no torch).
A smoke measurement wins over a declaration. Where neither applies, or the size cannot be had,
the cell is "unknown", never a guess.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orchestrator import store
from orchestrator.results import run_files
from orchestrator.sweep.plan import RunSpec, smoke_plan
from orchestrator.sweep.site import ThroughputEntry, load_site
from orchestrator.sweep.spec import SweepSpec

MEASURED = "measured"
SITE = "site-declared"


@dataclass(frozen=True)
class CellCost:
    """Estimated hours of one (backbone, dataset, ablation, axes) cell, all seeds together."""

    cell: str
    runs: int
    hours: float | None
    """None: unknown (see `note`)."""
    unit: str
    """GPU-hours, or CPU-hours when the throughput is a CPU's."""
    images_per_s: float | None
    """Measured (all processes together) or declared (one device)."""
    source: str | None = None
    """Where the estimate came from: measured (a smoke run), site-declared, or both (per run)."""
    note: str = ""
    """Why the cell is unknown, or which site device it assumes."""


@dataclass(frozen=True)
class RunCost:
    """The estimate of one run."""

    hours: float | None
    source: str | None
    unit: str
    images_per_s: float | None
    note: str


def run_hours(run: RunSpec, measured: run_files.Throughput) -> float | None:
    """Device-hours of one run from a smoke measurement of its cell (None without a train size)."""
    if measured.train_images is None:
        return None
    return _images(run, measured.train_images) / measured.images_per_s * measured.processes / 3600.0


def site_hours(run: RunSpec, entry: ThroughputEntry, train_images: int) -> float:
    """Device-hours of one run at a declared per-device speed (linear scaling over its processes)."""
    return _images(run, train_images) / entry.images_per_s / 3600.0


def _images(run: RunSpec, train_images: int) -> int:
    """Images the whole run trains on: epochs x the capped train split (max_samples, max_steps_per_epoch)."""
    from trainers.datasets.sizes import epoch_images

    data = run.config.data
    per_epoch = epoch_images(train_images, data.dataset.max_samples, run.config.max_steps_per_epoch, data.batch_size)
    return run.config.epochs * per_epoch


def match(entries: list[ThroughputEntry], run: RunSpec) -> ThroughputEntry | None:
    """The site entry for a run: same backbone and input size, precision and per-device batch where the
    entry names them; the most specific entry wins (duplicates are refused when the site file loads)."""
    config = run.config
    per_device = config.data.batch_size // (config.distributed.processes * config.distributed.grad_accum_steps)
    fits = [
        e
        for e in entries
        if e.backbone == config.model.backbone
        and e.image_size_px == config.data.image_size_px
        and e.precision in (None, config.precision)
        and e.batch_per_device in (None, per_device)
    ]
    fits.sort(key=lambda e: (e.precision is None, e.batch_per_device is None))
    return fits[0] if fits else None


def _unit(device: str) -> str:
    return "CPU-hours" if device.lower() == "cpu" else "GPU-hours"


class _Sizes:
    """Train-split sizes by dataset config, read once per distinct dataset (annotation files)."""

    def __init__(self) -> None:
        self._known: dict[str, int | None] = {}

    def of(self, run: RunSpec) -> int | None:
        from trainers.datasets.sizes import train_images

        dataset = run.config.data.dataset
        key = dataset.model_dump_json(exclude={"max_samples"})
        if key not in self._known:
            self._known[key] = train_images(dataset)
        return self._known[key]


def _any_folder(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return any(not entry.name.startswith(".") for entry in entries)
    except OSError:
        return False


def run_cost(
    run: RunSpec, measured: run_files.Throughput | None, entries: list[ThroughputEntry], sizes: _Sizes
) -> RunCost:
    """One run's estimate: its cell's smoke measurement, else a matching site entry, else unknown (with why)."""
    if measured is not None:
        if measured.train_images is None:  # a smoke run that did not record it: the files may tell
            measured = dataclasses.replace(measured, train_images=sizes.of(run))
        hours = run_hours(run, measured)
        note = "" if hours is not None else "train split size unknown"
        return RunCost(hours, MEASURED, _unit(measured.device), measured.images_per_s, note)
    entry = match(entries, run) if entries else None  # no site entries: 100,000 configs not read for none
    if entry is None:
        where = f"{run.config.model.backbone} at {run.config.data.image_size_px} px"
        return RunCost(None, None, "GPU-hours", None, f"no smoke measurement or site throughput for {where}")
    train = sizes.of(run)
    if train is None:
        note = f"train split size of {run.dataset} unknown here (its files are not readable)"
        return RunCost(None, SITE, _unit(entry.device), entry.images_per_s, note)
    return RunCost(site_hours(run, entry, train), SITE, _unit(entry.device), entry.images_per_s, entry.device)


def site_throughput(spec: SweepSpec) -> list[ThroughputEntry]:
    """The throughput declared in the spec's site file (none without one)."""
    return load_site(Path(spec.site)).throughput if spec.site else []


def estimate(spec: SweepSpec, runs: list[RunSpec]) -> list[CellCost]:
    """One CellCost per cell, in plan order."""
    smoke_root = store.sweep_root(spec, smoke=True)
    entries = site_throughput(spec)
    sizes = _Sizes()
    cells: dict[str, list[tuple[RunSpec, run_files.Throughput | None]]] = defaultdict(list)
    # Without any smoke run folder there is nothing to measure: skip planning 50,000 smoke variants.
    smokes = smoke_plan(runs) if _any_folder(smoke_root / "runs") else [None] * len(runs)
    for run, smoke in zip(runs, smokes, strict=True):
        cell = run.name.rsplit("/", 1)[0]  # the name without its seed
        measured = run_files.throughput(store.run_path(smoke_root, smoke.run_id)) if smoke is not None else None
        cells[cell].append((run, measured))
    return [_cell(cell, _member_costs(members, entries, sizes)) for cell, members in cells.items()]


def _member_costs(
    members: list[tuple[RunSpec, run_files.Throughput | None]], entries: list[ThroughputEntry], sizes: _Sizes
) -> list[RunCost]:
    """Each run of one cell priced by its own smoke measurement, else by another seed's of the cell.

    A cell's runs differ by the seed alone, so one seed's measured speed is the cell's: adaptive
    seeds smoke-run only the first round's seeds (plan.smoke_seeds), and one seed's smoke run may
    have failed; without this, the cell (and the adaptive minimum/maximum) was "unknown"."""
    shared = next((measured for _, measured in members if measured is not None), None)
    return [run_cost(run, measured or shared, entries, sizes) for run, measured in members]


def _cell(cell: str, members: list[RunCost]) -> CellCost:
    """A cell's total: known only when every run of it is, in one unit."""
    sources = sorted({m.source for m in members if m.source is not None})
    units = {m.unit for m in members if m.source is not None}
    unknown = [m.note for m in members if m.hours is None]
    speed = next((m.images_per_s for m in members if m.images_per_s is not None), None)
    unit = next(iter(units)) if len(units) == 1 else "GPU-hours"
    source = "+".join(sources) or None
    if unknown or len(units) != 1:
        note = unknown[0] if unknown else "its runs mix CPU and GPU throughput"
        return CellCost(cell, len(members), None, unit, speed, source, note)
    hours = sum(m.hours for m in members if m.hours is not None)
    devices = sorted({m.note for m in members if m.source == SITE})
    return CellCost(cell, len(members), hours, unit, speed, source, ", ".join(devices))


def summary(costs: list[CellCost]) -> str:
    """One line: the total of the known cells (how many measured, how many site-declared), and the unknown."""
    unknown = [c for c in costs if c.hours is None]
    if len(unknown) == len(costs):
        return (
            "estimated compute: unknown (no smoke measurement or site throughput; `submit --smoke` measures"
            " each cell's throughput, a site file's `throughput:` may declare it)"
        )
    totals: dict[str, float] = defaultdict(float)
    for cost in costs:
        if cost.hours is not None:
            totals[cost.unit] += cost.hours
    known = ", ".join(f"{hours_text(hours)} {unit}" for unit, hours in totals.items())
    counts = {name: sum(c.hours is not None and c.source == name for c in costs) for name in (MEASURED, SITE)}
    counts["measured and site-declared"] = len(costs) - len(unknown) - sum(counts.values())
    over = " and ".join(f"{n} {name}" for name, n in counts.items() if n)
    tail = f"; {len(unknown)} of {len(costs)} cells unknown ({unknown[0].note})" if unknown else ""
    return f"estimated compute: {known} over {over} cells{tail}"


def hours_text(hours: float) -> str:
    """Device-hours as people read them: `1,234`, `123`, `12.3`, `1.23`, `0.0123`, `<0.001` (`.3g`
    printed a sweep of 1,234 hours as `1.23e+03` and a smoke cell of 0.00001 hours as `1e-05`)."""
    if not math.isfinite(hours):
        return str(hours)
    if abs(hours) >= 99.5:  # .3g rounds 999.6 to `1e+03`
        return f"{hours:,.0f}"
    if hours != 0 and abs(hours) < 0.001:
        return "<0.001" if hours > 0 else ">-0.001"
    return f"{hours:.3g}"


def hours_verdict(costs: list[CellCost], limit_h: float) -> tuple[Literal["ok", "over", "unknown"], str | None]:
    """`budget.max_gpu_hours` against the sweep's estimate: ("ok", None), or ("unknown" | "over", why).
    Fails closed: a cell with no estimate makes the whole sweep's hours unknown."""
    unknown = sum(c.hours is None for c in costs)
    total_h = sum(c.hours or 0.0 for c in costs)
    if unknown:
        first = next(c for c in costs if c.hours is None)
        example = f"{first.cell}: {first.note}"
        return "unknown", f"{unknown} of {len(costs)} cells have no estimate, e.g. {example} (`submit --smoke` first)"
    if total_h > limit_h:
        return "over", f"the sweep is estimated at {hours_text(total_h)} device-hours, over max_gpu_hours {limit_h:g}"
    return "ok", None
