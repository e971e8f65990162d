"""Dataset registry: name -> builder. A new dataset is a module that decorates its
builder with `@register("name")` and is imported in `trainers/datasets/__init__.py`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from trainers.config import DataConfig
from trainers.datasets.base import DatasetSplits, cap_per_split

Builder = Callable[[DataConfig], DatasetSplits]
_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a dataset builder under `name`."""

    def decorate(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"dataset {name!r} registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorate


def available() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_BUILDERS)


def build_splits(data: DataConfig) -> DatasetSplits:
    """The train/val/test splits of the configured dataset, each capped to `max_samples`."""
    name = data.dataset.name
    if name not in _BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(available())}")
    splits = _BUILDERS[name](data)
    cap = data.dataset.max_samples
    if cap is None:
        return splits
    capped = {name: cap_per_split(splits.split(name), cap) for name in ("train", "val", "test")}
    return dataclasses.replace(splits, **capped, info={**splits.info, "max_samples": cap})
