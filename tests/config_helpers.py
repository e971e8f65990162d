"""Test helpers: a TrainConfig from a base dict plus `section__key=value` fields; a training
killed right after its first epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import trainers
from trainers import train
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


class Killed(Exception):
    """Stands for the job being killed."""


def run_killed_after_first_epoch(
    cfg: TrainConfig, run_dir: Path, monkeypatch: pytest.MonkeyPatch, metadata: dict[str, Any] | None = None
) -> None:
    """Train `cfg` into `run_dir` and die right after epoch 1 is saved, as a killed job would."""
    original = train.run_epoch

    def die(run: train.Run, epoch: int, progress: train.Progress) -> None:
        original(run, epoch, progress)
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(train, "run_epoch", die)
        with pytest.raises(Killed):
            trainers.run(cfg, run_dir, metadata)
