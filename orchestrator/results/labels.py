"""Names shown in tables: metric columns and labels, dimension titles and values."""

from __future__ import annotations

import math
from collections.abc import Sequence

from orchestrator.sweep.spec import SweepSpec
from orchestrator.sweep.values import display as display  # the rule the spec's distinct-labels check uses
from trainers import contract

FIXED_DIMS = ("backbone", "dataset", "ablation", "metric", "seed")
METRIC_LABELS = {
    "top1": "top-1",
    "top5": "top-5",
    "macro_f1": "macro F1",
    "micro_f1": "micro F1",
    "weighted_f1": "weighted F1",
    "macro_precision": "macro precision",
    "macro_recall": "macro recall",
    "micro_precision": "micro precision",
    "micro_recall": "micro recall",
    "exact_match": "exact match",
    "label_accuracy": "per-label accuracy",
    "hamming_accuracy": "per-label accuracy",
    "loss": "loss",
}
LEVEL_LABELS = {"super": "super-class", "sub": "sub-class"}


def metric_column(metric: str) -> str:
    """Column of runs.csv holding a metric: `top1` -> `test.top1`; `val.top1` stays."""
    return contract.metric_column(metric)


def metric_label(metric: str, scale: float = 100.0, overrides: dict[str, str] | None = None) -> str:
    """Header of a metric: `super.macro_f1` -> `super-class macro F1 (%)`."""
    if overrides and metric in overrides:
        return overrides[metric]
    parts = metric_column(metric).split(".")
    split, rest = parts[0], parts[1:]
    base = METRIC_LABELS.get(rest[-1], rest[-1].replace("_", " ")) if rest else metric
    levels = [LEVEL_LABELS.get(p, p.replace("_", " ")) for p in rest[:-1]]
    words = " ".join([*levels, base])
    prefix = "val " if split == "val" else ""
    unit = " (%)" if scale == 100.0 and contract.is_fraction(metric_column(metric)) else ""
    return f"{prefix}{words}{unit}"


def axis_dims(spec: SweepSpec) -> list[str]:
    """Extra grid axes (not backbone, dataset, seed): table dimensions named as in `grid:`."""
    return [axis for axis in spec.grid if axis not in ("backbone", "dataset", "seed")]


def axis_short(axis: str) -> str:
    """An axis as tables name it: its last segment, `model.head_dropout` -> `head_dropout`;
    `loss.name` -> `loss` (a bare `name` says nothing)."""
    parts = axis.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def dim_title(dim: str) -> str:
    """Header word of a dimension: `model.head_dropout` -> `head_dropout`, `ablation` -> `Ablation`."""
    return dim.capitalize() if dim in FIXED_DIMS else axis_short(dim)


def key_text(dims: Sequence[str], values: Sequence[str]) -> str:
    """`Baseline (head_dropout=0.2)`: the first value plain, axis values as key=value."""
    parts = [v if d in FIXED_DIMS else f"{axis_short(d)}={v}" for d, v in zip(dims, values, strict=True)]
    if not parts:
        return ""
    first, rest = parts[0], parts[1:]
    if dims[0] not in FIXED_DIMS:
        return ", ".join(parts)
    return first + (f" ({', '.join(rest)})" if rest else "")


def key_text_columns(dims: Sequence[str], values: Sequence[str]) -> str:
    """Column header: values joined; axis values as key=value."""
    return " ".join(v if d in FIXED_DIMS else f"{axis_short(d)}={v}" for d, v in zip(dims, values, strict=True))


def decimals_for(smallest: float, at_least: int, digits: int = 3) -> int:
    """Decimals that show `digits` significant digits of the smallest value (tiny test models)."""
    if smallest <= 0 or math.isnan(smallest):
        return at_least
    return max(at_least, digits - 1 - math.floor(math.log10(smallest)))
