"""DataLoaders of one run: dataset splits + transforms + an epoch-seeded sampler.

Determinism across resumes: the training order of epoch e depends only on (seed, e)
(EpochShuffleSampler), never on RNG state carried over from earlier epochs, and each
training image's augmentation draws from its own generator seeded by (seed, e, image
index) (`sample_seed`), so neither depends on the number of loader workers, on which
worker loads an image, or on where a run stopped. A run resumed in the middle of epoch e
skips the consumed part of the permutation in the sampler (nothing is loaded for it) and
sees exactly the batches an uninterrupted run would.

Bad data: an image that fails to decode is skipped with a warning and counted
(`DataBundle.skipped_images`): in training it is replaced by the next readable image
(same batch size, deterministic), in evaluation it is dropped from its batch. When more
than `data.dataset.max_bad_fraction` of a split is unreadable the run fails.
"""

from __future__ import annotations

import ctypes
import hashlib
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from trainers import rundir
from trainers.config import DataConfig
from trainers.data.image_cache import ImageCache, fill, splits_to_cache
from trainers.data.transforms import build_transform, cached_stages
from trainers.datasets import DatasetSplits, LabeledImages, build_splits
from trainers.textsafe import terminal

# What PIL raises for unreadable files: truncated (OSError), not an image
# (UnidentifiedImageError, an OSError), broken headers (SyntaxError, ValueError, struct
# errors), decompression bombs. Missing files are caught at plan time, not here.
BAD_IMAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
SPLIT_FILE = rundir.SPLIT
MAX_WORKERS = 8


class BadDataError(RuntimeError):
    """Too many unreadable images in one split."""


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 32-bit seed (numpy's limit) derived from (run seed, epoch, stream) by hashing,
    so neighbouring seeds and epochs give unrelated streams."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{stream}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Seed of the augmentation of training image `index` in `epoch`."""
    digest = hashlib.sha256(f"{seed}:{epoch}:sample:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class EpochShuffleSampler(Sampler[int]):
    """Shuffles 0..n-1 with a permutation that depends only on (seed, epoch), optionally
    without its first `skip` entries (the samples a resumed epoch already consumed).

    No `generator` attribute on purpose: Accelerate would otherwise attach and carry a
    generator across epochs, which breaks resume equivalence.
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self.skip = 0
        self.epoch_value: Any = None
        """Shared with the dataset (and its worker processes): the epoch its augmentation seeds use."""

    def set_epoch(self, epoch: int, skip: int | None = None) -> None:
        """Select the permutation of `epoch` for the next iteration, less its first `skip` samples.

        Without `skip`, a new epoch starts at its beginning and the same epoch keeps its skip:
        Accelerate's loader calls this with its own epoch counter at every iteration start.
        """
        if skip is None:
            skip = self.skip if epoch == self.epoch else 0
        self.epoch = epoch
        self.skip = skip
        if self.epoch_value is not None:
            self.epoch_value.value = epoch

    def permutation(self) -> list[int]:
        """The whole epoch's order."""
        rng = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=1))
        return torch.randperm(self.num_samples, generator=rng).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.permutation()[self.skip :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class Transformed(Dataset[Any]):
    """A labelled image collection seen through a transform, tolerant of unreadable images.

    Unreadable images are flagged in an array shared with the loader's worker processes,
    so the count is exact (each image counted once) whichever process hit it.
    """

    def __init__(
        self,
        images: LabeledImages,
        transform: Callable[[Image.Image], torch.Tensor],
        split: str = "train",
        max_bad_fraction: float = 0.0,
        replace_bad: bool = False,
        seed: int | None = None,
    ) -> None:
        self.images = images
        self.transform = transform
        self.split = split
        self.max_bad_fraction = max_bad_fraction
        self.replace_bad = replace_bad
        self._bad = multiprocessing.RawArray(ctypes.c_bool, max(1, len(images)))
        self.seed = seed
        """Training: seed of the per-image augmentation generators; None leaves torch's RNG as is."""
        # Shared memory, so worker processes (also persistent ones) see the epoch the loop set.
        self.epoch = multiprocessing.RawValue(ctypes.c_int64, 0)
        self.cache: ImageCache | None = None
        """Decoded images (trainers.data.image_cache), when the split fits data.cache_max_mib."""
        self.rest: Callable[[torch.Tensor], torch.Tensor] | None = None
        """With a cache: the random rest of the transform, applied to each cached image."""

    def __len__(self) -> int:
        return len(self.images)

    @property
    def skipped(self) -> int:
        """How many distinct images of this split failed to decode so far."""
        return int(np.frombuffer(memoryview(self._bad), dtype=np.bool_)[: len(self.images)].sum())

    def use_cache(self, cache: ImageCache, rest: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """Read images from `cache` from now on, through `rest` (the random part of the
        transform; None: the cached image is the sample)."""
        self.cache, self.rest = cache, rest

    @property
    def fully_cached(self) -> bool:
        """Every sample is a cached tensor as is: nothing left for a loader worker to do."""
        return self.cache is not None and self.rest is None and bool(self.cache.filled.all())

    def decode_with(self, index: int, transform: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor | None:
        """Image `index` decoded and passed through `transform`; None (flagged) when unreadable."""
        try:
            image = self.images.load(index)
            with _one_thread(), self._seeded(index):
                return transform(image)
        except BAD_IMAGE_ERRORS as exc:
            self._flag(index, exc)
            return None

    def _decode(self, index: int) -> tuple[torch.Tensor, Any] | None:
        cached = self.cache.get(index) if self.cache is not None else None
        if cached is None:
            image = self.decode_with(index, self.transform)
            return None if image is None else (image, self.images.target(index))
        if self.rest is not None:
            with _one_thread(), self._seeded(index):
                cached = self.rest(cached)
        return cached, self.images.target(index)

    @contextmanager
    def _seeded(self, index: int) -> Iterator[None]:
        """torchvision's random transforms draw from torch's global RNG: give them one seeded
        by (seed, epoch, index) for this image, and leave the caller's RNG state untouched."""
        if self.seed is None:
            yield
            return
        with torch.random.fork_rng(devices=[]):
            # The CPU generator alone: torch.manual_seed also seeds every GPU backend, and where
            # CUDA is not initialised (a loader worker, a CPU machine) it queues that call with a
            # formatted stack trace, as deep as the trainer's (a forked loader worker keeps it):
            # about 0.35 ms an image in the demo's augmented runs. The same draws follow.
            torch.default_generator.manual_seed(sample_seed(self.seed, self.epoch.value, index))
            yield

    def _flag(self, index: int, exc: BaseException) -> None:
        # A file name may hold an ESC sequence: escaped before it reaches the user's terminal.
        source, why = terminal(self.images.source(index)), terminal(exc)
        if not self._bad[index]:
            self._bad[index] = True
            warnings.warn(f"{self.split}: skipping unreadable image {source}: {why}", stacklevel=2)
        n_bad, total = self.skipped, len(self.images)
        if n_bad > self.max_bad_fraction * total:
            raise BadDataError(
                f"{self.split} split: {n_bad} of {total} images are unreadable ({n_bad / total:.1%}), more than "
                f"data.dataset.max_bad_fraction={self.max_bad_fraction}; latest: {source}: {why}"
            )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any] | None:
        sample = self._decode(index)
        if sample is not None or not self.replace_bad:
            return sample
        # Training: the next readable image instead, so batches keep their size and the
        # substitute depends only on the index (resume-exact).
        for step in range(1, len(self.images)):
            sample = self._decode((index + step) % len(self.images))
            if sample is not None:
                return sample
        raise BadDataError(f"{self.split} split: no readable image at all")


@contextmanager
def _one_thread() -> Iterator[None]:
    """Per-image tensor ops are far too small for intra-op threads: in the main process
    (num_workers=0) torch's thread pool made the transform ~100x slower on a busy node.
    Loader workers already run single-threaded (torch sets it), so this only acts there."""
    threads = torch.get_num_threads()
    if threads == 1 or get_worker_info() is not None:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class CollateReadable:
    """default_collate of an evaluation batch, with which samples are readable: (images, targets,
    readable), where a sample that failed to decode (None) holds a readable one's place (masked by
    `readable` = 0) and a batch with no readable image at all is zeros of the usual shapes. Every
    rank's batch keeps its size: `gather_for_metrics` gathers equal batches (a rank that dropped an
    image broke the gather of a multi-process run), and `readable_only` filters after it."""

    def __init__(self, image_size_px: int, splits: DatasetSplits) -> None:
        self.image_shape = (3, image_size_px, image_size_px)
        targets = splits.train.targets
        self.target_shape = tuple(targets.shape[1:])
        self.target_dtype = torch.float32 if targets.dtype == np.float32 else torch.long

    def __call__(self, batch: list[Any]) -> Any:
        # uint8, not bool: every collective backend gathers bytes.
        readable = torch.tensor([sample is not None for sample in batch], dtype=torch.uint8)
        stand_in = next((sample for sample in batch if sample is not None), None)
        if stand_in is None:
            return [
                torch.zeros((len(batch), *self.image_shape), dtype=torch.uint8),
                torch.zeros((len(batch), *self.target_shape), dtype=self.target_dtype),
                readable,
            ]
        images, targets = default_collate([stand_in if sample is None else sample for sample in batch])
        return [images, targets, readable]


def readable_only(readable: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """The rows of `tensors` whose image was readable (CollateReadable's mask)."""
    keep = readable.bool()
    return [tensor[keep] for tensor in tensors]


@dataclass
class DataBundle:
    """Everything the loop needs about data."""

    splits: DatasetSplits
    train: DataLoader[Any]
    val: DataLoader[Any]
    test: DataLoader[Any]
    train_sampler: EpochShuffleSampler
    datasets: dict[str, Transformed] | None = None
    """The transformed split datasets (their unreadable-image flags)."""
    train_persistent: bool = False
    """The train loader keeps its worker processes between passes."""
    train_passes: int = 0
    """Passes over `train` started in this process (`start_train_pass`)."""

    def start_train_pass(self) -> None:
        """Call before each pass over `train`, after reseeding: leaves torch's RNG where a fresh
        loader iterator leaves it. Creating a DataLoader iterator draws its workers' base seed
        from torch's RNG; a loader with persistent workers creates its iterator once per process
        and then only resets it, which draws nothing. Without this draw, the training steps'
        randomness (dropout, drop-path) from a process's second epoch on depended on
        `persistent_workers` and on where the run was last resumed."""
        if self.train_persistent and self.train_passes:
            torch.empty((), dtype=torch.int64).random_()  # the draw of torch.utils.data's _BaseDataLoaderIter
        self.train_passes += 1

    def skipped_images(self) -> dict[str, int]:
        """Unreadable images skipped so far, per split (for metrics.json)."""
        return {name: ds.skipped for name, ds in (self.datasets or {}).items()}

    def write_split(self, run_dir: Path) -> Path:
        """Record the split in `<run_dir>/split.json` (counts, class counts, id hash, ids
        when small), so a run's exact train/val/test images can be checked later."""
        path = Path(run_dir) / SPLIT_FILE
        rundir.write_json(path, self.splits.manifest())
        return path


def job_cpus() -> int:
    """CPUs this process may use (SLURM and taskset set the affinity), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_num_workers() -> int:
    """Loader workers from the CPUs this job may use, one kept for the training loop."""
    return max(0, min(MAX_WORKERS, job_cpus() - 1))


def loader_options(data: DataConfig) -> dict[str, Any]:
    """num_workers, pin_memory and prefetch_factor of every loader, from config or defaults."""
    workers = default_num_workers() if data.num_workers is None else data.num_workers
    pin = torch.cuda.is_available() if data.pin_memory is None else data.pin_memory
    options: dict[str, Any] = {"num_workers": workers, "pin_memory": pin}
    if workers > 0:
        options["prefetch_factor"] = data.prefetch_factor or 2
    return options


def uint8_transform(data: DataConfig, train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """The loaders' per-image transform: resized (and augmented) uint8 [3, S, S]; the trainer
    normalises whole batches on the device (trainers.data.transforms.BatchNormalize)."""
    transform: Callable[[Image.Image], torch.Tensor] = build_transform(data, train, normalize=False)
    return transform


def build_data(data: DataConfig, seed: int, num_processes: int = 1) -> DataBundle:
    """Splits and loaders (uint8 image batches); `batch_size` is global, so each process loads its share."""
    splits = build_splits(data)
    per_device = max(1, data.batch_size // num_processes)
    options = loader_options(data)
    workers = options["num_workers"] > 0
    # Workers live on between epochs unless asked not to: each image's augmentation is seeded
    # by (seed, epoch, index), the epoch in shared memory (Transformed.epoch), so a living
    # worker draws what a fresh one would; and DataBundle.start_train_pass keeps the training
    # steps' RNG as fresh iterators leave it. Restarting the train loader's worker cost 0.3 s of
    # each demo epoch (a cluster job restarts up to 8 workers, each opening its files again).
    persistent = workers and data.persistent_workers is not False
    max_bad = data.dataset.max_bad_fraction
    # Without augmentation nothing is random per image: no per-image generator to seed.
    train_seed = seed if data.augment is not None else None
    datasets = {
        "train": Transformed(
            splits.train, uint8_transform(data, train=True), "train", max_bad, replace_bad=True, seed=train_seed
        ),
        "val": Transformed(splits.val, uint8_transform(data, train=False), "val", max_bad),
        "test": Transformed(splits.test, uint8_transform(data, train=False), "test", max_bad),
    }
    cache_images(datasets, data, options["num_workers"])
    sampler = EpochShuffleSampler(len(splits.train), seed)
    sampler.epoch_value = datasets["train"].epoch
    # drop_last avoids a tiny last batch (a batch of 1 breaks BatchNorm in train mode).
    train = DataLoader(
        datasets["train"],
        batch_size=per_device,
        sampler=sampler,
        drop_last=len(splits.train) > per_device,
        **split_options(datasets["train"], options, persistent),
    )

    collate = CollateReadable(data.image_size_px, splits)

    def eval_loader(name: str) -> DataLoader[Any]:
        return DataLoader(
            datasets[name],
            batch_size=per_device,
            collate_fn=collate,
            **split_options(datasets[name], options, persistent),
        )

    return DataBundle(
        splits=splits,
        train=train,
        val=eval_loader("val"),
        test=eval_loader("test"),
        train_sampler=sampler,
        datasets=datasets,
        train_persistent=bool(train.persistent_workers),
    )


def cache_images(datasets: dict[str, Transformed], data: DataConfig, workers: int) -> None:
    """Decode each split that fits data.cache_max_mib once, into memory (trainers.data.image_cache)."""
    sizes = [(name, len(dataset)) for name, dataset in datasets.items()]
    for name in splits_to_cache(sizes, data.image_size_px, data.cache_max_mib):
        prefix, rest = cached_stages(data, train=name == "train")
        dataset = datasets[name]
        cache = fill(len(dataset), partial(dataset.decode_with, transform=prefix), data.image_size_px, workers)
        dataset.use_cache(cache, rest)


def split_options(dataset: Transformed, options: dict[str, Any], persistent: bool) -> dict[str, Any]:
    """One loader's worker options: none for a split read whole from the cache (a worker
    would only copy each batch once more), else `options` with `persistent` workers."""
    if dataset.fully_cached:
        return {"num_workers": 0, "pin_memory": options["pin_memory"]}
    return {**options, "persistent_workers": persistent}
