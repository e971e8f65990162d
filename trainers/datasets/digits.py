"""scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), rendered
as PIL images: a small real dataset that needs no download, in three label structures
(`data.dataset.task`):

- single (default): the digit, 10 classes;
- hierarchical: super class "0-4" / "5-9", sub class the digit (10); `novel_subclasses`
  (e.g. ["9"]) holds digits out of training and labels their test images novel;
- multilabel: DIGIT_PROPERTIES (even, five_or_more, prime, loop); the digit 1 has none
  of them, so unlabelled images occur as in report 003.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from trainers.config import DataConfig
from trainers.datasets.base import DatasetSplits, InMemoryImages, LabeledImages
from trainers.datasets.digit_split import DIGIT_NAMES, SUPER_NAMES, digit_parts, hierarchy
from trainers.datasets.registry import register
from trainers.datasets.splits import apply_novel, novel_mapping

# load_digits pixels are counts of set pixels in 4x4 blocks of a 32x32 bitmap: 0..16.
_DIGITS_MAX = 16.0
DIGIT_PROPERTIES: dict[str, set[int]] = {
    "even": {0, 2, 4, 6, 8},
    "five_or_more": {5, 6, 7, 8, 9},
    "prime": {2, 3, 5, 7},
    "loop": {0, 6, 8, 9},
}


def render_digits(grayscale: bool = False) -> InMemoryImages:
    """Every digit as an 8x8 PIL image (mode L when `grayscale`, else RGB) with its label."""
    bunch = load_digits()
    pixels = np.round(bunch.images * (255.0 / _DIGITS_MAX)).astype(np.uint8)
    mode = "L" if grayscale else "RGB"
    images = [Image.fromarray(p, mode="L").convert(mode) for p in pixels]
    return InMemoryImages(images, bunch.target.astype(np.int64))


def multi_hot(digits: np.ndarray) -> np.ndarray:
    """float32 [n, len(DIGIT_PROPERTIES)]: which properties each digit has."""
    return np.array([[d in members for members in DIGIT_PROPERTIES.values()] for d in digits], dtype=np.float32)


@register("digits")
def build_digits(data: DataConfig) -> DatasetSplits:
    """Digits with a fixed stratified train/val/test split from the dataset config (the
    same images in each split whatever the task)."""
    ds = data.dataset
    if ds.task not in (None, "hierarchical") and ds.novel_subclasses:
        raise ValueError(f"dataset {ds.name!r}: novel_subclasses needs task: hierarchical")
    images = render_digits(data.grayscale)
    digits = images.targets
    parts = digit_parts(digits, ds)
    train_idx, val_idx, test_idx = parts["train"], parts["val"], parts["test"]
    info = {"policy": "stratified", "split_seed": ds.split_seed, "fractions": [ds.val_fraction, ds.test_fraction]}
    if ds.task == "multilabel":
        labelled = images.with_targets(multi_hot(digits))
        return DatasetSplits(
            list(DIGIT_PROPERTIES),
            train=labelled.subset(train_idx),
            val=labelled.subset(val_idx),
            test=labelled.subset(test_idx),
            task="multilabel",
            info=info,
        )
    if ds.task == "hierarchical":
        hier = hierarchy(digits)
        names, mapping = novel_mapping(DIGIT_NAMES, ds.novel_subclasses, ds.name)
        split: dict[str, LabeledImages] = {}
        for name, idx in parts.items():
            kept, targets = apply_novel(hier[idx], mapping, len(names), evaluation=name == "test")
            split[name] = images.subset(idx[kept]).with_targets(targets)
        novel = bool(ds.novel_subclasses)
        return DatasetSplits(
            names,
            train=split["train"],
            val=split["val"],
            test=split["test"],
            task="hierarchical",
            super_class_names=SUPER_NAMES,
            novel_slot=novel,
            info=info,
        )
    return DatasetSplits(
        DIGIT_NAMES, train=images.subset(train_idx), val=images.subset(val_idx), test=images.subset(test_idx), info=info
    )
