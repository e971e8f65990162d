"""Shared pieces of every dataset: the splits a builder returns and labelled image
collections whose targets are known without decoding a single image.

Label structure (`DatasetSplits.task`), the contract with heads, losses and metrics:

- ``single``: `class_names` are the classes; a target is an int (the class index);
  `targets` is an int64 array [n].
- ``hierarchical``: `class_names` are the SUB classes, `super_class_names` the super
  classes; a target is a LongTensor [super, sub]; `targets` is int64 [n, 2]. With
  `novel_slot`, sub index `len(class_names)` means "novel / unseen sub-class": the sub
  head then needs `num_classes + 1` outputs (`num_sub_outputs`). Novel images appear
  only in evaluation splits.
- ``multilabel``: `class_names` are the label names; a target is a float32 multi-hot
  tensor [len(class_names)]; `targets` is float32 [n, L]. An all-zero row (an image with
  no label) is a valid sample.

Builders return raw PIL images; transforms are applied later (trainers.data.loaders), so one
dataset object serves train-time augmentation and deterministic evaluation.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from trainers import rundir
from trainers.datasets.index import split_manifest
from trainers.datasets.splits import cap_indices, strata_of, stratified_split

_UINT16_MAX = 65535  # 16-bit grey (and PIL's 32-bit `I`, which holds 16-bit PNGs/TIFFs) is read on this range

Task = Literal["single", "hierarchical", "multilabel"]
TASKS: tuple[Task, ...] = ("single", "hierarchical", "multilabel")


def as_targets(targets: Any) -> np.ndarray:
    """Targets as the contract's array: float32 for multi-hot rows, int64 otherwise."""
    # Multi-hot targets arrive as a float array; lists (possibly empty) are class indices.
    if isinstance(targets, np.ndarray) and targets.dtype.kind == "f":
        return targets.astype(np.float32, copy=False)
    return np.asarray(targets, dtype=np.int64)


class LabeledImages(Dataset[tuple[Image.Image, Any]]):
    """A collection of (PIL image, target) pairs with every target known up front.

    `targets` is a numpy array (see the module docstring for its shape per task), so
    splits, caps, class counts and class weights never decode an image.
    """

    targets: np.ndarray

    def load(self, index: int) -> Image.Image:
        """The image at `index`, decoded."""
        raise NotImplementedError

    def source(self, index: int) -> str:
        """Where the image at `index` comes from (a file path), for warnings and reports."""
        return f"#{index}"

    def ident(self, index: int) -> str:
        """A stable id of the image at `index` (path relative to the dataset root, or the
        index in the dataset's own order), listed in split.json."""
        return str(index)

    def target(self, index: int) -> Any:
        """The target of one sample: int (single), LongTensor [2] (hierarchical) or
        float32 multi-hot tensor (multilabel)."""
        value = self.targets[index]
        if self.targets.ndim == 1:
            return int(value)
        return torch.from_numpy(np.array(value))  # a copy: int64 -> Long, float32 -> Float

    @property
    def labels(self) -> list[int]:
        """Single-label class indices as a list (the sub-class for hierarchical targets)."""
        if self.targets.ndim == 1:
            return cast(list[int], self.targets.tolist())
        if self.targets.dtype == np.int64:
            return cast(list[int], self.targets[:, -1].tolist())
        raise TypeError("multi-label targets have no single class index; use .targets")

    @property
    def strata(self) -> np.ndarray:
        """One int per sample for stratified splitting and balanced caps."""
        return strata_of(self.targets)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Image.Image, Any]:
        return self.load(index), self.target(index)

    def subset(self, indices: Iterable[int]) -> LabeledImages:
        """The images at `indices`, in that order."""
        return _Subset(self, [int(i) for i in indices])

    def with_targets(self, targets: Any) -> LabeledImages:
        """The same images with other targets (same length), e.g. remapped class indices."""
        return _Relabelled(self, as_targets(targets))


class _Subset(LabeledImages):
    def __init__(self, parent: LabeledImages, indices: list[int]) -> None:
        self.parent = parent
        self.indices = indices
        self.targets = parent.targets[np.asarray(indices, dtype=np.int64)]

    def load(self, index: int) -> Image.Image:
        return self.parent.load(self.indices[index])

    def source(self, index: int) -> str:
        return self.parent.source(self.indices[index])

    def ident(self, index: int) -> str:
        return self.parent.ident(self.indices[index])


class _Relabelled(LabeledImages):
    def __init__(self, parent: LabeledImages, targets: np.ndarray) -> None:
        if len(targets) != len(parent):
            raise ValueError(f"{len(targets)} targets for {len(parent)} images")
        self.parent = parent
        self.targets = targets

    def load(self, index: int) -> Image.Image:
        return self.parent.load(index)

    def source(self, index: int) -> str:
        return self.parent.source(index)

    def ident(self, index: int) -> str:
        return self.parent.ident(index)


class InMemoryImages(LabeledImages):
    """Images already decoded in memory (small datasets such as digits)."""

    def __init__(self, images: list[Image.Image], targets: Any) -> None:
        self.images = images
        self.targets = as_targets(targets)
        if len(images) != len(self.targets):
            raise ValueError(f"{len(images)} images but {len(self.targets)} targets")

    def load(self, index: int) -> Image.Image:
        # A copy, so an in-place transform can never alter the cached image.
        return self.images[index].copy()


class ImageFiles(LabeledImages):
    """Image files on disk, decoded to RGB on access.

    `draft_px`: when set, JPEGs are decoded by libjpeg at the smallest power-of-two
    reduction that keeps both sides >= draft_px (DCT scaling), which is several times
    faster for photos much larger than the network input.
    """

    def __init__(
        self, paths: list[Path], targets: Any, draft_px: int | None = None, ids: list[str] | None = None
    ) -> None:
        self.paths = paths
        self.targets = as_targets(targets)
        self.draft_px = draft_px
        self.ids = ids
        if len(paths) != len(self.targets):
            raise ValueError(f"{len(paths)} paths but {len(self.targets)} targets")

    def load(self, index: int) -> Image.Image:
        # open_regular: a FIFO (or a device) among the images is an OSError, counted as an unreadable
        # image like a corrupt one (PIL's open of a FIFO hung the loader, and the run, forever).
        with rundir.open_regular(self.paths[index]) as handle, Image.open(handle) as image:
            if self.draft_px is not None and image.format == "JPEG":
                image.draft("RGB", (self.draft_px, self.draft_px))
            return to_rgb(image)

    def source(self, index: int) -> str:
        return str(self.paths[index])

    def ident(self, index: int) -> str:
        return self.ids[index] if self.ids is not None else str(self.paths[index])


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB. 16-bit and 32-bit integer grey (`I;16*`, `I`: a 12- or 16-bit sensor's
    PNG/TIFF) is rescaled from 0-65535, and float grey (`F`) from 0-1 (0-255 where it exceeds 1):
    PIL's own convert clips them at 255, so nearly every pixel of a 0-4095 image turned white."""
    if image.mode.startswith("I;16") or image.mode == "I":
        scaled = np.clip(np.asarray(image, dtype=np.float64), 0, _UINT16_MAX) * (255 / _UINT16_MAX)
    elif image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        scaled = np.clip(pixels * (255.0 if pixels.size and pixels.max() <= 1.0 else 1.0), 0, 255)
    else:
        return image.convert("RGB")
    return Image.fromarray(np.rint(scaled).astype(np.uint8)).convert("RGB")


@dataclass(frozen=True)
class DatasetSplits:
    """What every dataset builder returns: label structure and the three splits."""

    class_names: list[str]
    """Classes (single), SUB classes (hierarchical) or label names (multilabel)."""
    train: LabeledImages
    val: LabeledImages
    test: LabeledImages
    task: Task = "single"
    """Label structure: single, hierarchical (super/sub) or multilabel (multi-hot)."""
    super_class_names: list[str] = field(default_factory=list)
    """Super classes of a hierarchical dataset (empty otherwise)."""
    novel_slot: bool = False
    """Hierarchical only: sub index len(class_names) stands for a novel/unseen sub-class."""
    info: dict[str, Any] = field(default_factory=dict)
    """Facts about how the splits were made (official or carved, seeds), for split.json."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        for name in ("train", "val", "test"):
            check_targets(getattr(self, name).targets, self.task, self.num_classes, self.novel_slot, name)

    @property
    def num_classes(self) -> int:
        """len(class_names): the width of the (sub) classifier without the novel slot."""
        return len(self.class_names)

    @property
    def num_super_classes(self) -> int:
        """len(super_class_names) (0 unless hierarchical)."""
        return len(self.super_class_names)

    @property
    def num_sub_outputs(self) -> int:
        """Outputs of the sub-class head: num_classes, plus one when novel_slot."""
        return self.num_classes + int(self.novel_slot)

    def manifest(self) -> dict[str, Any]:
        """What split.json records: per split the count, class counts, a hash of the sorted
        image ids and (for datasets up to MANIFEST_MAX_IDS images) the ids themselves."""
        names = ("train", "val", "test")
        ids = {n: [self.split(n).ident(i) for i in range(len(self.split(n)))] for n in names}
        strata = {n: self.split(n).strata for n in names}
        info = {"task": self.task, "num_classes": self.num_classes, **self.info}
        return split_manifest(ids, strata, info)

    def split(self, name: str) -> LabeledImages:
        """One split by name: train, val or test."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; splits: train, val, test")
        return cast(LabeledImages, getattr(self, name))


def check_targets(targets: np.ndarray, task: Task, num_classes: int, novel_slot: bool, where: str) -> None:
    """Raise ValueError when `targets` do not have the shape and range `task` promises."""
    n = len(targets)
    if task == "single":
        ok = targets.ndim == 1 and targets.dtype == np.int64
        ok = ok and (n == 0 or (targets.min() >= 0 and targets.max() < num_classes))
    elif task == "hierarchical":
        ok = targets.ndim == 2 and targets.shape[1] == 2 and targets.dtype == np.int64
        ok = ok and (n == 0 or (targets.min() >= 0 and targets[:, 1].max() < num_classes + int(novel_slot)))
    else:
        ok = targets.ndim == 2 and targets.shape[1] == num_classes and targets.dtype == np.float32
    if not ok:
        shape = f"{targets.dtype}{list(targets.shape)}"
        raise ValueError(f"{where}: targets {shape} do not fit task {task!r} with {num_classes} classes")


def cap_per_split(images: LabeledImages, max_samples: int | None, split: str = "a") -> LabeledImages:
    """At most `max_samples` images, taken round-robin over classes so the cap stays balanced;
    a warning when the cap is below the class count (whole classes drop out of the split,
    which silently changed what a smoke run's metrics measure)."""
    if max_samples is None or len(images) <= max_samples:
        return images
    rows = cap_indices(images.strata, max_samples)
    strata = np.asarray(images.strata)
    classes, kept = len(np.unique(strata)), len(np.unique(strata[rows]))
    if kept < classes:
        warnings.warn(
            f"data.dataset.max_samples={max_samples} keeps {kept} of the {classes} classes of the {split} split; "
            f"set it to at least {classes} to keep one image of each",
            stacklevel=2,
        )
    return images.subset(rows)


__all__ = [
    "TASKS",
    "DatasetSplits",
    "ImageFiles",
    "InMemoryImages",
    "LabeledImages",
    "Task",
    "as_targets",
    "cap_per_split",
    "check_targets",
    "stratified_split",
]
