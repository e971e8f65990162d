"""One rank of a 2-process (gloo) DDP training on an ImageFolder whose test split holds one
unreadable image (started by torchrun from tests/training/test_multiprocess_eval.py; arguments:
dataset root, written beforehand, and run folder)."""

from __future__ import annotations

import sys
from pathlib import Path

from trainers.config import TrainConfig
from trainers.loop.run import run_training


def main(root: Path, run_dir: Path) -> None:
    cfg = TrainConfig.model_validate(
        {
            "model": {"backbone": "test_resnet"},
            "data": {
                "image_size_px": 16,
                "batch_size": 8,
                "num_workers": 0,
                "cache_max_mib": 0,  # decode in the loop, where the bad image is met per rank
                "dataset": {"name": "imagefolder", "root": str(root), "max_bad_fraction": 0.2},
            },
            "optim": {"name": "adam", "lr": 1e-3},
            "epochs": 1,
            "precision": "no",
            "torch_threads": 1,
        }
    )
    run_training(cfg, run_dir)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
