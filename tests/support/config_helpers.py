"""Test helpers: a TrainConfig from a base dict plus `section__key=value` fields; a training
killed right after its first epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import trainers
from trainers.config import TrainConfig
from trainers.loop import run as run_module
from trainers.loop.build import Parts
from trainers.loop.epoch import LoopState
from trainers.loop.resume import MidEpoch

# The dev cluster's profile (slurm/dev-cluster/), for tests that submit to it.
DEV_PROFILE = str(Path(__file__).resolve().parents[2] / "slurm" / "profiles" / "dev.yaml")
# Overrides that shrink a sweep file to seconds per run on this CPU (launch and SLURM tests).
FAST_RUNS = [
    "grid.backbone=[test_resnet]",
    "grid.seed=[0]",
    "defaults.data.dataset={name: digits, max_samples: 128}",
    "defaults.torch_threads=1",
]

# A 2-seed digits sweep of 3 epochs, for the cost estimate's tests (tests/test_cost*.py).
COST_RUNS = [
    "grid.backbone=[test_resnet]",
    "grid.seed=[0, 1]",
    "grid.dataset=[digits]",
    "defaults.torch_threads=1",
    "defaults.epochs=3",
]


def tiny_config(**fields: Any) -> TrainConfig:
    """Tiny CPU runs: 8 px, 32 digits per split, one epoch of at most 2 steps; `a__b=v` fields on top."""
    base: dict[str, Any] = {
        "model": {"backbone": "test_resnet"},
        "data": {
            "dataset": {"name": "digits", "max_samples": 32},
            "image_size_px": 8,
            "batch_size": 16,
            "num_workers": 0,
        },
        "optim": {"name": "adam", "lr": 3e-3},
        "epochs": 1,
        "max_steps_per_epoch": 2,
        "torch_threads": 2,
    }
    return config_with(base, fields)


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
    original = run_module.run_epoch

    def die(parts: Parts, epoch: int, state: LoopState, mid: MidEpoch | None = None) -> LoopState:
        original(parts, epoch, state, mid)
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(run_module, "run_epoch", die)
        with pytest.raises(Killed):
            trainers.run(cfg, run_dir, metadata)
