"""Power-aware planning: seeds per cell to detect a delta, and the expected cost of adaptive seeds.

The seed-to-seed spread comes from, in this order: a finished sweep named with `--variance-from`
(its run folders), this sweep's own finished runs (a pilot round), or the site file's `seed_sd:`.
Observed spreads are the pooled sd of paired differences (ablation cell minus baseline cell, same
seed) per backbone and dataset; a declared per-cell sd becomes sqrt(2) x sd (no pairing gain
assumed, so the estimate errs on more seeds). Seeds needed: a paired t-test at alpha 0.05 with 80%
power (orchestrator/results/stats.py, noncentral t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from orchestrator.results import adaptive, stats
from orchestrator.results.labels import display
from orchestrator.results.sequential import replay
from orchestrator.store import run_states
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, TableSpec

Key = tuple[str, str]
"""(backbone, dataset) as the tables show them."""


@dataclass(frozen=True)
class Spread:
    """The sd of paired differences of one backbone on one dataset, and where it came from."""

    sd: float
    pairs: int
    """Paired seeds it stands on (0: declared)."""
    source: str


def observed(spec: SweepSpec, root: Path, table: TableSpec, label: str) -> dict[Key, Spread]:
    """Pooled sd of paired differences per (backbone, dataset) over the finished runs under `root`."""
    runs = plan(spec)
    cells = adaptive.layout(spec, runs)
    found = adaptive.values(table, run_states.inspect(runs, root))
    groups: dict[Key, list[tuple[float, int]]] = {}
    for key, base in cells.pairs.items():
        ours, theirs = found.get(key, {}), found.get(base, {})
        diffs = [ours[s] - theirs[s] for s in sorted(set(ours) & set(theirs))]
        if len(diffs) >= 2:
            facts = cells.facts[key]
            mean = sum(diffs) / len(diffs)
            sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
            groups.setdefault((facts["backbone"], facts["dataset"]), []).append((sd, len(diffs)))
    out: dict[Key, Spread] = {}
    for group, found_spreads in groups.items():
        pooled = stats.pooled_spread(found_spreads)
        pairs = sum(n for _, n in found_spreads)
        if pooled is not None and pooled > 0:
            out[group] = Spread(pooled, pairs, f"{label} ({pairs} pairs)")
    return out


def declared(spec: SweepSpec, table: TableSpec) -> dict[Key, Spread]:
    """The site file's `seed_sd:` entries for the table's metric, as sd of paired differences."""
    from orchestrator.sweep.site import load_site

    if not spec.site:
        return {}
    entries = load_site(Path(spec.site)).seed_sd
    return {
        (display(e.backbone), display(e.dataset)): Spread(math.sqrt(2) * e.sd, 0, f"site-declared sd {e.sd:g}")
        for e in entries
        if e.metric == table.metrics[0]
    }


def spreads(spec: SweepSpec, table: TableSpec, variance_from: tuple[SweepSpec, Path] | None) -> dict[Key, Spread]:
    """Every source, the first that knows a (backbone, dataset) wins: finished sweep, pilot round, site."""
    out = declared(spec, table)
    if spec.output_path.is_dir():
        out.update(observed(spec, spec.output_path, table, f"pilot round in {spec.output_path}"))
    if variance_from is not None:
        other, root = variance_from
        out.update(observed(other, root, table, f"finished sweep {root}"))
    return out


def expected_seeds(spec: SweepSpec, spread: float, rows: int, family: int, draws: int = 4000) -> tuple[float, float]:
    """Mean seeds (per ablation cell, of their baseline cell) the adaptive rule runs when no delta is real,
    at this sd of paired differences (simulated, fixed seed; the rows share their baseline's noise; futility
    stops included, Holm counted among the simulated rows)."""
    import numpy as np

    design = adaptive.design(spec, family)
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, spread / math.sqrt(2), (draws, rows + 1, design.seeds[-1]))
    used, _ = replay(noise[:, 1:] - noise[:, :1], design)
    return float(used.mean()), float(used.max(axis=1).mean())


def cell_key(run: RunSpec) -> Key:
    """(backbone, dataset) of a run as the tables show them."""
    return display(run.backbone), display(run.dataset)
