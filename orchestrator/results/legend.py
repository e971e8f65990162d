"""A table's footnotes: what the numbers are, how sure the deltas are, which runs were left out."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.results import stats
from orchestrator.results.labels import dim_title, metric_label
from orchestrator.results.layout import Layout
from orchestrator.results.model import NOISE_MARK
from orchestrator.results.stats import Comparison
from orchestrator.sweep.spec import SweepSpec, TableSpec
from trainers import contract

if TYPE_CHECKING:
    import pandas as pd

MAX_LISTED = 10
"""Broken runs named in a table's footnote; `collect` and `status` print them all."""


def legend(
    spec: SweepSpec, table: TableSpec, layout: Layout, metrics: list[str], runs: pd.DataFrame | None = None
) -> list[str]:
    """What the numbers are (`runs`: the table's runs, for the torch version that counted GFLOPs)."""
    baseline = next(iter(spec.ablations))
    what = ", ".join(metric_label(m, table.scale_of(m), table.metric_labels) for m in metrics)
    delta = f", (Δ [95% interval]) against '{baseline}'" if table.delta else ""
    best = {
        "max": "; bold: the highest, where significantly above the runner-up",
        "min": "; bold: the lowest, where significantly below the runner-up",
        "none": "",
    }[table.best]
    if layout.group and best:
        best += f" of its {dim_title(layout.group).lower()}"
    notes = [
        f"Cells: {what} as mean ± std over seeds{delta}; (n/N seeds) where runs are missing, "
        f"(k broken) where runs were left out; '-' where none finished{best}."
    ]
    if table.complexity:
        notes.append(complexity_note(runs))
    return notes


def complexity_note(runs: pd.DataFrame | None) -> str:
    """What GFLOPs and params count, and with which torch (the counter's rules are torch's)."""
    column = contract.TORCH_VERSION
    versions = sorted(set(runs[column].dropna().astype(str).tolist())) if runs is not None and column in runs else []
    if not versions:  # no finished run says: the profile counted with this machine's torch
        from importlib.metadata import PackageNotFoundError, version

        try:
            versions = [version("torch")]
        except PackageNotFoundError:
            versions = ["unknown"]
    return (
        "GFLOPs: forward pass at batch 1 and the run's input size, counted by torch.utils.flop_counter "
        f"(torch {', '.join(versions)}): convolutions, linear layers and matrix products (attention QK^T "
        "and AV included); not normalisation, activations, softmax, pooling or element-wise ops (so "
        "SCRA's gate multiply is not counted). GFLOPs = 2 x multiply-adds; fvcore/timm report "
        "multiply-adds. Params: exact count of the model trained; (Δ%) relative to the baseline row."
    )


def noise_notes(
    counts: Sequence[int],
    comparisons: list[Comparison],
    table: TableSpec,
    spreads: list[tuple[float, int]],
    power: bool = True,
) -> list[str]:
    """Method, seeds per cell, the smallest delta the seeds could detect and the seeds `detect_delta` needs.

    `counts`: values per score cell; `spreads`: (std over seeds, n) of the cells with 2 or more;
    `power`: with the detectable-delta notes (a table of several metrics gives them per metric).
    """
    counts = [n for n in counts if n > 0]
    if not counts:
        return []
    if max(counts) < 2:
        note = (
            "1 seed per cell: no interval and no test, so no delta here can be told from noise "
            f"(an exact sign-flip test needs {stats.MIN_SIGN_FLIP_SEEDS} seeds per cell to reach p < {stats.ALPHA:g})."
        )
        if table.detect_delta is not None:
            note += f" How many seeds {table.detect_delta:g} needs is known once 2 seeds show the spread."
        return [note]
    notes = [_method(comparisons), *_no_spread_note(comparisons)] if table.delta and comparisons else []
    low, high = min(counts), max(counts)
    notes.append(
        f"n per cell: {low} seed{'s' if low > 1 else ''}." if low == high else f"n per cell: {low}-{high} seeds."
    )
    if power:
        notes.extend(power_notes(statistics.median(counts), comparisons, table, spreads))
    return notes


def _method(comparisons: list[Comparison]) -> str:
    """The deltas' method: pairing, interval, test and the Holm family (the comparisons with a p-value)."""
    unpaired = sum(1 for c in comparisons if not c.paired)
    partial = sum(1 for c in comparisons if c.paired and c.left_out)
    tested = sum(1 for c in comparisons if c.p is not None)
    if unpaired == len(comparisons):
        pairing, test = "unpaired (Welch: the cells share fewer than 2 seeds)", "Welch's t-test"
    else:
        parts = [f"on the seeds both cells have, where one lacks some: {partial}"] if partial else []
        parts += [f"Welch, unpaired, where fewer than 2 seeds are shared: {unpaired}"] if unpaired else []
        pairing = "paired by seed" + (f" ({'; '.join(parts)})" if parts else "")
        test = f"exact sign-flip test up to {stats.EXACT_MAX_SEEDS} pairs, else t-test"
        test += " (Welch's unpaired)" if unpaired else ""
    return (
        f"Δ {pairing}; 95% t-interval below {stats.BOOTSTRAP_MIN_SEEDS} seeds, BCa bootstrap from "
        f"{stats.BOOTSTRAP_MIN_SEEDS}; p: {test}, Holm-adjusted across the table's {tested} tested comparison(s). "
        f"{NOISE_MARK} not significant: Holm-adjusted p >= {stats.ALPHA:g}, or too few seeds for a test "
        "(each interval is its comparison's own 95%)."
    )


def _no_spread_note(comparisons: list[Comparison]) -> list[str]:
    """Why a delta of 2 or more seeds shows no interval: its differences did not spread at all (every
    seed moved by the same amount, common with a small test set's quantised accuracy), and an interval
    of zero width would claim the delta exact."""
    flat = sum(1 for c in comparisons if c.n >= 2 and not c.has_interval)
    if not flat:
        return []
    return [
        f"{flat} delta(s) without an interval: every seed differs from the baseline by the same amount, "
        "so no spread was seen to size a 95% interval (not one of zero width)."
    ]


def power_notes(
    n: float, comparisons: list[Comparison], table: TableSpec, spreads: list[tuple[float, int]]
) -> list[str]:
    """Detectable delta at 80% power with the seeds run; seeds needed for `detect_delta`. The spread is
    pooled over `comparisons` and `spreads`: give them one metric's (its units) at a time."""
    paired = [(c.spread, c.n) for c in comparisons if c.paired and c.spread is not None]
    spread = stats.pooled_spread(paired)
    what = "sd of paired differences"
    if spread is None:
        within = stats.pooled_spread(spreads)
        spread = None if within is None else within * 2**0.5
        what = "√2 x pooled sd over seeds"
    seeds = int(n)
    if spread is None or not spread > 0 or seeds < 2:
        return []  # no spread seen (every seed agrees): nothing to size a test by
    d = table.decimals
    detectable = stats.detectable_delta(seeds, spread)
    notes = [
        f"With {seeds} seeds and the observed spread ({what} {spread:.{d}f}), the smallest delta detectable "
        f"at {stats.POWER:.0%} power (paired t-test, p < {stats.ALPHA:g}) is {detectable:.{d}f}."
    ]
    if table.detect_delta is not None:
        needed = stats.seeds_needed(table.detect_delta, spread)
        notes.append(
            f"Detecting a delta of {table.detect_delta:g} needs {needed} seeds."
            if needed is not None
            else f"A delta of {table.detect_delta:g} is beyond reach at this spread "
            f"(more than {stats.MAX_SEEDS_SEARCHED:,} seeds)."
        )
    return notes


def broken_runs(part: pd.DataFrame) -> list[str]:
    """`run_id name: reason` of the table's runs left out of the numbers (the first MAX_LISTED)."""
    rows = part[part["broken"].astype(bool)].drop_duplicates("run_id")
    lines = []
    for _, row in rows.iterrows():
        reason = row.get("problem")
        if not isinstance(reason, str) or not reason:
            reason = f"completed without a usable {row['broken_column']}"
        lines.append(f"{row['run_id']} {row['name']}: {reason}")
    if len(lines) > MAX_LISTED:
        lines = [*lines[:MAX_LISTED], f"... and {len(lines) - MAX_LISTED} more (`orchestrate collect` lists all)."]
    return lines
