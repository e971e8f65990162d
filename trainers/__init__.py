"""The GPU-node side of orchestrate: train one TrainConfig into one run directory.

The top level is the torch-free contract the login node imports (`config`, `contract`, `rundir`,
`rules`); the wings beside it name what the node runs: `datasets/`, `data/` (loaders, transforms),
`model/` (network, losses, complexity), `runtime/` (distributed, preemption, trackers, preflight)
and `loop/` (the training loop). This module stays importable on the login node by importing the
heavy implementation lazily, inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainers.config import TrainConfig
    from trainers.runtime.preflight_node import Unfit

__all__ = ["preflight", "profile_model", "run"]


def run(cfg: TrainConfig, run_dir: Path, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train `cfg` into `run_dir` (resuming from its last checkpoint) and return the
    metrics also written to `run_dir/metrics.json`. `metadata` (the plan's run id, name,
    sweep, ablation, backbone, dataset, seed) names and tags the run in experiment trackers."""
    from trainers.loop.run import run_training

    return run_training(cfg, Path(run_dir), metadata)


def preflight(cfg: TrainConfig, run_dir: Path, check_gpus: bool = True) -> Unfit | None:
    """On-node checks before anything is built (trainers/runtime/preflight_node.py): None when every node
    of the job can train the run, else the unfit host and one line saying why not (the same on every
    rank). `check_gpus` False skips the GPU checks (fake GPUs)."""
    from trainers.runtime.preflight_node import check

    return check(cfg, Path(run_dir), check_gpus, _resume_precision(cfg, Path(run_dir)))


def _resume_precision(cfg: TrainConfig, run_dir: Path) -> str | None:
    """The precision a resumed `precision: auto` run goes on in (its last checkpoint's); None for any
    other run, and where the trainer's modules do not import (the preflight's imports check says why)."""
    if cfg.precision != "auto":
        return None
    try:
        from trainers.loop import checkpoint

        return checkpoint.recorded_precision(checkpoint.checkpoint_dir(run_dir))
    except (ImportError, OSError, ValueError):
        return None


def profile_model(cfg: TrainConfig, num_classes: int | None = None) -> dict[str, Any]:
    """Params and GFLOPs of the model `cfg` trains (meta device: instant, no memory).

    `num_classes` defaults to the configured dataset's class count.
    """
    from trainers.model.complexity import profile_model as _profile_model

    return _profile_model(cfg, num_classes)
