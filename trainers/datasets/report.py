"""The dataset analysis report 001 did by hand, for any configured dataset:

- class counts and percentages per split (per level for hierarchical datasets, positives
  per label plus unlabelled images for multi-label ones);
- the imbalance ratio per split (largest / smallest non-empty class);
- image file-size statistics per class (count, mean, std, min, quartiles, max, bytes).

File-backed datasets are read through their torch-free index (no image is decoded);
only the in-memory `digits` goes through the torch side (and has no files to size).
`orchestrate datasets describe` prints and writes these tables (orchestrator.datasets_cmd).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainers.config import DataConfig
from trainers.datasets.index import IN_MEMORY, SPLITS, resolve_splits

NO_LABEL = "(no label)"
NOVEL = "novel"
ALL = "(all)"


@dataclass
class DatasetView:
    """Targets (and files when there are some) of each split: all a report needs."""

    task: str
    class_names: list[str]
    super_class_names: list[str]
    novel_slot: bool
    targets: dict[str, np.ndarray]
    paths: dict[str, list[Path]] | None
    info: dict[str, Any]


def dataset_view(data: DataConfig) -> DatasetView:
    """The splits of a configured dataset as the trainer would make them (without caps)."""
    ds = data.dataset
    if ds.name in IN_MEMORY:
        from trainers.datasets.registry import build_splits  # torch side: in-memory images

        built = build_splits(data)
        targets = {s: built.split(s).targets for s in SPLITS}
        return DatasetView(
            built.task, built.class_names, built.super_class_names, built.novel_slot, targets, None, built.info
        )
    resolved = resolve_splits(ds)
    return DatasetView(
        resolved.task,
        resolved.class_names,
        resolved.super_class_names,
        resolved.novel_slot,
        {s: resolved.split(s).targets for s in SPLITS},
        {s: resolved.split(s).paths for s in SPLITS},
        resolved.info,
    )


def _levels(view: DatasetView) -> list[tuple[str, list[str], Any]]:
    """(level, class names, targets -> per-class counts) for each level of the label structure."""
    if view.task == "multilabel":
        names = [*view.class_names, NO_LABEL]
        return [("label", names, lambda t: np.append(t.sum(axis=0), (t.sum(axis=1) == 0).sum()))]
    if view.task == "hierarchical":
        subs = [*view.class_names, *([NOVEL] if view.novel_slot else [])]
        return [
            ("super", view.super_class_names, lambda t: np.bincount(t[:, 0], minlength=len(view.super_class_names))),
            ("sub", subs, lambda t: np.bincount(t[:, 1], minlength=len(subs))),
        ]
    return [("class", view.class_names, lambda t: np.bincount(t, minlength=len(view.class_names)))]


def class_counts(view: DatasetView) -> pd.DataFrame:
    """One row per (level, class): `<split>` count and `<split>_pct` (percent of the split's
    images; for multi-label, of images carrying the label) for each split, then totals."""
    frames = []
    for level, names, count in _levels(view):
        table = pd.DataFrame({"level": level, "class": names})
        total = np.zeros(len(names), dtype=np.int64)
        for split in SPLITS:
            targets = view.targets[split]
            counts = count(targets).astype(np.int64) if len(targets) else np.zeros(len(names), dtype=np.int64)
            table[split] = counts
            table[f"{split}_pct"] = 100.0 * counts / len(targets) if len(targets) else 0.0
            total += counts
        table["total"] = total
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def imbalance(counts: pd.DataFrame, images: dict[str, int]) -> pd.DataFrame:
    """Per level and split: images, classes, empty classes, largest and smallest non-empty
    class and their ratio (`images` holds each split's image count and the total)."""
    rows = []
    for level, group in counts.groupby("level", sort=False):
        real = group[group["class"] != NO_LABEL]
        for split in [*SPLITS, "total"]:
            present = real[split][real[split] > 0]
            ratio = float(present.max() / present.min()) if len(present) else float("nan")
            rows.append(
                {
                    "level": level,
                    "split": split,
                    "images": images[split],
                    "classes": len(real),
                    "empty_classes": int((real[split] == 0).sum()),
                    "largest": int(present.max()) if len(present) else 0,
                    "smallest": int(present.min()) if len(present) else 0,
                    "imbalance_ratio": round(ratio, 3),
                }
            )
    return pd.DataFrame(rows)


def file_sizes(view: DatasetView, threads: int = 16) -> pd.DataFrame | None:
    """File-size statistics in bytes per class over every split (sub-class for hierarchical
    datasets, each label's positives for multi-label ones), and over all images; None
    for in-memory datasets."""
    if view.paths is None:
        return None
    paths = [p for s in SPLITS for p in view.paths[s]]
    # Cluster file systems answer many small stats faster in parallel.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        sizes = np.array(list(pool.map(lambda p: os.stat(p).st_size, paths)), dtype=np.int64)
    targets = np.concatenate([view.targets[s] for s in SPLITS])
    level, names, _ = _levels(view)[-1]
    groups: list[tuple[str, np.ndarray]] = []
    for index, name in enumerate(names):
        if view.task == "multilabel":
            mask = targets.sum(axis=1) == 0 if name == NO_LABEL else targets[:, index] > 0.5
        elif view.task == "hierarchical":
            mask = targets[:, 1] == index
        else:
            mask = targets == index
        groups.append((name, sizes[mask]))
    groups.append((ALL, sizes))
    rows = []
    for name, values in groups:
        stats = pd.Series(values, dtype="float64").describe()
        rows.append({"level": level, "class": name, **{k: stats.get(k) for k in stats.index}})
    table = pd.DataFrame(rows).rename(columns={"25%": "q25", "50%": "median", "75%": "q75"})
    table["count"] = table["count"].astype(int)
    return table


@dataclass
class DatasetReport:
    """The three tables of one dataset."""

    view: DatasetView
    counts: pd.DataFrame
    imbalance: pd.DataFrame
    sizes: pd.DataFrame | None


def describe(data: DataConfig) -> DatasetReport:
    """Counts, imbalance and file sizes of a configured dataset."""
    view = dataset_view(data)
    counts = class_counts(view)
    images = {s: len(view.targets[s]) for s in SPLITS}
    images["total"] = sum(images.values())
    return DatasetReport(view, counts, imbalance(counts, images), file_sizes(view))
