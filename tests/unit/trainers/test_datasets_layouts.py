"""Every file layout on small fixture datasets of real JPEG/PNG files: classes, counts,
official and carved splits, label structure, a DataLoader batch, and the plan-time errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dataset_fixtures as fx
import numpy as np
import pytest
import torch

from trainers.config import DataConfig, DatasetConfig
from trainers.data.loaders import build_data
from trainers.datasets import build_splits
from trainers.datasets.check import check_dataset
from trainers.datasets.index import available, resolve_splits

REPO = Path(__file__).resolve().parents[3]


def _data(**dataset: object) -> DataConfig:
    return DataConfig.model_validate(
        {"dataset": dataset, "image_size_px": 16, "batch_size": 4, "num_workers": 0, "jpeg_draft": False}
    )


def _batch(data: DataConfig) -> tuple[torch.Tensor, torch.Tensor]:
    images, targets = next(iter(build_data(data, seed=0).train))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8  # normalised on the device
    return images, targets


def test_every_layout_is_registered() -> None:
    names = {"imagefolder", "cub200", "fgvc_aircraft", "foodx251", "hierarchical_csv", "multilabel", "combined"}
    assert names | {"digits"} <= set(available())


def test_cub200_official_split_and_carved_val(tmp_path: Path) -> None:
    root = fx.make_cub200(tmp_path / "CUB_200_2011")
    # The archive's parent folder is accepted as root too.
    splits = build_splits(_data(name="cub200", root=str(tmp_path), val_fraction=0.25))
    assert splits.task == "single" and splits.class_names == fx.CUB_CLASSES and splits.num_classes == 3
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 6)
    assert Counter(splits.test.labels) == {0: 2, 1: 2, 2: 2} and Counter(splits.val.labels) == {0: 1, 1: 1, 2: 1}
    # The test split is exactly the images flagged 0 in train_test_split.txt.
    flagged = {line.split()[0] for line in (root / "train_test_split.txt").read_text().splitlines() if line[-1] == "0"}
    listed = dict(line.split() for line in (root / "images.txt").read_text().splitlines())
    assert {splits.test.ident(i) for i in range(6)} == {f"images/{listed[i]}" for i in flagged}
    image, label = splits.train[0]
    assert image.mode == "RGB" and image.size == (16, 16) and isinstance(label, int)
    _, targets = _batch(_data(name="cub200", root=str(root)))
    assert targets.dtype == torch.long and targets.shape == (4,)


def test_fgvc_aircraft_variants_and_hierarchy(tmp_path: Path) -> None:
    fx.make_fgvc_aircraft(tmp_path / "fgvc-aircraft-2013b")
    single = build_splits(_data(name="fgvc_aircraft", root=str(tmp_path)))
    assert single.class_names == [v for v, _, _ in fx.AIRCRAFT]  # names with spaces and '/'
    assert (len(single.train), len(single.val), len(single.test)) == (12, 12, 12)  # all official
    assert Counter(single.test.labels) == dict.fromkeys(range(6), 2)
    family = build_splits(_data(name="fgvc_aircraft", root=str(tmp_path), task="hierarchical"))
    assert family.task == "hierarchical" and family.class_names == single.class_names
    assert family.super_class_names == ["Boeing 707", "Boeing 737", "Boeing 747", "F/A-18", "Falcon 2000"]
    sub_to_super = {int(s): int(p) for p, s in family.train.targets}
    assert sub_to_super == {0: 0, 1: 1, 2: 1, 3: 2, 4: 3, 5: 4}  # both 737 variants -> Boeing 737
    maker = build_splits(
        _data(name="fgvc_aircraft", root=str(tmp_path), task="hierarchical", super_level="manufacturer")
    )
    assert maker.super_class_names == ["Boeing", "McDonnell Douglas", "Dassault Aviation"]
    assert np.array_equal(maker.test.targets[:, 1], single.test.targets)
    _, targets = _batch(_data(name="fgvc_aircraft", root=str(tmp_path), task="hierarchical"))
    assert targets.shape == (4, 2) and targets.dtype == torch.long
    with pytest.raises(ValueError, match="super_level 'engine' unknown"):
        build_splits(_data(name="fgvc_aircraft", root=str(tmp_path), task="hierarchical", super_level="engine"))
    with pytest.raises(ValueError, match="task 'multilabel' not offered"):
        build_splits(_data(name="fgvc_aircraft", root=str(tmp_path), task="multilabel"))


def test_foodx251_val_is_test_and_val_is_carved_from_train(tmp_path: Path) -> None:
    fx.make_foodx251(tmp_path)
    splits = build_splits(_data(name="foodx251", root=str(tmp_path), val_fraction=1 / 6))
    assert splits.class_names == fx.FOOD_CLASSES
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 3, 6)
    assert all(splits.test.ident(i).startswith("val_set/") for i in range(len(splits.test)))
    assert all(splits.val.ident(i).startswith("train_set/") for i in range(len(splits.val)))
    assert splits.info["policy"] == {
        "val": "carved 0.16666666666666666 of train",
        "test": "official",
        "train": "rest of train",
    }
    _batch(_data(name="foodx251", root=str(tmp_path)))


def test_hierarchical_csv_with_novel_slot(tmp_path: Path) -> None:
    fx.make_hierarchical_csv(tmp_path, with_test=True)
    splits = build_splits(_data(name="hierarchical_csv", root=str(tmp_path), val_fraction=0.2))
    assert splits.task == "hierarchical" and splits.novel_slot and splits.num_sub_outputs == 6
    assert splits.super_class_names == fx.HIER_SUPER
    assert splits.class_names == ["hawk", "sparrow", "chihuahua", "beagle", "gecko"]  # 'novel' is the slot
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 5, 12)
    test = splits.test.targets
    assert (test[:, 1] == 5).sum() == 2 and set(test[test[:, 1] == 5, 0]) == {2}  # novel, super kept
    assert 5 not in splits.train.targets[:, 1]
    assert np.array_equal(splits.train.targets[:, 0], np.array(fx.HIER_SUB_SUPER)[splits.train.targets[:, 1]])
    _, targets = _batch(_data(name="hierarchical_csv", root=str(tmp_path)))
    assert targets.shape == (4, 2)


def test_hierarchical_csv_without_test_file_carves_test_and_more_novel(tmp_path: Path) -> None:
    fx.make_hierarchical_csv(tmp_path)
    splits = build_splits(
        _data(name="hierarchical_csv", root=str(tmp_path), test_fraction=0.2, novel_subclasses=["gecko"])
    )
    assert splits.class_names == ["hawk", "sparrow", "chihuahua", "beagle"]
    assert len(splits.test) == 5 and (splits.test.targets[:, 1] == 4).sum() == 1  # a gecko, now novel
    assert 4 not in splits.train.targets[:, 1] and 4 not in splits.val.targets[:, 1]


def test_multilabel_layout(tmp_path: Path) -> None:
    fx.make_multilabel(tmp_path)
    data = _data(name="multilabel", root=str(tmp_path), val_fraction=0.1, test_fraction=0.1)
    splits = build_splits(data)
    assert splits.task == "multilabel" and splits.class_names == sorted(fx.MULTILABEL_LABELS)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 3, 3)
    everything = {}
    for name in ("train", "val", "test"):
        part = splits.split(name)
        everything.update({part.ident(i): part.targets[i] for i in range(len(part))})
    for n in range(1, 31):
        expected = [float(n % 3 != 0 and (n >> fx.MULTILABEL_LABELS.index(lab)) & 1) for lab in splits.class_names]
        assert everything[f"images/im{n}.jpg"].tolist() == expected
    assert sum(not v.any() for v in everything.values()) >= 10  # unlabelled images are kept
    _, targets = _batch(data)
    assert targets.shape == (4, 3) and targets.dtype == torch.float32


def test_multilabel_id_listed_but_no_image(tmp_path: Path) -> None:
    fx.make_multilabel(tmp_path)
    with (tmp_path / "annotations" / "car.txt").open("a") as handle:
        handle.write("999\n")
    listed = r"1 image id\(s\) listed in .*car.txt .*\(the first: entry \d+ of \d+\)"
    with pytest.raises(FileNotFoundError, match=listed):
        check_dataset(DatasetConfig(name="multilabel", root=str(tmp_path)))


def test_a_multilabel_label_name_with_a_comma_is_refused_at_plan(tmp_path: Path) -> None:
    """predict's `labels` cell joins an image's labels with ',': `car,red` could not be told from two labels."""
    fx.make_multilabel(tmp_path)
    (tmp_path / "annotations" / "car.txt").rename(tmp_path / "annotations" / "car,red.txt")
    with pytest.raises(ValueError, match=r"label names may not hold ',' \(car,red.txt in .*annotations\)"):
        check_dataset(DatasetConfig(name="multilabel", root=str(tmp_path)))


def test_imagefolder_official_split_folders(tmp_path: Path) -> None:
    fx.make_imagefolder(tmp_path, split_folders=True)
    splits = build_splits(_data(name="imagefolder", root=str(tmp_path)))
    assert splits.class_names == ["cat", "dog", "owl"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    assert splits.info["policy"] == {"val": "official", "test": "official", "train": "official"}


def test_imagefolder_val_folder_used_as_test(tmp_path: Path) -> None:
    fx.make_imagefolder(tmp_path, split_folders=True)  # Imagenette: train/ and val/, no test/
    for path in (tmp_path / "test").rglob("*.*"):
        path.unlink()
    data = _data(name="imagefolder", root=str(tmp_path), layout={"val": "none", "test": "val"}, val_fraction=1 / 3)
    splits = build_splits(data)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 6, 6)
    assert all(splits.test.ident(i).startswith("val/") for i in range(6))
    assert all(splits.val.ident(i).startswith("train/") for i in range(6))


def test_combined_offsets_labels_and_keeps_names_apart(tmp_path: Path) -> None:
    fx.make_cub200(tmp_path / "cub")
    fx.make_fgvc_aircraft(tmp_path / "air")
    parts = [
        {"name": "cub200", "root": str(tmp_path / "cub")},
        {"name": "fgvc_aircraft", "root": str(tmp_path / "air")},
    ]
    splits = build_splits(_data(name="combined", parts=parts))
    cub = build_splits(_data(**parts[0]))
    assert splits.num_classes == 3 + 6
    assert splits.class_names[:3] == [f"cub200/{n}" for n in fx.CUB_CLASSES]
    assert splits.class_names[3] == "fgvc_aircraft/707-320"
    assert len(splits.test) == len(cub.test) + 12
    assert Counter(splits.test.labels) == {**{i: 2 for i in range(3)}, **{i: 2 for i in range(3, 9)}}
    assert splits.info["parts"]["fgvc_aircraft"]["offset"] == 3
    _, targets = _batch(_data(name="combined", parts=parts))
    assert int(targets.max()) < 9
    with pytest.raises(ValueError, match=r"part 1.*single-label"):
        check_dataset(
            DatasetConfig.model_validate(
                {"name": "combined", "parts": [parts[0], {**parts[1], "task": "hierarchical"}]}
            )
        )


# ---------------------------------------------------------------- plan-time errors


@pytest.mark.parametrize(
    ("layout", "remove", "message"),
    [
        ("cub200", "image_class_labels.txt", r"annotation file .*image_class_labels.txt does not exist"),
        ("fgvc_aircraft", "data/images_variant_val.txt", r".*images_variant_val.txt does not exist"),
        ("foodx251", "annot/class_list.txt", r".*class_list.txt does not exist"),
        ("hierarchical_csv", "subclass_mapping.csv", r".*subclass_mapping.csv does not exist"),
        ("multilabel", "annotations", r"folder .*annotations does not exist"),
    ],
)
def test_missing_annotation_file_is_a_clear_error(tmp_path: Path, layout: str, remove: str, message: str) -> None:
    fx.MAKERS[layout](tmp_path)
    target = tmp_path / remove
    if target.is_dir():
        for f in target.iterdir():
            f.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(FileNotFoundError, match=rf"dataset '{layout}': {message}"):
        check_dataset(DatasetConfig(name=layout, root=str(tmp_path)))


def test_missing_root_and_listed_but_missing_image(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=rf"dataset 'cub200': root {tmp_path / 'nope'} does not exist"):
        check_dataset(DatasetConfig(name="cub200", root=str(tmp_path / "nope")))
    with pytest.raises(ValueError, match=r"dataset 'foodx251' needs data\.dataset\.root"):
        check_dataset(DatasetConfig(name="foodx251"))
    root = fx.make_cub200(tmp_path / "cub")
    victim = next((root / "images" / fx.CUB_CLASSES[1]).iterdir())
    victim.unlink()
    missing = r"1 image\(s\) listed in .*images.txt are missing or links to a missing file \(the first: entry \d+ of"
    with pytest.raises(FileNotFoundError, match=missing):
        check_dataset(DatasetConfig(name="cub200", root=str(root)))


def test_unknown_names_and_layout_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'cub201'; registered: .*cub200"):
        check_dataset(DatasetConfig(name="cub201", root=str(tmp_path)))
    with pytest.raises(ValueError, match=r"layout key\(s\) imgs unknown; valid keys: images_list"):
        check_dataset(DatasetConfig(name="cub200", root=str(tmp_path), layout={"imgs": "x"}))
    check_dataset(DatasetConfig(name="digits", task="multilabel"))  # in memory: nothing on disk
    with pytest.raises(ValueError, match="novel_subclasses needs task: hierarchical"):
        check_dataset(DatasetConfig(name="digits", novel_subclasses=("9",)))


def test_layout_overrides_rename_files(tmp_path: Path) -> None:
    fx.make_hierarchical_csv(tmp_path)
    (tmp_path / "train_data.csv").rename(tmp_path / "labels.csv")
    (tmp_path / "train_images").rename(tmp_path / "imgs")
    ds = {"name": "hierarchical_csv", "root": str(tmp_path), "layout": {"csv": "labels.csv", "images": "imgs"}}
    assert len(resolve_splits(DatasetConfig.model_validate(ds)).train) > 0


def test_check_module_does_not_import_torch_or_pil(tmp_path: Path) -> None:
    fx.make_cub200(tmp_path)
    code = (
        "import sys\n"
        "from trainers.datasets.check import check_dataset\n"
        "from trainers.config import DatasetConfig\n"
        f"check_dataset(DatasetConfig(name='cub200', root={str(tmp_path)!r}))\n"
        "print('HEAVY', sorted(m for m in ('torch', 'PIL', 'sklearn', 'torchvision') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout


# ---------------------------------------------------------------- bad data and split.json


@pytest.mark.parametrize("cache_max_mib", [0, 64])
def test_truncated_jpeg_is_skipped_and_counted(tmp_path: Path, cache_max_mib: int) -> None:
    fx.make_cub200(tmp_path, per_class=9)
    bad = sorted((tmp_path / "images" / fx.CUB_CLASSES[0]).iterdir())[0]
    fx.truncate(bad)
    data = _data(name="cub200", root=str(tmp_path), val_fraction=0.0, max_bad_fraction=0.1)
    data = data.model_copy(update={"cache_max_mib": cache_max_mib})
    with pytest.warns(UserWarning, match=rf"unreadable image {bad}"):  # at the cache's decode, or in the loop
        bundle = build_data(data, seed=0)
        seen = sum(len(t) for _, t in bundle.train)
    assert seen == len(bundle.splits.train) // 4 * 4  # the bad image was replaced, batches stay full
    test_batches = list(bundle.test)
    # An evaluation batch keeps a stand-in for the unreadable image (equal batches on every rank
    # for gather_for_metrics), masked out by its third member.
    assert sum(len(t) for _, t, _ in test_batches) == len(bundle.splits.test)
    test_sizes = [int(readable.sum()) for _, _, readable in test_batches]
    assert bundle.skipped_images() == {
        "train": int(bad in bundle.splits.train.paths),
        "val": 0,
        "test": int(bad in bundle.splits.test.paths),
    }  # type: ignore[attr-defined]
    assert sum(bundle.skipped_images().values()) == 1
    assert sum(test_sizes) == len(bundle.splits.test) - bundle.skipped_images()["test"]


def test_too_many_bad_images_fail_with_a_clear_message(tmp_path: Path) -> None:
    fx.make_cub200(tmp_path)
    for path in sorted((tmp_path / "images" / fx.CUB_CLASSES[0]).iterdir())[:3]:
        path.write_bytes(b"not a jpeg")
    expected = r"split: 1 of \d+ images are unreadable .*max_bad_fraction=0.05"
    with pytest.raises(RuntimeError, match=expected), pytest.warns(UserWarning):
        bundle = build_data(_data(name="cub200", root=str(tmp_path), max_bad_fraction=0.05), seed=0)  # cached
        for _ in bundle.train:
            pass


def test_split_manifest_records_ids_and_hash(tmp_path: Path) -> None:
    fx.make_foodx251(tmp_path)
    bundle = build_data(_data(name="foodx251", root=str(tmp_path)), seed=0)
    path = bundle.write_split(tmp_path / "run")
    manifest = json.loads(path.read_text())
    assert manifest["info"]["task"] == "single" and manifest["info"]["policy"]["test"] == "official"
    test = manifest["splits"]["test"]
    assert test["count"] == 6 and test["class_counts"] == {"0": 2, "1": 2, "2": 2}
    assert sorted(test["ids"]) == sorted(bundle.splits.test.ident(i) for i in range(6))
    again = build_data(_data(name="foodx251", root=str(tmp_path)), seed=1).splits.manifest()
    assert again["splits"]["val"]["sha256"] == manifest["splits"]["val"]["sha256"]  # split_seed, not run seed
    other = build_data(_data(name="foodx251", root=str(tmp_path), split_seed=5), seed=0).splits.manifest()
    assert other["splits"]["val"]["sha256"] != manifest["splits"]["val"]["sha256"]
