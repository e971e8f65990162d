"""Shared pieces of every dataset: the splits a builder returns, labelled image
collections, and the seeded stratified split used when a dataset ships no split.

Builders return raw PIL images; transforms are applied later (trainers.data), so
one dataset object serves train-time augmentation and deterministic evaluation.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset


class LabeledImages(Dataset[tuple[Image.Image, int]]):
    """A collection of (PIL image, class index) pairs with its labels known up front.

    Labels are kept as a plain list so splits, caps and class counts never decode images.
    """

    labels: list[int]

    def load(self, index: int) -> Image.Image:
        """The image at `index`, decoded."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return self.load(index), self.labels[index]

    def subset(self, indices: Iterable[int]) -> LabeledImages:
        """The images at `indices`, in that order."""
        return _Subset(self, [int(i) for i in indices])


class _Subset(LabeledImages):
    def __init__(self, parent: LabeledImages, indices: list[int]) -> None:
        self.parent = parent
        self.indices = indices
        self.labels = [parent.labels[i] for i in indices]

    def load(self, index: int) -> Image.Image:
        return self.parent.load(self.indices[index])


class InMemoryImages(LabeledImages):
    """Images already decoded in memory (small datasets such as digits)."""

    def __init__(self, images: list[Image.Image], labels: list[int]) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels

    def load(self, index: int) -> Image.Image:
        # A copy, so an in-place transform can never alter the cached image.
        return self.images[index].copy()


class ImageFiles(LabeledImages):
    """Image files on disk, decoded to RGB on access."""

    def __init__(self, paths: list[Path], labels: list[int]) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = paths
        self.labels = labels

    def load(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as image:
            return image.convert("RGB")


@dataclass(frozen=True)
class DatasetSplits:
    """What every dataset builder returns: class names and the three splits."""

    class_names: list[str]
    train: LabeledImages
    val: LabeledImages
    test: LabeledImages

    @property
    def num_classes(self) -> int:
        """Number of classes (the classifier's output width)."""
        return len(self.class_names)


def stratified_split(labels: Sequence[int], fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split indices 0..n-1 into len(fractions)+1 parts: one per fraction, then the rest.

    Each part is stratified by label when every class is large enough; tiny datasets fall
    back to a plain seeded shuffle (with a warning) instead of failing.
    """
    remaining = np.arange(len(labels))
    remaining_fraction = 1.0
    parts: list[np.ndarray] = []
    for fraction in fractions:
        # Fractions are of the whole dataset; rescale to what is left after earlier parts.
        share = fraction / remaining_fraction if remaining_fraction > 0 else 0.0
        part, remaining = _split_off(remaining, np.asarray(labels), share, seed)
        parts.append(part)
        remaining_fraction -= fraction
    return [*parts, remaining]


def _split_off(indices: np.ndarray, labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_take = round(share * len(indices))
    if n_take <= 0:
        return indices[:0], indices
    if n_take >= len(indices):
        return indices, indices[:0]
    try:
        rest, taken = train_test_split(indices, test_size=n_take, random_state=seed, stratify=labels[indices])
    except ValueError as error:
        warnings.warn(f"stratified split impossible ({error}); using a plain shuffle", stacklevel=3)
        rest, taken = train_test_split(indices, test_size=n_take, random_state=seed)
    return np.sort(taken), np.sort(rest)


def cap_per_split(images: LabeledImages, max_samples: int | None) -> LabeledImages:
    """At most `max_samples` images, taken round-robin over classes so the cap stays balanced."""
    if max_samples is None or len(images) <= max_samples:
        return images
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(images.labels):
        by_class.setdefault(label, []).append(index)
    queues = [by_class[label] for label in sorted(by_class)]
    chosen: list[int] = []
    for rank in range(max(len(q) for q in queues)):
        chosen.extend(q[rank] for q in queues if rank < len(q))
    return images.subset(sorted(chosen[:max_samples]))
