"""One (capped) training epoch of a single-process run on digits, for tests that compare the
update DeepSpeed makes with the one the DDP path makes (run in its own process: DeepSpeed
initialises torch.distributed and sets rank variables, which must not leak into pytest's).

Arguments: run folder, strategy (ddp or deepspeed), grad_accum_steps, global batch size, digits
per split, grad_clip_norm (or `-`). Writes `update.pt` into the run folder: each trainable
parameter's change (float32), by name.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from trainers.config import TrainConfig
from trainers.loop.build import build_parts, release_accelerator
from trainers.loop.epoch import train_one_epoch
from trainers.loop.resume import Progress
from trainers.runtime.distributed import unwrap


def config(strategy: str, accum: int, batch: int, samples: int, clip: float | None) -> TrainConfig:
    """SGD without momentum, one optimizer step: the update is lr x the (clipped) gradient.
    test_vit has no BatchNorm and no dropout, so micro-batches add up to the whole batch."""
    distributed: dict[str, Any] = {"strategy": strategy, "grad_accum_steps": accum}
    if strategy == "deepspeed":
        distributed["zero_stage"] = 1
    return TrainConfig.model_validate(
        {
            "model": {"backbone": "test_vit"},
            "data": {
                "image_size_px": 16,
                "batch_size": batch,
                "num_workers": 0,
                "dataset": {"name": "digits", "max_samples": samples},
            },
            "optim": {"name": "sgd", "lr": 1.0, "momentum": 0.0, "grad_clip_norm": clip},
            "epochs": 1,
            "max_steps_per_epoch": 1,
            "precision": "no",
            "torch_threads": 1,
            "distributed": distributed,
        }
    )


def main(run_dir: Path, cfg: TrainConfig) -> None:
    parts = build_parts(cfg, run_dir)
    net = unwrap(parts.accelerator, parts.model)
    before = {name: p.detach().float().clone() for name, p in net.named_parameters() if p.requires_grad}
    train_one_epoch(parts, 0, Progress())
    after = dict(net.named_parameters())
    torch.save({name: after[name].detach().float() - value for name, value in before.items()}, run_dir / "update.pt")
    release_accelerator(parts.accelerator)


if __name__ == "__main__":
    clip_arg = sys.argv[6]
    main(
        Path(sys.argv[1]),
        config(
            sys.argv[2],
            int(sys.argv[3]),
            int(sys.argv[4]),
            int(sys.argv[5]),
            None if clip_arg == "-" else float(clip_arg),
        ),
    )
