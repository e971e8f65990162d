"""One rank of a 2-process DeepSpeed ZeRO-3 training on digits (started by torchrun from
tests/test_deepspeed.py; arguments: run folder, epochs). It picks the FIRST epoch as best
(val_top1, mode min), so the final evaluation must reload weights from an earlier epoch into
partitioned parameters. Called again on the same folder with more epochs, it resumes.

DeepSpeed keeps parameters below `stage3_param_persistence_threshold` whole on every rank;
the test models are that small, so the threshold is set to 0 here to partition every one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from accelerate.utils import DeepSpeedPlugin

import trainers.distributed
import trainers.train
from trainers.config import DistributedConfig, TrainConfig

make_plugin = trainers.distributed.deepspeed_plugin
final_metrics = trainers.train.final_metrics
seen: dict[str, Any] = {}


def partition_everything(dist: DistributedConfig, grad_clip_norm: float | None) -> DeepSpeedPlugin:
    plugin = make_plugin(dist, grad_clip_norm)
    plugin.deepspeed_config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    return plugin


def record_partitioning(run: trainers.train.Run, progress: trainers.train.Progress) -> dict[str, Any]:
    params = list(run.accelerator.unwrap_model(run.model).parameters())
    seen["local_numel"] = sum(p.numel() for p in params)  # 0 when every parameter is partitioned
    seen["full_numel"] = sum(getattr(p, "ds_numel", p.numel()) for p in params)
    return final_metrics(run, progress)


def main(run_dir: Path, epochs: int) -> None:
    trainers.distributed.deepspeed_plugin = partition_everything  # type: ignore[assignment]
    trainers.train.final_metrics = record_partitioning  # type: ignore[assignment]
    cfg = TrainConfig.model_validate(
        {
            "model": {"backbone": "test_convnext"},
            "data": {"image_size_px": 32, "batch_size": 32, "num_workers": 0,
                     "dataset": {"name": "digits", "max_samples": 256}},
            "optim": {"name": "adam", "lr": 1e-3},
            "epochs": epochs,
            "torch_threads": 1,
            "early_stopping": {"metric": "val_top1", "mode": "min"},
            "distributed": {"gpus_per_node": 2, "strategy": "deepspeed", "zero_stage": 3},
        }
    )  # fmt: skip
    trainers.train.run_training(cfg, run_dir)
    if trainers.distributed.world_size() > 1 and int(__import__("os").environ["RANK"]) == 0:
        (run_dir / "partitioning.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
