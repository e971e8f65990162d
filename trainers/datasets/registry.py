"""Dataset registry, torch side: name -> DatasetSplits of decodable images.

File-backed datasets are read through their torch-free layout (trainers.datasets.index);
datasets built in memory (digits) register a builder here with `@register("name")`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from trainers.config import DataConfig
from trainers.datasets import index
from trainers.datasets.base import DatasetSplits, ImageFiles, cap_per_split

Builder = Callable[[DataConfig], DatasetSplits]
_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering an in-memory dataset builder under `name`."""

    def decorate(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"dataset {name!r} registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorate


def _builders() -> dict[str, Builder]:
    for name in index.IN_MEMORY:
        importlib.import_module(f"trainers.datasets.{name}")
    return _BUILDERS


def available() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted({*index.available(), *_builders()})


def build_splits(data: DataConfig) -> DatasetSplits:
    """The train/val/test splits of the configured dataset, each capped to `max_samples`."""
    ds = data.dataset
    builders = _builders()
    if ds.name in builders:
        if ds.level is not None or ds.train_on_trainval:
            raise ValueError(f"dataset {ds.name!r} is built in memory: level and train_on_trainval need a file dataset")
        splits = builders[ds.name](data)
    elif ds.name in available():
        splits = from_files(index.resolve_splits(ds), data.image_size_px if data.jpeg_draft else None)
    else:
        raise ValueError(f"unknown dataset {ds.name!r}; registered: {', '.join(available())}")
    cap = ds.max_samples
    if cap is None:
        return splits
    uncapped = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
    return dataclasses.replace(
        splits,
        train=cap_per_split(splits.train, cap, "train"),
        val=cap_per_split(splits.val, cap, "val"),
        test=cap_per_split(splits.test, cap, "test"),
        # The sizes before the cap: what a run without it trains on (`plan`'s cost estimate from smoke runs).
        info={**splits.info, "max_samples": cap, "uncapped_sizes": uncapped},
    )


def from_files(resolved: index.ResolvedSplits, draft_px: int | None) -> DatasetSplits:
    """Decodable splits of a resolved file dataset; ids are kept for split.json."""
    parts: dict[str, Any] = {}
    for name in index.SPLITS:
        part = resolved.split(name)
        parts[name] = ImageFiles(part.paths, part.targets, draft_px, ids=part.ids)
    return DatasetSplits(
        resolved.class_names,
        **parts,
        task=resolved.task,
        super_class_names=resolved.super_class_names,
        novel_slot=resolved.novel_slot,
        info=resolved.info,
    )
