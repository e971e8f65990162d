"""The decoded-image cache (trainers.data.image_cache): a cached run sees exactly the pixels, targets,
order and unreadable-image handling of an uncached one; the budget decides which splits fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from config_helpers import tiny_config

from trainers.config import DataConfig
from trainers.data.image_cache import MIB, image_bytes, splits_to_cache
from trainers.data.loaders import DataBundle, build_data

AUGMENT = {
    "hflip_p": 0.5,
    "rotate_deg": 20,
    "rotate_p": 0.5,
    "color_jitter": [0.2, 0.2, 0.2, 0.05],
    "translate_frac": 0.1,
    "scale_range": [0.9, 1.1],
    "shear_deg": 5,
}


def _data(cache_max_mib: int, **fields: Any) -> DataConfig:
    base: dict[str, Any] = {"dataset": {"name": "digits", "max_samples": 60}, "image_size_px": 16, "batch_size": 8}
    return DataConfig.model_validate({**base, **fields, "cache_max_mib": cache_max_mib})


def _batches(bundle: DataBundle, epochs: int = 2) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    seen = []
    for epoch in range(epochs):
        bundle.train_sampler.set_epoch(epoch)
        seen += [("train", images.as_subclass(torch.Tensor), targets) for images, targets in bundle.train]
    for name, loader in (("val", bundle.val), ("test", bundle.test)):
        seen += [(name, images.as_subclass(torch.Tensor), targets) for images, targets, _ in loader]
    return seen


def _assert_same(a: DataBundle, b: DataBundle) -> None:
    left, right = _batches(a), _batches(b)
    assert len(left) == len(right) > 0
    for (split, x, y), (_, x2, y2) in zip(left, right, strict=True):
        assert x.dtype == x2.dtype == torch.uint8, split
        assert torch.equal(x, x2), f"{split}: cached pixels differ"
        assert torch.equal(y, y2), f"{split}: targets differ"


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("augment", [None, AUGMENT])
def test_cached_batches_equal_uncached(workers: int, augment: dict[str, Any] | None) -> None:
    uncached = build_data(_data(0, num_workers=workers, augment=augment), seed=3)
    cached = build_data(_data(64, num_workers=workers, augment=augment), seed=3)
    assert all(ds.cache is None for ds in (uncached.datasets or {}).values())
    assert all(ds.cache is not None and bool(ds.cache.filled.all()) for ds in (cached.datasets or {}).values())
    _assert_same(cached, uncached)


def test_grayscale_cached_equal_uncached() -> None:
    _assert_same(build_data(_data(64, grayscale=True), 0), build_data(_data(0, grayscale=True), 0))


def test_unreadable_image_stays_out_of_the_cache(tmp_path: Path) -> None:
    import dataset_fixtures as fixtures

    fixtures.make_imagefolder(tmp_path, per_class=8)
    fixtures.truncate(tmp_path / "dog" / "dog_0.jpg")
    dataset = {
        "name": "imagefolder",
        "root": str(tmp_path),
        "val_fraction": 0.0,
        "test_fraction": 0.0,
        "max_bad_fraction": 0.1,
    }
    # 24 train images in batches of 8: drop_last leaves none out, so the uncached run meets it too.
    with pytest.warns(UserWarning, match="dog_0.jpg") as caught:
        bundles = [build_data(_data(budget, dataset=dataset, num_workers=0), seed=0) for budget in (64, 0)]
        _assert_same(*bundles)  # the substitute image and the batch sizes are those of the uncached run
    assert sum("dog_0.jpg" in str(w.message) for w in caught) == 2  # once per bundle, cached or not
    cached = (bundles[0].datasets or {})["train"].cache
    assert cached is not None and int((~cached.filled).sum()) == 1
    assert bundles[0].skipped_images() == bundles[1].skipped_images() == {"train": 1, "val": 0, "test": 0}


def test_budget_caches_train_first_and_only_what_fits() -> None:
    size = 32
    one = image_bytes(size)
    sizes = [("train", 100), ("val", 20), ("test", 40)]
    assert splits_to_cache(sizes, size, budget_mib=0) == []
    budget_mib = 1
    fits = budget_mib * MIB // one
    assert splits_to_cache([("train", fits), ("val", 1)], size, budget_mib) == ["train"]
    assert splits_to_cache([("train", fits + 1), ("val", 1)], size, budget_mib) == ["val"]
    assert splits_to_cache(sizes, size, budget_mib) == ["train", "val", "test"]
    assert splits_to_cache([("train", 0)], size, budget_mib) == []


def test_too_big_for_the_budget_is_not_cached() -> None:
    bundle = build_data(_data(1, image_size_px=224), seed=0)  # 60 x 147 KiB per split > 1 MiB
    assert all(ds.cache is None for ds in (bundle.datasets or {}).values())
    assert bundle.train.num_workers == bundle.val.num_workers  # the configured loader, as before


@pytest.mark.slow
@pytest.mark.parametrize(("augment", "workers"), [({"hflip_p": 0.5}, 0), (None, 1)])
def test_cached_and_uncached_runs_train_identically(
    tmp_path: Path, augment: dict[str, Any] | None, workers: int
) -> None:
    """Also when the cache changes the loader: without augmentation a cached train split is read
    in the training process, the uncached one by a worker process."""
    from trainers.loop.run import run_training

    metrics = []
    for budget in (512, 0):
        cfg = tiny_config(data__cache_max_mib=budget, data__augment=augment, data__num_workers=workers, epochs=2)
        metrics.append(run_training(cfg, tmp_path / str(budget)))
    histories = [pd.read_csv(tmp_path / str(budget) / "history.csv") for budget in (512, 0)]
    learned = [column for column in histories[0].columns if "loss" in column or "top1" in column]
    assert len(learned) >= 3 and len(histories[0]) == 2
    pd.testing.assert_frame_equal(histories[0][learned], histories[1][learned])  # timing columns aside
    assert metrics[0]["test"] == metrics[1]["test"]
