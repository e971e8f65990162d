"""Test helper: a TrainConfig from a base dict plus `section__key=value` fields."""

from __future__ import annotations

from typing import Any

from trainers.config import TrainConfig


def config_with(base: dict[str, Any], fields: dict[str, Any]) -> TrainConfig:
    """`base` with each `a__b=v` field set (replacing, not merging, the value at a.b), validated."""
    for key, value in fields.items():
        *path, leaf = key.split("__")
        target = base
        for part in path:
            target = target.setdefault(part, {})
        target[leaf] = value
    return TrainConfig.model_validate(base)
