"""Decoded-image cache: a split's resized uint8 images, decoded once and re-read every epoch.

Decoding and resizing are deterministic, so a run need not redo them every epoch: a split that
fits `data.cache_max_mib` is decoded once, by loader worker processes in parallel, into one uint8
tensor [n, 3, S, S]. Random augmentation still runs per image and epoch, on the cached pixels
turned back into the PIL image they came from (trainers.data.transforms.cached_stages), so a cached
run trains on exactly the pixels an uncached one does. Images that fail to decode (or decode to
an unusual shape) stay out of the cache and take the normal path, which flags and counts them
once and, in training, substitutes the next readable image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

MIB = 1024 * 1024
FILL_BATCH = 64
"""Images per batch a fill worker hands back (one shared-memory transfer each)."""


@dataclass
class ImageCache:
    """One split's images after the deterministic transform."""

    images: torch.Tensor
    """uint8 [n, 3, S, S]; rows with `filled` False hold nothing."""
    filled: torch.Tensor
    """bool [n]: which rows hold their image."""

    def get(self, index: int) -> torch.Tensor | None:
        """The cached image at `index` (a view), or None when it is not cached."""
        return self.images[index] if bool(self.filled[index]) else None


def image_bytes(size_px: int) -> int:
    """Bytes of one cached image: uint8, 3 channels, size_px x size_px."""
    return 3 * size_px * size_px


def splits_to_cache(sizes: Sequence[tuple[str, int]], size_px: int, budget_mib: int) -> list[str]:
    """The splits (in the order given, the most re-read first) whose images fit the budget together."""
    chosen, used = [], 0
    for name, count in sizes:
        need = count * image_bytes(size_px)
        if count > 0 and used + need <= budget_mib * MIB:
            chosen.append(name)
            used += need
    return chosen


class _Decoded(Dataset[tuple[int, torch.Tensor] | None]):
    """(index, uint8 image) of each image of a split, None for one that did not decode."""

    def __init__(self, count: int, decode: Callable[[int], torch.Tensor | None], size_px: int) -> None:
        self.count = count
        self.decode = decode
        self.shape = (3, size_px, size_px)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor] | None:
        image = self.decode(index)
        if image is None or image.dtype != torch.uint8 or tuple(image.shape) != self.shape:
            return None  # left to the normal path, which reports it
        return index, image.as_subclass(torch.Tensor)


def _stack(batch: list[tuple[int, torch.Tensor] | None]) -> tuple[torch.Tensor, torch.Tensor] | None:
    kept = [sample for sample in batch if sample is not None]
    if not kept:
        return None
    return torch.tensor([index for index, _ in kept]), torch.stack([image for _, image in kept])


def fill(count: int, decode: Callable[[int], torch.Tensor | None], size_px: int, workers: int) -> ImageCache:
    """Decode images 0..count-1 with `decode` (PIL -> resized uint8 tensor, None when unreadable)
    into a new cache, in `workers` loader processes (none for a split of a few batches)."""
    cache = ImageCache(
        torch.zeros((count, 3, size_px, size_px), dtype=torch.uint8), torch.zeros(count, dtype=torch.bool)
    )
    workers = workers if count > 4 * FILL_BATCH else 0
    # A private generator: the loader draws its workers' base seed from it, not from torch's
    # global RNG, which would shift every random number the run draws after (its init, dropout).
    loader = DataLoader(
        _Decoded(count, decode, size_px),
        batch_size=FILL_BATCH,
        num_workers=workers,
        collate_fn=_stack,
        generator=torch.Generator(),
    )
    for batch in loader:
        if batch is not None:
            indices, images = batch
            cache.images[indices] = images
            cache.filled[indices] = True
    return cache
