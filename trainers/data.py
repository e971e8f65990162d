"""DataLoaders of one run: dataset splits + transforms + an epoch-seeded sampler.

Determinism across resumes: the training order of epoch e depends only on (seed, e)
(EpochShuffleSampler), never on RNG state carried over from earlier epochs, so a run
resumed at epoch e sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from trainers.config import DataConfig
from trainers.datasets import DatasetSplits, LabeledImages, build_splits
from trainers.transforms import build_transform


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 32-bit seed (numpy's limit) derived from (run seed, epoch, stream) by hashing,
    so neighbouring seeds and epochs give unrelated streams."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{stream}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class EpochShuffleSampler(Sampler[int]):
    """Shuffles 0..n-1 with a permutation that depends only on (seed, epoch).

    No `generator` attribute on purpose: Accelerate would otherwise attach and carry a
    generator across epochs, which breaks resume equivalence.
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of `epoch` for the next iteration."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        rng = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=1))
        return iter(torch.randperm(self.num_samples, generator=rng).tolist())

    def __len__(self) -> int:
        return self.num_samples


class Transformed(Dataset[tuple[torch.Tensor, int]]):
    """A labelled image collection seen through a transform."""

    def __init__(self, images: LabeledImages, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.images[index]
        return self.transform(image), label


@dataclass
class DataBundle:
    """Everything the loop needs about data."""

    splits: DatasetSplits
    train: DataLoader[tuple[torch.Tensor, int]]
    val: DataLoader[tuple[torch.Tensor, int]]
    test: DataLoader[tuple[torch.Tensor, int]]
    train_sampler: EpochShuffleSampler


def default_num_workers() -> int:
    """Loader workers from the CPUs this job may use (SLURM sets the affinity), one kept free."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(8, (cpus or 1) - 1))


def build_data(data: DataConfig, seed: int, num_processes: int = 1) -> DataBundle:
    """Splits and loaders; `batch_size` is global, so each process loads its share."""
    splits = build_splits(data)
    per_device = max(1, data.batch_size // num_processes)
    workers = default_num_workers() if data.num_workers is None else data.num_workers
    pin = torch.cuda.is_available()
    sampler = EpochShuffleSampler(len(splits.train), seed)
    # drop_last avoids a tiny last batch (a batch of 1 breaks BatchNorm in train mode).
    train = DataLoader(
        Transformed(splits.train, build_transform(data, train=True)),
        batch_size=per_device,
        sampler=sampler,
        drop_last=len(splits.train) > per_device,
        num_workers=workers,
        pin_memory=pin,
    )
    eval_transform = build_transform(data, train=False)

    def eval_loader(images: LabeledImages) -> DataLoader[tuple[torch.Tensor, int]]:
        return DataLoader(
            Transformed(images, eval_transform), batch_size=per_device, num_workers=workers, pin_memory=pin
        )

    return DataBundle(splits, train, eval_loader(splits.val), eval_loader(splits.test), sampler)
