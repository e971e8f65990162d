"""One rank of a 2-process DeepSpeed ZeRO training on digits (started by torchrun from
tests/training/test_deepspeed.py; arguments: run folder, epochs, ZeRO stage, precision, accumulation
steps, backbone, and optionally a stop point `EPOCH:MICRO_BATCHES` (or `-`) and the strategy
(deepspeed, or ddp with the same cell otherwise)). Stopped on request, it exits 0 with
checkpoints/last saved at that step boundary, as a preempted job would.
It picks the FIRST epoch as best (val_top1, mode min), so the final
evaluation must reload weights from an earlier epoch (under ZeRO-3: into partitioned
parameters). Called again on the same folder
with more epochs, it resumes.

ZeRO-3 keeps parameters below `stage3_param_persistence_threshold` whole on every rank; the
test models are that small, so the spec's `distributed.deepspeed` sets it to 0 to partition
every one (which also tests that extra DeepSpeed keys reach the engine).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import trainers.loop.run
import trainers.runtime.distributed
from trainers.config import TrainConfig
from trainers.loop.build import Parts
from trainers.loop.resume import Progress
from trainers.runtime.preemption import Preempted, StopAt

final_metrics = trainers.loop.run.final_metrics
seen: dict[str, Any] = {}


def record_partitioning(parts: Parts, progress: Progress) -> dict[str, Any]:
    params = list(parts.accelerator.unwrap_model(parts.model).parameters())
    seen["local_numel"] = sum(p.numel() for p in params)  # 0 when every parameter is partitioned
    seen["full_numel"] = sum(getattr(p, "ds_numel", p.numel()) for p in params)
    return final_metrics(parts, progress)


def main(
    run_dir: Path, epochs: int, zero_stage: int, precision: str, accum: int, backbone: str, stop: str, strategy: str
) -> None:
    trainers.loop.run.final_metrics = record_partitioning  # type: ignore[assignment]
    distributed: dict[str, Any] = {"gpus_per_node": 2, "strategy": strategy, "grad_accum_steps": accum}
    if strategy == "deepspeed":
        distributed |= {"zero_stage": zero_stage}
        distributed["deepspeed"] = {"zero_optimization": {"stage3_param_persistence_threshold": 0}}
    cfg = TrainConfig.model_validate(
        {
            "model": {"backbone": backbone},
            "data": {
                "image_size_px": 32,
                "batch_size": 32,
                "num_workers": 0,
                "dataset": {"name": "digits", "max_samples": 240},
            },
            "optim": {"name": "adam", "lr": 1e-3},
            "epochs": epochs,
            "precision": precision,
            "torch_threads": 1,
            "early_stopping": {"metric": "val_top1", "mode": "min"},
            "distributed": distributed,
        }
    )
    request = None if stop == "-" else StopAt(*(int(part) for part in stop.split(":")))
    try:
        trainers.loop.run.run_training(cfg, run_dir, stop=request)
    except Preempted:
        return
    if trainers.runtime.distributed.world_size() > 1 and os.environ["RANK"] == "0":
        (run_dir / "partitioning.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    optional = [*sys.argv[7:9], "-", "deepspeed"][:2] if len(sys.argv) < 9 else sys.argv[7:9]
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6], *optional)
