"""`check_dataset` (plan, submit) reads a dataset's files once: it built the index (every image
listed, each folder read), then for a small carved test split `resolve_splits` built it again."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import dataset_fixtures as fx
import pytest

from trainers.config import DatasetConfig
from trainers.datasets import check, index
from trainers.datasets.index import DatasetIndex, build_index, resolve_splits


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[DatasetConfig]:
    """Every build_index call, through either module's name for it."""
    calls: list[DatasetConfig] = []

    def counting(ds: DatasetConfig) -> DatasetIndex:
        calls.append(ds)
        return build_index(ds)

    monkeypatch.setattr(index, "build_index", counting)
    monkeypatch.setattr(check, "build_index", counting)
    return calls


@pytest.mark.parametrize(("per_class", "refused"), [(2, False), (1, True)])
def test_a_small_carved_dataset_is_indexed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, per_class: int, refused: bool
) -> None:
    """Below CARVED_AT_PLAN_BELOW the test split is carved at plan to see that it holds an image;
    that carving read the folder a second time (on a cluster file system, a second listing of
    every folder), refused or not."""
    data = fx.make_imagefolder(tmp_path / "d", per_class=per_class)
    calls = _count_builds(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the per-class fallback split's warning
        if refused:
            with pytest.raises(ValueError, match="the test split would hold no image"):
                check.check_dataset(DatasetConfig(name="imagefolder", root=str(data)))
        else:
            check.check_dataset(DatasetConfig(name="imagefolder", root=str(data)))
    assert len(calls) == 1, calls


@pytest.mark.filterwarnings("ignore:stratified split impossible")
def test_resolve_splits_from_a_built_index_is_the_same_and_leaves_it_alone(tmp_path: Path) -> None:
    """Given the index, resolve_splits carves exactly what it carves alone, and does not change the
    caller's index: train_on_trainval merged val into train inside the index it built itself."""
    data = fx.make_imagefolder(tmp_path / "d", split_folders=True)
    shutil.rmtree(data / "test")
    ds = DatasetConfig(name="imagefolder", root=str(data), train_on_trainval=True)
    built = build_index(ds)
    before = {name: list(part.ids) for name, part in built.parts.items()}
    given, alone = resolve_splits(ds, built), resolve_splits(ds)
    assert {name: part.ids for name, part in built.parts.items()} == before
    assert sorted(before) == ["train", "val"]
    for name in ("train", "val", "test"):
        assert given.split(name).ids == alone.split(name).ids
        assert given.split(name).targets.tolist() == alone.split(name).targets.tolist()
    assert given.info == alone.info and given.class_names == alone.class_names
    assert len(given.train) + len(given.val) + len(given.test) == sum(len(ids) for ids in before.values())


@pytest.mark.parametrize(
    ("fraction", "says"),
    [
        (
            0.1,
            r"\(carved 10% of the training images; .*10 or more per class gives each class a test image\) or a test/",
        ),
        (0.0, r"\(carved 0% of the training images; .*; set test_fraction above 0 or add a test/ folder$"),
    ],
)
@pytest.mark.filterwarnings("ignore:stratified split impossible")
def test_the_refusal_names_the_fraction_it_was_given(tmp_path: Path, fraction: float, says: str) -> None:
    """It advised '5 or more per class' whatever test_fraction was (5 is 1 / 0.2, the default)."""
    data = fx.make_imagefolder(tmp_path / "d", per_class=1)
    with pytest.raises(ValueError, match=says):
        check.check_dataset(DatasetConfig(name="imagefolder", root=str(data), test_fraction=fraction))
