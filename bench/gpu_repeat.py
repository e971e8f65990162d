"""Do runs repeat exactly on this device? With the trainer's defaults and with `deterministic: true`.

For each setting, one config (resnet-style timm test model, digits at --size px, augmentation and
dropout, so every RNG matters) is trained three ways on whatever device Accelerate picks: twice
uninterrupted, and once stopped at a mid-epoch step boundary and resumed (a real save, a new
process state, the load). Printed per setting: whether the second run and the resumed run end
bit for bit like the first (history.csv without its timing columns, metrics.json without timing
and provenance), and the largest difference of a history number where they do not.

On CPU every line should read "same" (tests/training/test_resume_steps.py proves it at 20 stop
points). On a GPU the defaults autotune cuDNN and allow atomics, so "differs" is expected there;
`deterministic: true` is what should make them "same" (seen on an H200 on 2026-12-04: the default
differed in the first epoch; the deterministic setting is still to be run there).

    .venv/bin/python bench/gpu_repeat.py               # about a minute on a GPU, a few on 2 CPU cores
    .venv/bin/python bench/gpu_repeat.py --size 16 --epochs 2
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
from pathlib import Path
from typing import Any

from trainers import rundir
from trainers.config import TrainConfig
from trainers.loop.run import run_training
from trainers.runtime.preemption import Preempted, StopAt

TIMING = {"epoch_s", "train_images_per_s"}


def config(args: argparse.Namespace, deterministic: bool) -> TrainConfig:
    """The measured config: augmentation and dropout, so the data and model RNGs must repeat too."""
    return TrainConfig.model_validate(
        {
            "model": {"backbone": args.backbone, "head_dropout": 0.3},
            "data": {
                "dataset": {"name": "digits", "max_samples": 512},
                "image_size_px": args.size,
                "batch_size": 32,
                "augment": {"hflip_p": 0.5, "rotate_deg": 15, "rotate_p": 0.5, "translate_frac": 0.1},
            },
            "optim": {"name": "adamw", "lr": 3e-3},
            "epochs": args.epochs,
            "deterministic": deterministic,
        }
    )


def outcome(run_dir: Path, metrics: dict[str, Any]) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """What must repeat: the history without timing, the metrics without timing and provenance."""
    with (run_dir / rundir.HISTORY).open(newline="") as handle:
        history = [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]
    return history, {k: v for k, v in metrics.items() if k not in ("timing", "provenance")}


def largest_difference(first: list[dict[str, str]], other: list[dict[str, str]]) -> float:
    """The largest absolute difference between two histories' numbers (inf if their shapes differ)."""
    if len(first) != len(other):
        return math.inf
    gaps = [abs(float(a[key]) - float(b.get(key, "nan"))) for a, b in zip(first, other, strict=True) for key in a]
    return max((gap for gap in gaps if not math.isnan(gap)), default=0.0)


def verdict(first: tuple[Any, Any], other: tuple[Any, Any]) -> str:
    if first == other:
        return "same"
    return f"differs (history: largest gap {largest_difference(first[0], other[0]):.3g})"


def check(args: argparse.Namespace, deterministic: bool, folder: Path) -> tuple[str, str]:
    """(second run against the first, resumed run against the first) for one setting."""
    cfg = config(args, deterministic)
    runs = []
    for name in ("first", "second"):
        run_dir = folder / name
        runs.append(outcome(run_dir, run_training(cfg, run_dir)))
    resumed = folder / "resumed"
    try:
        run_training(cfg, resumed, stop=StopAt(0, 3))
    except Preempted:
        pass  # saved at the stop point: the next call resumes from there
    else:
        raise SystemExit("the run ended before its stop point: use more images or a smaller batch")
    runs.append(outcome(resumed, run_training(cfg, resumed)))
    return verdict(runs[0], runs[1]), verdict(runs[0], runs[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="test_resnet")
    parser.add_argument("--size", type=int, default=32, help="image size in px")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"{device}: {args.backbone} at {args.size} px, {args.epochs} epochs, a stop after 3 steps of epoch 1")
    print(f"| {'setting':22} | {'second run':45} | {'stopped and resumed':45} |")
    for deterministic in (False, True):
        with tempfile.TemporaryDirectory() as folder:
            second, resumed = check(args, deterministic, Path(folder))
        torch.use_deterministic_algorithms(False)
        label = "deterministic: true" if deterministic else "defaults"
        print(f"| {label:22} | {second:45} | {resumed:45} |")


if __name__ == "__main__":
    main()
