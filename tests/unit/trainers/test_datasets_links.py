"""Datasets assembled from links, as on clusters (a folder of symlinks into a shared store): a link
whose target moved is refused at plan, by dataset and count, instead of failing at decode in every
job after submission; a folder that cannot be read is refused instead of losing its images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dataset_fixtures import write_flat_image

from trainers.config import DatasetConfig
from trainers.datasets.check import check_dataset
from trainers.datasets.index import build_index, scan_images


def _classes(root: Path, store: Path) -> None:
    """Two classes of five images each, every image a link into `store`."""
    for name in ("cat", "dog"):
        for i in range(5):
            write_flat_image(store / name / f"{i}.jpg")
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / f"{i}.jpg").symlink_to(store / name / f"{i}.jpg")


def test_image_folder_of_working_links_is_read(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _classes(root, tmp_path / "store")
    assert (
        build_index(DatasetConfig(name="imagefolder", root=str(root))).parts["all"].targets.tolist()
        == [0] * 5 + [1] * 5
    )


def test_a_link_to_a_missing_image_is_refused_at_plan(tmp_path: Path) -> None:
    root, store = tmp_path / "data", tmp_path / "store"
    _classes(root, store)
    (store / "dog" / "3.jpg").unlink()
    (store / "dog" / "4.jpg").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"imagefolder.*2 image\(s\) under .*dog are links to a missing file \(the first: '3.jpg'\)",
    ):
        check_dataset(DatasetConfig(name="imagefolder", root=str(root)))


def test_a_broken_link_in_a_multilabel_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ml"
    for i in range(4):
        write_flat_image(root / "images" / f"{i}.jpg")
    (root / "images" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "annotations").mkdir()
    (root / "annotations" / "a.txt").write_text("0.jpg\n1.jpg\n")
    (root / "annotations" / "b.txt").write_text("2.jpg\n3.jpg\n")
    with pytest.raises(
        FileNotFoundError, match=r"1 image\(s\) under .*images are links to a missing file \(the first: 'gone.png'\)"
    ):
        build_index(DatasetConfig(name="multilabel", root=str(root)))


def test_a_listed_image_that_is_a_broken_link_counts_as_missing(tmp_path: Path) -> None:
    """CUB's images.txt names the image; the file there is a link whose target is gone."""
    root = tmp_path / "cub"
    texts = {
        "images.txt": "".join(f"{i} c/{i}.jpg\n" for i in range(1, 5)),
        "image_class_labels.txt": "1 1\n2 2\n3 1\n4 2\n",
        "train_test_split.txt": "1 1\n2 1\n3 0\n4 0\n",
        "classes.txt": "1 albatross\n2 bunting\n",
    }
    root.mkdir()
    for name, text in texts.items():
        (root / name).write_text(text)
    for i in range(1, 4):
        write_flat_image(root / "images" / "c" / f"{i}.jpg")
    (root / "images" / "c" / "4.jpg").symlink_to(tmp_path / "moved" / "4.jpg")
    with pytest.raises(
        FileNotFoundError,
        match=r"1 image\(s\) listed in .*images.txt are missing or links to a missing file \(the first: entry 4 of 4\)",
    ):
        check_dataset(DatasetConfig(name="cub200", root=str(root)))


def test_an_unreadable_class_folder_is_refused_not_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.walk skipped a folder it could not list: its images left the class without a word. (Faked:
    the tests run as root, whom permissions do not stop.)"""
    root = tmp_path / "data"
    for name in ("cat", "dog"):
        for i in range(3):
            write_flat_image(root / name / "inner" / f"{i}.jpg")
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if str(path).endswith(os.path.join("dog", "inner")):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(PermissionError, match=r"test: cannot read folder '.*dog/inner': Permission denied"):
        scan_images(root / "dog", "test")
