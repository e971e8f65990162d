"""The DatasetSplits label-structure contract on real data: digits as single, hierarchical
(with a novel sub-class) and multi-label, down to a DataLoader batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers.config import DataConfig
from trainers.data.loaders import build_data
from trainers.datasets import build_splits
from trainers.datasets.digits import DIGIT_PROPERTIES


def _data(**dataset: object) -> DataConfig:
    return DataConfig.model_validate(
        {"dataset": {"name": "digits", **dataset}, "image_size_px": 16, "batch_size": 8, "num_workers": 0}
    )


def test_hierarchical_digits_targets_and_batch() -> None:
    splits = build_splits(_data(task="hierarchical"))
    assert splits.task == "hierarchical" and not splits.novel_slot
    assert splits.super_class_names == ["0-4", "5-9"] and splits.num_classes == 10
    targets = splits.train.targets
    assert targets.dtype == np.int64 and targets.shape == (len(splits.train), 2)
    assert np.array_equal(targets[:, 0], (targets[:, 1] >= 5).astype(np.int64))  # super = digit >= 5
    # Same images as the single-label split: the task changes targets, not the split.
    single = build_splits(_data())
    assert np.array_equal(single.test.targets, splits.test.targets[:, 1])
    _, target = splits.train[0]
    assert isinstance(target, torch.Tensor) and target.dtype == torch.long and target.shape == (2,)


def test_novel_subclass_held_out_of_training_and_labelled_in_test() -> None:
    splits = build_splits(_data(task="hierarchical", novel_subclasses=["9"]))
    full = build_splits(_data(task="hierarchical"))
    assert splits.novel_slot and splits.class_names == [str(d) for d in range(9)]
    assert splits.num_sub_outputs == 10
    for part in (splits.train, splits.val):
        assert 9 not in part.targets[:, 1].tolist()  # no novel image to learn from
    assert len(splits.train) == len(full.train) - int((full.train.targets[:, 1] == 9).sum())
    novel_rows = splits.test.targets[:, 1] == 9
    assert novel_rows.sum() == (full.test.targets[:, 1] == 9).sum() > 0
    assert (splits.test.targets[novel_rows, 0] == 1).all()  # their super-class survives
    with pytest.raises(ValueError, match=r"novel_subclasses.*'ten'"):
        build_splits(_data(task="hierarchical", novel_subclasses=["ten"]))


def test_multilabel_digits_multi_hot_with_unlabelled_images() -> None:
    splits = build_splits(_data(task="multilabel"))
    single = build_splits(_data())
    assert splits.task == "multilabel" and splits.class_names == list(DIGIT_PROPERTIES)
    targets = splits.test.targets
    assert targets.dtype == np.float32 and targets.shape == (len(splits.test), 4)
    digits = single.test.targets
    assert np.array_equal(targets[:, 0], (digits % 2 == 0).astype(np.float32))
    assert np.array_equal(targets[:, 2], np.isin(digits, [2, 3, 5, 7]).astype(np.float32))
    unlabelled = targets.sum(axis=1) == 0
    assert unlabelled.any() and np.array_equal(unlabelled, digits == 1)
    with pytest.raises(TypeError, match="multi-label"):
        _ = splits.test.labels


@pytest.mark.parametrize(
    ("task", "shape", "dtype"),
    [(None, (8,), torch.int64), ("hierarchical", (8, 2), torch.int64), ("multilabel", (8, 4), torch.float32)],
)
def test_loader_batches_per_task(task: str | None, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    bundle = build_data(_data(task=task, max_samples=40), seed=0)
    images, targets = next(iter(bundle.train))
    assert images.shape == (8, 3, 16, 16)
    assert targets.shape == shape and targets.dtype == dtype
