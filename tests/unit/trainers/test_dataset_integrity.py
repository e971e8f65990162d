"""The dataset-review fixes: split folders that overlap or differ in case, repeated and
shared images, ambiguous multi-label ids, predict decoding as eval, combined's own split
fields, 16-bit images, max_samples below the class count and the per-class fallback split."""

from __future__ import annotations

import csv
import re
import shutil
import warnings
from pathlib import Path

import dataset_fixtures as fx
import numpy as np
import pytest
import torch
from PIL import Image

from trainers.config import DataConfig, DatasetConfig
from trainers.datasets import build_splits
from trainers.datasets.base import ImageFiles
from trainers.datasets.check import check_dataset
from trainers.datasets.index import build_index, resolve_splits
from trainers.datasets.splits import stratified_split


def _imagenette_like(root: Path) -> Path:
    """train/ and val/ with class folders, no test/."""
    fx.make_imagefolder(root, split_folders=True)
    shutil.rmtree(root / "test")
    return root


@pytest.mark.parametrize(
    ("layout", "fields"),
    [({"test": "val"}, r"layout\.val \('val'\) and layout\.test \('val'\)"), ({"val": "train"}, r"layout\.train")],
)
def test_imagefolder_refuses_two_splits_on_one_folder(tmp_path: Path, layout: dict[str, str], fields: str) -> None:
    root = _imagenette_like(tmp_path)
    with pytest.raises(ValueError, match=rf"dataset 'imagefolder': {fields}.*read the same images") as caught:
        resolve_splits(DatasetConfig(name="imagefolder", root=str(root), layout=layout))
    assert "\n" not in str(caught.value)
    ok = resolve_splits(DatasetConfig(name="imagefolder", root=str(root), layout={"val": "none", "test": "val"}))
    assert not {*ok.val.ids} & {*ok.test.ids} and len(ok.test) == 6


def test_imagefolder_refuses_a_split_folder_inside_another(tmp_path: Path) -> None:
    root = _imagenette_like(tmp_path)
    with pytest.raises(ValueError, match=r"layout\.train \('.'\) and layout\.val \('val'\)"):
        resolve_splits(DatasetConfig(name="imagefolder", root=str(root), layout={"train": "."}))


def test_imagefolder_capitalised_split_folders_are_splits(tmp_path: Path) -> None:
    fx.make_imagefolder(tmp_path, split_folders=True)
    for split in ("train", "val", "test"):
        (tmp_path / split).rename(tmp_path / split.capitalize())
    resolved = resolve_splits(DatasetConfig(name="imagefolder", root=str(tmp_path)))
    assert resolved.class_names == ["cat", "dog", "owl"]
    assert (len(resolved.train), len(resolved.val), len(resolved.test)) == (18, 6, 6)
    assert resolved.info["policy"] == {"val": "official", "test": "official", "train": "official"}


def test_imagefolder_class_named_train_holding_images_stays_a_class(tmp_path: Path) -> None:
    for label, name in enumerate(("Boat", "Car", "Train")):
        for i in range(4):
            fx.write_image(tmp_path / name / f"{i}.png", label, i)
    resolved = resolve_splits(DatasetConfig(name="imagefolder", root=str(tmp_path)))
    assert resolved.class_names == ["Boat", "Car", "Train"]


@pytest.mark.parametrize(
    ("remove", "rename", "found"),
    [
        (["train"], {}, "test, val"),
        (["train", "test"], {}, "val"),
        (["train", "val"], {}, "test"),
        (["train"], {"val": "Val", "test": "TEST"}, "TEST, Val"),
        ([], {"train": "training"}, "test, val"),  # a training folder named otherwise: one more class
    ],
)
def test_imagefolder_refuses_split_folders_without_train(
    tmp_path: Path, remove: list[str], rename: dict[str, str], found: str
) -> None:
    fx.make_imagefolder(tmp_path, split_folders=True)
    for split in remove:
        shutil.rmtree(tmp_path / split)
    for old, new in rename.items():
        (tmp_path / old).rename(tmp_path / new)
    # Read as a class root, these were the classes val and test (and training): a wrong dataset.
    root = re.escape(str(tmp_path))
    expected = rf"dataset 'imagefolder': {root}: has split folder\(s\) {found} but no train/ of class folders"
    with pytest.raises(ValueError, match=expected) as caught:
        check_dataset(DatasetConfig(name="imagefolder", root=str(tmp_path)))  # at plan
    assert "\n" not in str(caught.value) and "layout.train" in str(caught.value)
    if rename.get("train"):
        named = resolve_splits(DatasetConfig(name="imagefolder", root=str(tmp_path), layout={"train": "training"}))
        assert named.class_names == ["cat", "dog", "owl"] and len(named.test) == 6


def test_imagefolder_class_named_val_among_classes_is_refused_unless_the_root_is_layout_train(tmp_path: Path) -> None:
    for label, name in enumerate(("cat", "dog", "val")):  # a stray folder of validation images, or a class?
        for i in range(10):
            fx.write_image(tmp_path / name / f"{i}.png", label, i)
    with pytest.raises(ValueError, match=r"has split folder\(s\) val but no train/"):
        check_dataset(DatasetConfig(name="imagefolder", root=str(tmp_path)))
    layout = {"train": ".", "val": "none", "test": "none"}  # the message's way to keep it as a class
    resolved = resolve_splits(DatasetConfig(name="imagefolder", root=str(tmp_path), layout=layout))
    assert resolved.class_names == ["cat", "dog", "val"]
    assert sum(len(resolved.split(s)) for s in ("train", "val", "test")) == 30


def test_imagefolder_refuses_a_layout_train_that_is_not_there(tmp_path: Path) -> None:
    fx.make_imagefolder(tmp_path)  # a class root: cat/ dog/ owl/
    with pytest.raises(
        ValueError, match=rf"layout\.train \('training'\) is not a folder under {re.escape(str(tmp_path))}$"
    ):
        check_dataset(DatasetConfig(name="imagefolder", root=str(tmp_path), layout={"train": "training"}))
    assert build_index(DatasetConfig(name="imagefolder", root=str(tmp_path))).class_names == ["cat", "dog", "owl"]


def test_a_row_listed_twice_is_refused(tmp_path: Path) -> None:
    fx.make_hierarchical_csv(tmp_path, per_class=4)
    with (tmp_path / "train_data.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    with (tmp_path / "train_data.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([*rows, rows[1]])
    with pytest.raises(
        ValueError, match=r"dataset 'hierarchical_csv': 1 image\(s\) listed more than once in the train"
    ):
        resolve_splits(DatasetConfig(name="hierarchical_csv", root=str(tmp_path)))


def test_an_image_in_two_official_splits_is_refused(tmp_path: Path) -> None:
    fx.make_hierarchical_csv(tmp_path, per_class=4, with_test=True)
    for image in (tmp_path / "test_images").iterdir():  # one folder for both CSVs
        shutil.copy(image, tmp_path / "train_images" / image.name)
    with (tmp_path / "train_data.csv").open(newline="") as handle:
        first = list(csv.reader(handle))[1]
    with (tmp_path / "test_data.csv").open("a", newline="") as handle:
        csv.writer(handle).writerow(first)
    ds = DatasetConfig(name="hierarchical_csv", root=str(tmp_path), layout={"test_images": "train_images"})
    with pytest.raises(
        ValueError, match=r"1 image\(s\) are in both the train and the test split \(e\.g\. 'train_images/"
    ):
        resolve_splits(ds)


def test_multilabel_id_matching_two_images_is_refused(tmp_path: Path) -> None:
    for seed, name in enumerate(["im1.jpg", "im2.jpg", "extra/im1.jpg"]):
        fx.write_image(tmp_path / "images" / name, 0, seed)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "bird.txt").write_text("2\n1\n")
    with pytest.raises(
        ValueError, match=r"entry 2 of .*bird.txt matches 2 images \(images/extra/im1.jpg and images/im1"
    ):
        build_index(DatasetConfig(name="multilabel", root=str(tmp_path)))
    (tmp_path / "annotations" / "bird.txt").write_text("2\n")  # the ambiguous id unused: fine
    assert len(build_index(DatasetConfig(name="multilabel", root=str(tmp_path))).parts["all"]) == 3


def test_predict_decodes_like_eval(tmp_path: Path) -> None:
    from trainers.loop.modes import _Unlabelled

    rng = np.random.default_rng(0)
    pixels = np.kron(rng.integers(0, 255, (60, 80, 3)), np.ones((10, 10, 1))).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=90)
    dataset = _Unlabelled(tmp_path, lambda image: torch.from_numpy(np.array(image)), draft_px=224)
    evaluated = np.asarray(ImageFiles([tmp_path / "big.jpg"], [0], draft_px=224).load(0))
    sample = dataset[0]
    assert sample is not None
    image, index = sample
    assert dataset.image_id(index) == "big.jpg"
    assert image.shape == evaluated.shape == (300, 400, 3)  # the draft, not 600x800
    assert np.array_equal(image.numpy(), evaluated)


def test_combined_refuses_its_own_split_fields(tmp_path: Path) -> None:
    fx.make_cub200(tmp_path / "cub")
    fx.make_imagefolder(tmp_path / "if")
    parts = [{"name": "cub200", "root": str(tmp_path / "cub")}, {"name": "imagefolder", "root": str(tmp_path / "if")}]
    with pytest.raises(ValueError, match=r"dataset 'combined': val_fraction apply to each part.*set them on the parts"):
        resolve_splits(DatasetConfig.model_validate({"name": "combined", "parts": parts, "val_fraction": 0.3}))
    assert len(resolve_splits(DatasetConfig.model_validate({"name": "combined", "parts": parts})).train) > 0


def test_16_bit_grey_is_rescaled_not_saturated(tmp_path: Path) -> None:
    gradient = np.linspace(0, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(gradient).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    loaded = np.asarray(ImageFiles([tmp_path / "g16.png"], [0]).load(0))
    assert loaded.shape == (64, 64, 3) and loaded.max() == round(4095 * 255 / 65535) and (loaded == 255).sum() == 0
    Image.fromarray((gradient / 4095).astype(np.float32)).save(tmp_path / "f.tif")
    floats = np.asarray(ImageFiles([tmp_path / "f.tif"], [0]).load(0))[..., 0]
    assert floats.min() == 0 and floats.max() == 255 and len(np.unique(floats)) > 200


def test_max_samples_below_the_class_count_warns() -> None:
    data = DataConfig.model_validate({"dataset": {"name": "digits", "max_samples": 6}})
    with pytest.warns(UserWarning, match=r"max_samples=6 keeps 6 of the 10 classes of the train split"):
        build_splits(data)


def test_one_rare_class_keeps_the_others_stratified() -> None:
    labels = np.concatenate([np.full(2 + c, c) for c in range(29)] + [np.full(1, 29)])
    with pytest.warns(UserWarning, match="splitting each class by hand"):
        test, val, train = stratified_split(labels, [0.2, 0.1], seed=0)
    assert sorted({*labels[train].tolist()}) == list(range(30))  # every class trains, the singleton too
    assert len(test) == round(0.2 * len(labels)) and not {*test} & {*val} | {*train} & {*test}
    for label in range(20, 29):  # each class's share, rounded, not a shuffle's luck
        count = int((labels == label).sum())
        assert abs(int((labels[test] == label).sum()) - 0.2 * count) < 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = stratified_split(labels[labels != 29], [0.2, 0.1], seed=0)  # sklearn's own split, no warning
    assert len(again) == 3


@pytest.mark.parametrize(("per_class", "refused"), [(1, True), (2, False)])
def test_a_dataset_whose_carved_test_split_is_empty_is_refused_at_plan(
    tmp_path: Path, per_class: int, refused: bool
) -> None:
    """One image per class carves no test image: every run trained and `collect` had nothing to score."""
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        for i in range(per_class):
            Image.new("RGB", (8, 8)).save(tmp_path / name / f"{i}.png")
    ds = DatasetConfig(name="imagefolder", root=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the per-class fallback split's warning
        if not refused:
            check_dataset(ds)
            assert len(resolve_splits(ds).test) > 0
            return
        with pytest.raises(ValueError, match=r"^dataset 'imagefolder': the test split would hold no image \(carved"):
            check_dataset(ds)
