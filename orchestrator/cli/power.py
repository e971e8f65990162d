"""`plan` for adaptive seeds (minimum, expected, maximum device-hours) and `plan --detect` (seeds to detect a delta)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from orchestrator import store, textsafe
from orchestrator.results import adaptive, cost, power, stats
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec


def _groups(runs: list[RunSpec]) -> dict[power.Key, list[RunSpec]]:
    out: dict[power.Key, list[RunSpec]] = defaultdict(list)
    for run in runs:
        out[power.cell_key(run)].append(run)
    return out


def _hours_per_run(spec: SweepSpec, runs: list[RunSpec]) -> tuple[float | None, str]:
    """Mean estimated device-hours of one run of the group (None: unknown), and the unit."""
    costs = cost.estimate(spec, runs)
    if any(c.hours is None for c in costs) or not costs:
        return None, "GPU-hours"
    return sum(c.hours or 0.0 for c in costs) / len(runs), costs[0].unit


Source = tuple[SweepSpec, Path]
"""A finished sweep named with `--variance-from`: its spec (the folder's sweep.yaml) and its folder."""


def variance_source(folder: str | None, detect: float | None, spec: SweepSpec) -> Source | None:
    """`--variance-from FOLDER`, checked before the plan is printed: only `--detect` and adaptive seeds read it,
    and it must be a sweep's output folder that can be read (a SpecError, one line, otherwise)."""
    if folder is None:
        return None
    if detect is None and spec.seeds is None:
        raise SpecError(
            "plan: --variance-from is read only by --detect DELTA and by adaptive seeds (`seeds:` in the spec); "
            "add --detect DELTA"
        )
    root = Path(folder)
    what = f"plan: --variance-from {folder}"
    if not root.exists():
        raise SpecError(f"{what}: no such folder")
    if not root.is_dir():
        raise SpecError(f"{what}: not a folder (give a finished sweep's output folder, the one with its sweep.yaml)")
    if not os.access(root, os.R_OK | os.X_OK):
        raise SpecError(f"{what}: folder not readable (permission denied)")
    if not (root / store.SWEEP_FILE).is_file():
        raise SpecError(f"{what}: no {store.SWEEP_FILE} in it; is this a sweep's output folder (its output_dir)?")
    from orchestrator.results.collect import load_snapshot

    return load_snapshot(root), root.resolve()


def print_adaptive(spec: SweepSpec, runs: list[RunSpec], console: Console, source: Source | None) -> None:
    """Minimum (every cell stops after round 1), expected (no delta real, at a known spread) and maximum
    (every cell runs to max) device-hours of an adaptive-seeds sweep."""
    assert spec.seeds is not None
    seeds = spec.seeds
    table = adaptive.rule_table(spec)
    family = len(adaptive.layout(spec, runs).pairs)
    known = power.spreads(spec, table, source)
    console.print(
        f"adaptive seeds: {seeds.initial}, then +{seeds.step} per round up to {seeds.max} (looks at "
        f"{', '.join(map(str, seeds.looks))} seeds); stop when the {adaptive.design(spec, family).rule.describe()} "
        f"on {table.metrics[0]}, or when it is futile (under {seeds.futility:.0%} predicted chance to by max); "
        f"{family} deltas corrected together (Holm)",
        markup=False,
    )
    lows, mids, highs, unit, notes = 0.0, 0.0, 0.0, "GPU-hours", []
    for key, group in _groups(runs).items():
        per_run, unit = _hours_per_run(spec, group)
        if per_run is None:
            console.print("  device-hours: unknown (no smoke measurement or site throughput; `submit --smoke`)")
            return
        cells = len(group) // seeds.max
        rows = max(1, len(spec.ablations) - 1)
        lows += per_run * cells * seeds.initial
        highs += per_run * cells * seeds.max
        spread = known.get(key)
        if spread is None or mids < 0:
            mids = -1.0
            continue
        row_n, base_n = power.expected_seeds(spec, spread.sd, rows, family)
        mids += per_run * (cells / len(spec.ablations)) * (rows * row_n + base_n)
        notes.append(f"{key[0]} on {key[1]}: sd of differences {spread.sd:.3g} from {spread.source}")
    expected = "unknown (no seed spread yet: a finished sweep (--variance-from), a pilot round or the site's seed_sd)"
    if mids >= 0:
        expected = f"{cost.hours_text(mids)} if no delta is real ({'; '.join(notes)})"
    line = f"  {unit}: minimum {cost.hours_text(lows)}, maximum {cost.hours_text(highs)}; expected {expected}"
    console.print(textsafe.terminal(line), markup=False)  # the --variance-from folder's name, dataset labels


def print_detect(spec: SweepSpec, runs: list[RunSpec], delta: float, console: Console, source: Source | None) -> None:
    """Seeds per cell a paired t-test needs to detect `delta` (alpha 0.05, power 0.8), per backbone and dataset."""
    table = adaptive.rule_table(spec) if spec.seeds is not None else spec.tables[0]
    known = power.spreads(spec, table, source)
    out = RichTable("backbone", "dataset", "sd of differences", "from", "seeds per cell", "estimate")
    for key, group in _groups(runs).items():
        spread = known.get(key)
        shown = [textsafe.rich(part) for part in key]  # dataset labels: `[/]` is text, not markup
        if spread is None:
            out.add_row(*shown, "unknown", "no finished sweep, pilot round or site seed_sd", "-", "-")
            continue
        needed = stats.seeds_needed(delta, spread.sd)
        per_run, unit = _hours_per_run(spec, group)
        seeds_now = max(1, len({run.seed for run in group}))
        cells = len(group) // seeds_now
        total = None if per_run is None or needed is None else per_run * cells * needed
        hours = "unknown" if total is None else f"{cost.hours_text(total)} {unit}"
        out.add_row(*shown, f"{spread.sd:.3g}", textsafe.rich(spread.source), str(needed or "beyond reach"), hours)
    metric = textsafe.rich(table.metrics[0])
    console.print(f"seeds to detect a delta of {delta:g} ({metric}, paired t-test, alpha 0.05, power 0.8):")
    console.print(out)
