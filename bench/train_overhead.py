"""Trainer overhead: images/s of the trainer vs a bare PyTorch loop over the same model and data.

The bare loop is what a person would write by hand for the fastest possible loop: the training
split decoded and resized once into one uint8 tensor, a random permutation per epoch, batches
indexed out of it and normalised as a batch, forward, cross-entropy, backward, optimizer step,
no per-step synchronisation. The trainer (trainers.loop: build_parts, then train_one_epoch per
epoch) runs the same model (same builder, same seed), optimizer and batch size on the same split,
with everything it does per step (Accelerate, its loader, loss bookkeeping). Both time only their
training passes and skip the first epoch (warm-up); a round is one trainer run then one bare run,
in this process, back to back, and the printed rates are the medians over --rounds rounds.
The trainer tunes glibc's allocator for its whole process (trainers.runtime.memory.tune_host_allocator),
so the bare rounds, which run after it in the same process, have the same settings; the bare loop
is also timed once first, with glibc's defaults, as the reference for what the tuning gives.
Each round also times the trainer with its decoded-image cache off (`data.cache_max_mib: 0`),
decoding and resizing every image every epoch, as the reference for what the cache saves.

Two clocks: the wall clock (what the goal is about), and this process's CPU time, which other
jobs on a shared machine do not distort but which leaves out loader-worker processes (compare
with --workers 0 for the whole cost in one process).

    .venv/bin/python bench/train_overhead.py                # resnet10t, 32 px digits, batch 64
    .venv/bin/python bench/train_overhead.py --workers 0 --threads 1 --epochs 4
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from trainers.config import TrainConfig
from trainers.data.loaders import build_data
from trainers.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from trainers.loop.optim import build_optimizer
from trainers.model.build import build_model
from trainers.model.tasks import task_of


def cell(args: argparse.Namespace) -> TrainConfig:
    """The benchmarked trainer config."""
    data: dict[str, Any] = {"dataset": "digits", "image_size_px": args.size, "batch_size": args.batch}
    if args.workers is not None:
        data["num_workers"] = args.workers
    return TrainConfig.model_validate(
        {
            "model": {"backbone": args.backbone},
            "data": data,
            "optim": {"name": "adamw", "lr": 1e-3},
            "precision": "no",
            "epochs": args.epochs,
            "torch_threads": args.threads,
        }
    )


class Clocks:
    """Images/s of each timed epoch by the wall clock and by this process's CPU time (the latter
    is robust to other jobs on a shared machine, and counts no loader-worker processes), and the
    epoch's minor page faults in this process (memory freed to the OS and touched again)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.faults: list[float] = []

    def time(self, epoch: Callable[[], int]) -> None:
        """Run one epoch (it returns its image count) and record both rates and its page faults."""
        wall, cpu, faults = time.perf_counter(), time.process_time(), _minor_faults()
        images = epoch()
        self.wall.append(images / (time.perf_counter() - wall))
        self.cpu.append(images / (time.process_time() - cpu))
        self.faults.append(_minor_faults() - faults)

    def medians(self) -> tuple[float, float, float]:
        """Median wall rate, CPU rate and page faults over the epochs after the first."""
        wall, cpu, faults = (statistics.median(values[1:] or values) for values in (self.wall, self.cpu, self.faults))
        return wall, cpu, faults


def _minor_faults() -> float:
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def trainer_rates(cfg: TrainConfig) -> tuple[float, float, float]:
    """The trainer's images/s (wall, CPU) and page faults per epoch (train_one_epoch, epoch after epoch)."""
    from trainers.loop.build import build_parts, release_accelerator
    from trainers.loop.epoch import train_one_epoch
    from trainers.loop.resume import Progress

    clocks = Clocks()
    with tempfile.TemporaryDirectory() as folder:
        parts = build_parts(cfg, Path(folder))
        try:
            for epoch in range(cfg.epochs):
                clocks.time(lambda: train_one_epoch(parts, epoch, Progress()).images)  # noqa: B023
        finally:
            release_accelerator(parts.accelerator)
    return clocks.medians()


def uint8_split(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The training split as one uint8 tensor [n, 3, S, S] (decoded and resized once), its labels, its task."""
    bundle = build_data(cfg.data.model_copy(update={"num_workers": 0}), cfg.seed)
    dataset = bundle.datasets["train"] if bundle.datasets else None
    assert dataset is not None
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])  # the loader's uint8 images
    return images, torch.as_tensor(bundle.splits.train.targets), task_of(bundle.splits)


def bare_rates(cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, task: Any) -> tuple[float, float, float]:
    """A hand-written loop's images/s (wall, CPU) and page faults per epoch."""
    set_seed(cfg.seed)
    model = build_model(cfg, task)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    criterion = torch.nn.CrossEntropyLoss()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    batch = cfg.data.batch_size

    def epoch() -> int:
        model.train()
        seen = 0
        order = torch.randperm(len(images))
        for first in range(0, len(order) - batch + 1, batch):  # drop_last, like the trainer
            index = order[first : first + batch]
            x = (images[index].float() - mean) / std
            loss = criterion(model(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(index)
        float(loss.detach())  # wait for the last step, as the trainer does once per epoch
        return seen

    clocks = Clocks()
    for _ in range(cfg.epochs):
        clocks.time(epoch)
    return clocks.medians()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--size", type=int, default=32, help="image size in px")
    parser.add_argument("--batch", type=int, default=64, help="batch size")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement; the first is not timed")
    parser.add_argument("--rounds", type=int, default=3, help="trainer + bare rounds; medians are printed")
    parser.add_argument("--workers", type=int, default=None, help="trainer loader workers (default: from CPUs)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of both loops (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = cell(args)
    images, labels, task = uint8_split(cfg)
    print(
        f"cell: {args.backbone} {args.size}px digits, batch {args.batch}, {len(images)} train images, "
        f"{args.epochs} epochs ({args.epochs - 1} timed), {torch.get_num_threads()} torch threads"
    )
    # Before any trainer run: the bare loop with glibc's allocator defaults (the trainer tunes them
    # for the whole process, trainers.runtime.memory.tune_host_allocator, so later bare rounds have them too).
    untuned, _, untuned_faults = bare_rates(cfg, images, labels, task)  # nothing has tuned the allocator yet
    uncached = cfg.model_copy(update={"data": cfg.data.model_copy(update={"cache_max_mib": 0})})
    trainer, bare, plain = [], [], []
    for round_ in range(args.rounds):
        trainer.append(trainer_rates(cfg))
        bare.append(bare_rates(cfg, images, labels, task))
        plain.append(trainer_rates(uncached))
        (tw, tc, _), (bw, bc, _), (pw, _, _) = trainer[-1], bare[-1], plain[-1]
        print(
            f"round {round_ + 1}: wall: trainer {tw:7.1f} bare {bw:7.1f} images/s x{tw / bw:.3f} "
            f"(trainer without image cache {pw:7.1f} x{pw / bw:.3f});  "
            f"CPU time: trainer {tc:7.1f} bare {bc:7.1f} images/s x{tc / bc:.3f}",
            flush=True,
        )
    for clock, col in (("wall clock", 0), ("CPU time", 1)):
        t, b = statistics.median(r[col] for r in trainer), statistics.median(r[col] for r in bare)
        ratio = statistics.median(r[col] / q[col] for r, q in zip(trainer, bare, strict=True))
        print(
            f"median of {args.rounds} ({clock}): trainer {t:.1f} images/s, bare loop {b:.1f} images/s; "
            f"median of the rounds' trainer/bare x{ratio:.3f}"
        )
    ratio = statistics.median(r[0] / q[0] for r, q in zip(plain, bare, strict=True))
    tuned = statistics.median(r[0] for r in bare)
    print(
        f"reference, bare loop with glibc's default allocator (before the trainer tuned it): {untuned:.1f} "
        f"images/s; the tuned rounds' bare loop x{tuned / untuned:.3f} that"
    )
    faults = [statistics.median(r[2] for r in rates) for rates in (trainer, bare)]
    print(
        f"minor page faults per epoch (median): trainer {faults[0]:.0f}, bare loop {faults[1]:.0f}; "
        f"bare loop with glibc's default allocator {untuned_faults:.0f}"
    )
    print(f"reference, trainer with data.cache_max_mib=0 (decoding every epoch): wall x{ratio:.3f} the bare loop")


if __name__ == "__main__":
    main()
