"""Trainer overhead: images/s of the trainer vs a bare PyTorch loop over the same model and data.

The bare loop is what a person would write by hand for the fastest possible loop: the training
split decoded and resized once into one uint8 tensor, a random permutation per epoch, batches
indexed out of it and normalised as a batch, forward, cross-entropy, backward, optimizer step,
no per-step synchronisation. The trainer (trainers.train.run_training) runs the same model (same
builder, same seed), optimizer and batch size on the same split, with everything it does per step
(Accelerate, loader, gradient bookkeeping). Both time only their training passes and skip the
first epoch (warm-up); a round is one trainer run then one bare run, in this process, back to
back, and the printed rates are the medians over --rounds rounds (3: median of 3).

    .venv/bin/python bench/train_overhead.py                # resnet10t, 32 px digits, batch 64
    .venv/bin/python bench/train_overhead.py --rounds 5 --epochs 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from trainers import rundir
from trainers.config import TrainConfig
from trainers.data import build_data
from trainers.models import build_model
from trainers.optim import build_optimizer
from trainers.tasks import task_of
from trainers.transforms import IMAGENET_MEAN, IMAGENET_STD


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
        }
    )


def trainer_rate(cfg: TrainConfig) -> float:
    """The trainer's median training images/s over the epochs after the first."""
    from trainers.train import run_training

    with tempfile.TemporaryDirectory() as folder:
        run_training(cfg, Path(folder))
        rows = (Path(folder) / rundir.HISTORY).read_text().splitlines()
    header = rows[0].split(",")
    rates = [float(line.split(",")[header.index("train_images_per_s")]) for line in rows[1:]]
    return statistics.median(rates[1:] or rates)


def uint8_split(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The training split as one uint8 tensor [n, 3, S, S] (decoded and resized once), its labels, its task."""
    bundle = build_data(cfg.data.model_copy(update={"num_workers": 0}), cfg.seed)
    dataset = bundle.datasets["train"] if bundle.datasets else None
    assert dataset is not None
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])  # the loader's uint8 images
    return images, torch.as_tensor(bundle.splits.train.targets), task_of(bundle.splits)


def bare_rate(cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, task: Any) -> float:
    """A hand-written loop's median training images/s over the epochs after the first."""
    set_seed(cfg.seed)
    model = build_model(cfg, task)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    criterion = torch.nn.CrossEntropyLoss()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    batch = cfg.data.batch_size
    rates = []
    for _ in range(cfg.epochs):
        model.train()
        started, seen = time.perf_counter(), 0
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
        rates.append(seen / (time.perf_counter() - started))
    return statistics.median(rates[1:] or rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--size", type=int, default=32, help="image size in px")
    parser.add_argument("--batch", type=int, default=64, help="batch size")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement; the first is not timed")
    parser.add_argument("--rounds", type=int, default=3, help="trainer + bare rounds; medians are printed")
    parser.add_argument("--workers", type=int, default=None, help="trainer loader workers (default: from CPUs)")
    args = parser.parse_args()
    cfg = cell(args)
    images, labels, task = uint8_split(cfg)
    print(f"cell: {args.backbone} {args.size}px digits, batch {args.batch}, {len(images)} train images, "
          f"{args.epochs} epochs ({args.epochs - 1} timed), {torch.get_num_threads()} torch threads")  # fmt: skip
    trainer, bare = [], []
    for round_ in range(args.rounds):
        trainer.append(trainer_rate(cfg))
        bare.append(bare_rate(cfg, images, labels, task))
        print(f"round {round_ + 1}: trainer {trainer[-1]:8.1f}  bare {bare[-1]:8.1f} images/s  "
              f"threads {torch.get_num_threads()} "
              f"x{trainer[-1] / bare[-1]:.3f}")  # fmt: skip
    t, b = statistics.median(trainer), statistics.median(bare)
    print(f"median of {args.rounds}: trainer {t:.1f} images/s, bare loop {b:.1f} images/s, trainer/bare x{t / b:.3f}")


if __name__ == "__main__":
    main()
