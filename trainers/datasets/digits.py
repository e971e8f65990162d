"""scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), rendered
as PIL images: a small real dataset that needs no download."""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from trainers.config import DataConfig
from trainers.datasets.base import DatasetSplits, InMemoryImages, stratified_split
from trainers.datasets.registry import register

# load_digits pixels are counts of set pixels in 4x4 blocks of a 32x32 bitmap: 0..16.
_DIGITS_MAX = 16.0


def render_digits(grayscale: bool = False) -> InMemoryImages:
    """Every digit as an 8x8 PIL image (mode L when `grayscale`, else RGB) with its label."""
    bunch = load_digits()
    pixels = np.round(bunch.images * (255.0 / _DIGITS_MAX)).astype(np.uint8)
    mode = "L" if grayscale else "RGB"
    images = [Image.fromarray(p, mode="L").convert(mode) for p in pixels]
    return InMemoryImages(images, [int(t) for t in bunch.target])


@register("digits")
def build_digits(data: DataConfig) -> DatasetSplits:
    """Digits with a fixed stratified train/val/test split from the dataset config."""
    ds = data.dataset
    images = render_digits(data.grayscale)
    # Test first: the test set then does not move when val_fraction changes.
    test_idx, val_idx, train_idx = stratified_split(images.labels, [ds.test_fraction, ds.val_fraction], ds.split_seed)
    return DatasetSplits(
        class_names=[str(d) for d in range(10)],
        train=images.subset(train_idx),
        val=images.subset(val_idx),
        test=images.subset(test_idx),
    )
