"""How the digits dataset is split and labelled, without torch or PIL: trainers.datasets.digits
builds its images on this, and trainers.datasets.sizes counts its train split before a run."""

from __future__ import annotations

import numpy as np

from trainers.config import DatasetConfig
from trainers.datasets.splits import stratified_split

DIGIT_NAMES = [str(d) for d in range(10)]
SUPER_NAMES = ["0-4", "5-9"]


def digit_parts(digits: np.ndarray, ds: DatasetConfig) -> dict[str, np.ndarray]:
    """Indices of the train, val and test split of the digits (labels `digits`), stratified.
    Test is carved first, so the test set does not move when val_fraction changes."""
    test_idx, val_idx, train_idx = stratified_split(digits, [ds.test_fraction, ds.val_fraction], ds.split_seed)
    return {"train": train_idx, "val": val_idx, "test": test_idx}


def hierarchy(digits: np.ndarray) -> np.ndarray:
    """int64 [n, 2]: super class (0 for 0-4, 1 for 5-9) and sub class (the digit) of each digit."""
    return np.stack([(digits >= 5).astype(np.int64), digits], axis=1)
