"""Trainer datasets and transforms: digits split, ImageFolder layouts, caps, tensor shapes."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainers.config import DataConfig
from trainers.data.loaders import EpochShuffleSampler, build_data, epoch_seed
from trainers.data.transforms import build_transform
from trainers.datasets import available, build_splits, stratified_split


def _data(**fields: object) -> DataConfig:
    return DataConfig.model_validate(fields)


def test_registry_lists_builtin_datasets() -> None:
    assert {"digits", "imagefolder"} <= set(available())
    with pytest.raises(ValueError, match=r"registered: .*digits"):
        build_splits(_data(dataset="no_such_set"))


def test_digits_split_sizes_stratified_and_deterministic() -> None:
    splits = build_splits(_data(dataset={"name": "digits", "val_fraction": 0.1, "test_fraction": 0.2}))
    assert splits.num_classes == 10
    assert splits.class_names == [str(d) for d in range(10)]
    sizes = (len(splits.train), len(splits.val), len(splits.test))
    assert sum(sizes) == 1797
    assert sizes[2] == round(0.2 * 1797)
    assert sizes[1] == round(0.1 * 1797)
    # Stratified: every class keeps close to its overall share in each split.
    overall = Counter(splits.train.labels + splits.val.labels + splits.test.labels)
    for part in (splits.train, splits.val, splits.test):
        counts = Counter(part.labels)
        for label, total in overall.items():
            assert abs(counts[label] / len(part) - total / 1797) < 0.02
    again = build_splits(_data(dataset="digits"))
    assert again.test.indices == splits.test.indices  # type: ignore[attr-defined]
    other = build_splits(_data(dataset={"name": "digits", "split_seed": 1}))
    assert other.test.indices != splits.test.indices  # type: ignore[attr-defined]


def test_digits_test_split_does_not_depend_on_val_fraction() -> None:
    a = build_splits(_data(dataset={"name": "digits", "val_fraction": 0.1}))
    b = build_splits(_data(dataset={"name": "digits", "val_fraction": 0.3}))
    assert a.test.indices == b.test.indices  # type: ignore[attr-defined]


def test_digits_images_rgb_or_grayscale() -> None:
    rgb = build_splits(_data(dataset="digits")).train[0][0]
    gray = build_splits(_data(dataset="digits", grayscale=True)).train[0][0]
    assert (rgb.mode, rgb.size) == ("RGB", (8, 8))
    assert gray.mode == "L"
    assert np.asarray(gray).max() > 200  # 0..16 counts rendered to the full 0..255 range


def test_max_samples_caps_each_split_balanced() -> None:
    splits = build_splits(_data(dataset={"name": "digits", "max_samples": 50}))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50, 50, 50)
    assert set(Counter(splits.train.labels).values()) == {5}


def test_stratified_split_zero_fraction_and_tiny_fallback() -> None:
    labels = [0] * 10 + [1] * 10
    test, val, train = stratified_split(labels, [0.2, 0.0], seed=0)
    assert (len(test), len(val), len(train)) == (4, 0, 16)
    with pytest.warns(UserWarning, match="stratified split impossible"):
        stratified_split([0, 1, 2, 3], [0.25], seed=0)


def _write_images(folder: Path, classes: dict[str, int], size: tuple[int, int] = (20, 14)) -> None:
    rng = np.random.default_rng(0)
    for index, (name, count) in enumerate(classes.items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            pixels[..., index % 3] = 255  # class-dependent colour
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels).save(folder / name / f"img_{i}{suffix}")
    (folder / next(iter(classes)) / "notes.txt").write_text("not an image")


def test_imagefolder_single_folder_is_split(tmp_path: Path) -> None:
    _write_images(tmp_path / "set", {"cat": 10, "dog": 10, "owl": 10})
    data = _data(dataset={"name": "imagefolder", "root": str(tmp_path / "set"), "test_fraction": 0.2})
    splits = build_splits(data)
    assert splits.class_names == ["cat", "dog", "owl"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (21, 3, 6)
    assert Counter(splits.test.labels) == {0: 2, 1: 2, 2: 2}
    image, label = splits.train[0]
    assert image.mode == "RGB" and image.size == (20, 14) and label in (0, 1, 2)


def test_imagefolder_official_splits(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", {"a": 8, "b": 8})
    _write_images(tmp_path / "test", {"a": 3, "b": 2})
    data = _data(dataset={"name": "imagefolder", "root": str(tmp_path), "val_fraction": 0.25})
    splits = build_splits(data)
    assert splits.class_names == ["a", "b"]
    assert len(splits.test) == 5 and Counter(splits.test.labels) == {0: 3, 1: 2}
    assert (len(splits.train), len(splits.val)) == (12, 4)  # val carved from train only


def test_imagefolder_unknown_class_in_test_folder(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", {"a": 4, "b": 4})
    _write_images(tmp_path / "test", {"a": 2, "zebra": 2})
    with pytest.raises(ValueError, match="zebra"):
        build_splits(_data(dataset={"name": "imagefolder", "root": str(tmp_path), "val_fraction": 0.0}))


def test_imagefolder_missing_root_names_path_and_dataset(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=rf"imagefolder.*{missing}"):
        build_splits(_data(dataset={"name": "imagefolder", "root": str(missing)}))


@pytest.mark.parametrize("grayscale", [False, True])
def test_transforms_shape_and_normalisation(grayscale: bool) -> None:
    augment = {
        "hflip_p": 0.5,
        "rotate_deg": 15,
        "rotate_p": 0.5,
        "color_jitter": [0.25, 0.25, 0.25, 0.05],
        "translate_frac": 0.1,
        "scale_range": [0.9, 1.1],
    }
    data = _data(image_size_px=24, augment=augment, grayscale=grayscale)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 10, 3), dtype=np.uint8))
    for train in (True, False):
        out = build_transform(data, train=train)(image)
        assert out.shape == (3, 24, 24) and out.dtype == torch.float32
        if grayscale:
            assert torch.allclose((out[0] * 0.229 + 0.485), (out[1] * 0.224 + 0.456), atol=1e-5)
    evaluated = [build_transform(data, train=False)(image) for _ in range(2)]
    assert torch.equal(evaluated[0], evaluated[1])  # no randomness at evaluation
    assert len(build_transform(data, train=True).transforms) > len(build_transform(data, train=False).transforms)


def test_epoch_sampler_depends_only_on_seed_and_epoch() -> None:
    a, b = EpochShuffleSampler(50, seed=3), EpochShuffleSampler(50, seed=3)
    a.set_epoch(0)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    b.set_epoch(1)
    assert list(b) == second and first != second and sorted(first) == list(range(50))
    assert len({epoch_seed(0, e, s) for e in range(20) for s in range(4)}) == 80


def test_build_data_loaders_batches() -> None:
    data = _data(dataset={"name": "digits", "max_samples": 100}, image_size_px=16, batch_size=32, num_workers=0)
    bundle = build_data(data, seed=0)
    images, labels = next(iter(bundle.train))
    assert images.shape == (32, 3, 16, 16) and labels.shape == (32,)
    assert len(bundle.train) == 3  # 100 // 32, the short last batch dropped
    assert sum(len(x) for x, _, _ in bundle.test) == 100


def test_loader_options_from_config_and_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainers.data import loaders as data_module

    monkeypatch.setattr(data_module, "job_cpus", lambda: 6)
    assert data_module.default_num_workers() == 5
    monkeypatch.setattr(data_module, "job_cpus", lambda: 64)
    assert data_module.default_num_workers() == data_module.MAX_WORKERS
    assert data_module.loader_options(_data()) == {
        "num_workers": data_module.MAX_WORKERS,
        "pin_memory": torch.cuda.is_available(),
        "prefetch_factor": 2,
    }
    explicit = _data(num_workers=0, pin_memory=True, prefetch_factor=4)
    assert data_module.loader_options(explicit) == {"num_workers": 0, "pin_memory": True}  # no prefetch without workers
    small = {"dataset": {"name": "digits", "max_samples": 40}, "num_workers": 1, "cache_max_mib": 0}
    bundle = build_data(_data(**small, prefetch_factor=3), seed=0)
    assert (bundle.train.num_workers, bundle.train.prefetch_factor) == (1, 3)
    assert bundle.train.persistent_workers and bundle.val.persistent_workers and bundle.train_persistent
    augmented = _data(**small, augment={"hflip_p": 0.5})  # seeded per image and epoch: workers live on too
    assert build_data(augmented, seed=0).train.persistent_workers
    fresh = build_data(_data(**small, augment={"hflip_p": 0.5}, persistent_workers=False), 0)
    assert not (fresh.train.persistent_workers or fresh.val.persistent_workers or fresh.train_persistent)
    # Cached splits: read in the training process when nothing random is left to do per image.
    cached = build_data(_data(**{**small, "cache_max_mib": 1}, image_size_px=16, augment={"hflip_p": 0.5}), seed=0)
    assert (cached.train.num_workers, cached.val.num_workers, cached.test.num_workers) == (1, 0, 0)


def test_bad_image_counted_once_across_worker_processes(tmp_path: Path) -> None:
    import dataset_fixtures as fixtures

    fixtures.make_imagefolder(tmp_path, per_class=8)
    bad = tmp_path / "dog" / "dog_0.jpg"
    fixtures.truncate(bad)
    data = _data(
        dataset={
            "name": "imagefolder",
            "root": str(tmp_path),
            "val_fraction": 0.0,
            "test_fraction": 0.0,
            "max_bad_fraction": 0.1,
        },
        image_size_px=16,
        batch_size=4,
        num_workers=1,
        cache_max_mib=0,  # decoded in the loader's workers, every epoch
    )
    bundle = build_data(data, seed=0)
    for epoch in range(2):  # fresh worker processes each epoch; the image is still counted once
        bundle.train_sampler.set_epoch(epoch)
        assert sum(len(t) for _, t in bundle.train) == 24
    assert bundle.skipped_images() == {"train": 1, "val": 0, "test": 0}


def test_per_image_transform_runs_single_threaded_in_main_process() -> None:
    from trainers.data.loaders import _one_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with _one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_augmentation_is_seeded_on_the_cpu_generator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each training image's augmentation gives the pixels of torch.manual_seed(sample_seed(...))
    without calling it: torch.manual_seed also seeds every GPU backend, and where CUDA is not
    initialised (a loader worker, a CPU machine) queues that call with a formatted stack trace,
    about 0.35 ms an image in the demo's augmented runs. The caller's RNG is untouched."""
    from trainers.data.loaders import sample_seed

    data = _data(
        dataset={"name": "digits", "max_samples": 40},
        image_size_px=16,
        num_workers=0,
        cache_max_mib=0,
        augment={"hflip_p": 0.5, "rotate_deg": 15, "translate_frac": 0.1},
    )
    train = build_data(data, seed=3).datasets["train"]  # type: ignore[index]
    train.epoch.value = 2
    expected = []
    for index in range(4):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(3, 2, index))
            expected.append(train.transform(train.images.load(index)))

    def refused(seed: int) -> None:
        raise AssertionError("torch.manual_seed called for an image")

    monkeypatch.setattr(torch, "manual_seed", refused)
    state = torch.get_rng_state()
    for index, pixels in enumerate(expected):
        sample = train[index]
        assert sample is not None and torch.equal(sample[0], pixels)
    assert torch.equal(torch.get_rng_state(), state)
    assert len({bytes(p.numpy()) for p in expected}) == len(expected)  # the images differ: a real check


def test_a_fifo_among_the_images_is_an_unreadable_image_not_a_hang(tmp_path: Path) -> None:
    """PIL's open of a FIFO named like an image blocked the loader (and the run) forever; it is now an
    OSError, which the loaders count as an unreadable image (BAD_IMAGE_ERRORS)."""
    from deadline import deadline

    from trainers.data.loaders import BAD_IMAGE_ERRORS
    from trainers.datasets.base import ImageFiles

    os.mkfifo(tmp_path / "0.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "1.png")
    files = ImageFiles([tmp_path / "0.png", tmp_path / "1.png"], [0, 1])
    with deadline(10), pytest.raises(BAD_IMAGE_ERRORS, match="not a regular file"):
        files.load(0)
    assert files.load(1).size == (4, 4)
