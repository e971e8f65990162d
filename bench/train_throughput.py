"""Training images/s of one cell under each precision / memory-layout / DeepSpeed variant.

Every variant runs the real trainer (trainers.loop.run.run_training: Accelerate, the DeepSpeed
plugin, the input pipeline) in a fresh process, on digits upscaled to --size px, for --epochs
epochs of at most --steps optimizer steps. Its number is the median of history.csv's
`train_images_per_s` over the epochs after the first (the first pays for cudnn autotuning,
DeepSpeed's op builds and allocator growth). Peak memory is the GPU's max allocated bytes, or
on CPU the process's peak resident set. The `loader` line is the input pipeline alone
(no model): a variant close to it is input-bound. Ratios are to the fp32 single-process
reference measured in the same run.

    .venv/bin/python bench/train_throughput.py                      # CPU defaults: test_resnet, 64 px
    .venv/bin/python bench/train_throughput.py --backbone resnet50 --size 224 --batch 128 --steps 30
    .venv/bin/python bench/train_throughput.py --variants fp32 bf16 zero2-bf16
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from trainers import rundir
from trainers.config import TrainConfig
from trainers.contract import Metrics, Parallel, Provenance, history_speed
from trainers.data.loaders import build_data

# name -> trainer config changes; the reference is the first.
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "no"},
    "bf16": {"precision": "bf16"},
    "bf16-channels-last": {"precision": "bf16", "channels_last": True},
    "zero0-bf16": {"precision": "bf16", "distributed": {"strategy": "deepspeed", "zero_stage": 0}},
    "zero2-bf16": {"precision": "bf16", "distributed": {"strategy": "deepspeed", "zero_stage": 2}},
    "zero3-bf16": {"precision": "bf16", "distributed": {"strategy": "deepspeed", "zero_stage": 3}},
    "zero2-fp32": {"precision": "no", "distributed": {"strategy": "deepspeed", "zero_stage": 2}},
    "zero3-fp32": {"precision": "no", "distributed": {"strategy": "deepspeed", "zero_stage": 3}},
    "compile-bf16-channels-last": {"precision": "bf16", "channels_last": True, "compile": True},
}
CPU_DEFAULT = ["fp32", "bf16", "bf16-channels-last", "zero2-fp32"]
GPU_DEFAULT = ["fp32", "bf16", "bf16-channels-last", "zero0-bf16", "zero2-bf16", "zero3-bf16"]


def cell(args: argparse.Namespace, variant: str) -> TrainConfig:
    """The benchmarked cell with one variant's changes."""
    base: dict[str, Any] = {
        "model": {"backbone": args.backbone},
        "data": {"dataset": "digits", "image_size_px": args.size, "batch_size": args.batch},
        "optim": {"name": "adamw", "lr": 1e-3},
        "epochs": args.epochs,
        "max_steps_per_epoch": args.steps,
    }
    if args.workers is not None:
        base["data"]["num_workers"] = args.workers
    return TrainConfig.model_validate(base | VARIANTS[variant])


def run_variant(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    """Train the cell in this process; its steady-state images/s and what ran."""
    from trainers.loop.run import run_training  # torch + accelerate + timm: only in the child

    with tempfile.TemporaryDirectory() as folder:
        # Read back through the run-folder contract, as collect does: a renamed field fails here too.
        metrics = Metrics.model_validate(run_training(cell(args, variant), Path(folder)))
        with (Path(folder) / rundir.HISTORY).open(newline="") as history:
            rates = [rate for row in csv.DictReader(history) if (rate := history_speed(row)) is not None]
    steady = rates[1:] or rates
    provenance, parallel = metrics.provenance or Provenance(), metrics.parallel or Parallel()
    return {
        "images_per_s": statistics.median(steady),
        "peak_mib": peak_memory_mib(),
        "epochs_timed": len(steady),
        "device": provenance.device,
        "mixed_precision": parallel.mixed_precision,
        "distributed_type": parallel.distributed_type,
    }


def peak_memory_mib() -> float:
    """Peak GPU memory allocated by torch, or on CPU the peak resident set of this process."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def loader_rate(args: argparse.Namespace) -> float:
    """Images/s of the training loader alone (decode, resize, normalise, collate), one epoch."""
    bundle = build_data(cell(args, "fp32").data, seed=0)
    started = time.perf_counter()
    seen = sum(len(images) for images, _ in bundle.train)
    return seen / (time.perf_counter() - started)


def in_child(args: argparse.Namespace, variant: str) -> dict[str, Any] | None:
    """Run one variant in a fresh process (Accelerate and DeepSpeed keep process-wide state)."""
    command = [sys.executable, __file__, "--child", variant, *sys.argv[1:]]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{variant}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="test_resnet")
    parser.add_argument("--size", type=int, default=64, help="image size in px")
    parser.add_argument("--batch", type=int, default=64, help="global batch size")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per epoch, at most")
    parser.add_argument("--epochs", type=int, default=3, help="epochs; the first is not timed")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: from CPU count)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run_variant(args, args.child)))
        return
    variants = args.variants or (GPU_DEFAULT if torch.cuda.is_available() else CPU_DEFAULT)
    print(f"cell: {args.backbone} {args.size}px, global batch {args.batch}, {args.steps} steps x {args.epochs} epochs")
    print(f"{'loader':22s} {loader_rate(args):9.1f} images/s (input pipeline alone)")
    reference: tuple[str, float] | None = None
    for variant in variants:
        found = in_child(args, variant)
        if found is None:
            continue
        rate = found["images_per_s"]
        reference = reference or (variant, rate)
        print(
            f"{variant:22s} {rate:9.1f} images/s  x{rate / reference[1]:5.2f} vs {reference[0]}"
            f"  peak {found['peak_mib']:7.0f} MiB  ({found['device']}, {found['distributed_type']},"
            f" {found['mixed_precision']})"
        )


if __name__ == "__main__":
    main()
