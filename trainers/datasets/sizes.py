"""How many images a run trains on per epoch, known before it runs (no torch, PIL or decoding).

`orchestrate plan` estimates a cell's device-hours from a throughput the site declares; that needs
the size of the full train split. File datasets give it from their annotation files (the same
`resolve_splits` the trainer uses, so carved splits have the trainer's sizes); digits from
scikit-learn's bundled labels and the same seeded split. Anything else, or files that cannot be
read here, is None: the estimate then says "unknown" rather than guess.
"""

from __future__ import annotations

import numpy as np

from trainers.config import DatasetConfig
from trainers.datasets.digit_split import DIGIT_NAMES, digit_parts, hierarchy
from trainers.datasets.index import IN_MEMORY, resolve_splits
from trainers.datasets.splits import apply_novel, novel_mapping


def train_images(ds: DatasetConfig) -> int | None:
    """Images in the train split before any `max_samples` cap, or None when it cannot be known here."""
    try:
        if ds.name == "digits":
            return _digits_train(ds)
        if ds.name in IN_MEMORY:
            return None
        return len(resolve_splits(ds).train)
    except (OSError, ValueError):
        return None


def _digits_train(ds: DatasetConfig) -> int | None:
    """The digits train split as trainers.datasets.digits.build_digits carves it."""
    if ds.level is not None or ds.train_on_trainval:
        return None  # refused by the trainer: such a run has no size
    from sklearn.datasets import load_digits  # ~0.1 s; only when a cell needs it

    digits = load_digits().target.astype(np.int64)
    train = digit_parts(digits, ds)["train"]
    if ds.task == "hierarchical" and ds.novel_subclasses:
        names, mapping = novel_mapping(DIGIT_NAMES, ds.novel_subclasses, ds.name)
        kept, _ = apply_novel(hierarchy(digits)[train], mapping, len(names), evaluation=False)
        return len(kept)
    return len(train)


def epoch_images(train: int, max_samples: int | None, max_steps_per_epoch: int | None, batch_size: int) -> int:
    """Images one epoch trains on: the train split capped by `max_samples`, then by the step limit
    (`batch_size` is the global batch: images per optimizer step over all devices)."""
    capped = min(train, max_samples) if max_samples is not None else train
    return min(capped, max_steps_per_epoch * batch_size) if max_steps_per_epoch is not None else capped
