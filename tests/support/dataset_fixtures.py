"""Small fixture datasets in each native layout, made of real JPEG/PNG files.

For tests, benchmarks and smoke runs of sweeps that name real datasets on a machine
that does not hold them:

    python tests/support/dataset_fixtures.py cub200 /tmp/fixtures/CUB_200_2011
    python tests/support/dataset_fixtures.py all /tmp/fixtures      # one folder per layout

Images are noise with a class-dependent colour cast, so a model can learn them a little.
No torch here (PIL and numpy only).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
# Real FGVC-Aircraft names, with the spaces and slashes the list files contain.
AIRCRAFT = [  # variant, family, manufacturer: 6 variants, 5 families, 3 manufacturers
    ("707-320", "Boeing 707", "Boeing"),
    ("737-200", "Boeing 737", "Boeing"),
    ("737-300", "Boeing 737", "Boeing"),
    ("747-400", "Boeing 747", "Boeing"),
    ("F/A-18", "F/A-18", "McDonnell Douglas"),
    ("Falcon 2000", "Falcon 2000", "Dassault Aviation"),
]
FOOD_CLASSES = ["macaron", "beignet", "cruller"]
HIER_SUPER = ["bird", "dog", "reptile"]
HIER_SUB = ["hawk", "sparrow", "chihuahua", "beagle", "gecko", "novel"]  # sub -> super below
HIER_SUB_SUPER = [0, 0, 1, 1, 2, 2]
MULTILABEL_LABELS = ["bird", "car", "sea"]


def write_image(path: Path, label: int, seed: int, size_px: int = 16, fmt: str | None = None) -> Path:
    """A noise image with colour cast `label`, saved as JPEG or PNG (from the suffix)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 160, (size_px, size_px, 3), dtype=np.uint8)
    pixels[..., label % 3] = np.clip(pixels[..., label % 3].astype(int) + 60 + 30 * (label // 3), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def write_flat_image(path: Path) -> Path:
    """An 8x8 image of one colour, saved as JPEG or PNG (from the suffix): for tests of the files and
    annotations around images, where what the pixels show does not matter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (40, 80, 120)).save(path)
    return path


def make_imagefolder(root: Path, per_class: int = 6, split_folders: bool = False, size_px: int = 16) -> Path:
    """root/<class>/*.jpg|png, or root/{train,val,test}/<class>/... with `split_folders`."""
    classes = ["cat", "dog", "owl"]
    splits = {"train": per_class, "val": 2, "test": 2} if split_folders else {"": per_class}
    seed = 0
    for split, count in splits.items():
        for label, name in enumerate(classes):
            for i in range(count):
                suffix = ".png" if i % 2 else ".jpg"
                write_image(root / split / name / f"{name}_{split}{i}{suffix}", label, seed, size_px)
                seed += 1
    return root


def make_cub200(root: Path, per_class: int = 6, size_px: int = 16) -> Path:
    """CUB_200_2011 files for 3 classes; every third image of a class is a test image."""
    images, labels, split = [], [], []
    image_id = 0
    for label, name in enumerate(CUB_CLASSES):
        for i in range(per_class):
            image_id += 1
            relative = f"{name}/{name.split('.', 1)[1]}_{i:04d}_{image_id}.jpg"
            write_image(root / "images" / relative, label, image_id, size_px)
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {label + 1}")
            split.append(f"{image_id} {0 if i % 3 == 2 else 1}")
    _lines(root / "images.txt", images)
    _lines(root / "image_class_labels.txt", labels)
    _lines(root / "train_test_split.txt", split)
    _lines(root / "classes.txt", [f"{i + 1} {name}" for i, name in enumerate(CUB_CLASSES)])
    return root


def make_fgvc_aircraft(root: Path, per_split: int = 2, size_px: int = 16) -> Path:
    """fgvc-aircraft-2013b/data files: per split, `per_split` images of each variant."""
    data = root / "data"
    _lines(data / "variants.txt", [v for v, _, _ in AIRCRAFT])
    _lines(data / "families.txt", list(dict.fromkeys(f for _, f, _ in AIRCRAFT)))
    _lines(data / "manufacturers.txt", list(dict.fromkeys(m for _, _, m in AIRCRAFT)))
    image_id = 1_000_000
    for split in ("train", "val", "test"):
        rows: dict[str, list[str]] = {"variant": [], "family": [], "manufacturer": []}
        for label, (variant, family, maker) in enumerate(AIRCRAFT):
            for _ in range(per_split):
                image_id += 1
                write_image(data / "images" / f"{image_id:07d}.jpg", label, image_id, size_px)
                for level, name in (("variant", variant), ("family", family), ("manufacturer", maker)):
                    rows[level].append(f"{image_id:07d} {name}")
        for level, lines in rows.items():
            _lines(data / f"images_{level}_{split}.txt", lines)
        _lines(data / f"images_{split}.txt", [line.split()[0] for line in rows["variant"]])
    return root


def make_foodx251(root: Path, per_class: int = 6, size_px: int = 16) -> Path:
    """annot/class_list.txt, train_info.csv, val_info.csv; train_set/, val_set/."""
    _lines(root / "annot" / "class_list.txt", [f"{i} {name}" for i, name in enumerate(FOOD_CLASSES)])
    seed = 0
    for split, folder, count in (("train", "train_set", per_class), ("val", "val_set", 2)):
        rows = []
        for label in range(len(FOOD_CLASSES)):
            for _ in range(count):
                seed += 1
                name = f"{split}_{seed:06d}.jpg"
                write_image(root / folder / name, label, seed, size_px)
                rows.append(f"{name},{label}")
        _lines(root / "annot" / f"{split}_info.csv", rows)
    return root


def make_hierarchical_csv(root: Path, per_class: int = 5, with_test: bool = False, size_px: int = 16) -> Path:
    """Report 000's layout: train_data.csv (image, super, sub) and the two mappings; the
    `novel` sub-class appears only in the optional labelled test set."""
    _csv(root / "superclass_mapping.csv", [["index", "class"], *[[i, n] for i, n in enumerate(HIER_SUPER)]])
    _csv(root / "subclass_mapping.csv", [["index", "class"], *[[i, n] for i, n in enumerate(HIER_SUB)]])
    splits = [("train_data.csv", "train_images", False), ("test_data.csv", "test_images", True)]
    counter = 0
    for csv_name, folder, is_test in splits[: 2 if with_test else 1]:
        rows: list[list[object]] = [["image", "superclass_index", "subclass_index", "description"]]
        for sub, sup in enumerate(HIER_SUB_SUPER):
            if HIER_SUB[sub] == "novel" and not is_test:
                continue
            for _ in range(2 if is_test else per_class):
                name = f"{counter}.jpg"
                write_image(root / folder / name, sub, counter, size_px)
                rows.append([name, sup, sub, HIER_SUB[sub]])
                counter += 1
        _csv(root / csv_name, rows)
    return root


def make_multilabel(root: Path, n_images: int = 30, size_px: int = 16) -> Path:
    """Report 003's layout: images/im<N>.jpg and annotations/<label>.txt listing ids; a
    third of the images carry no label."""
    members: dict[str, list[int]] = {label: [] for label in MULTILABEL_LABELS}
    for n in range(1, n_images + 1):
        write_image(root / "images" / f"im{n}.jpg", n % 4, n, size_px)
        for bit, label in enumerate(MULTILABEL_LABELS):
            if n % 3 and (n >> bit) & 1:
                members[label].append(n)
    for label, ids in members.items():
        _lines(root / "annotations" / f"{label}.txt", [str(i) for i in ids])
    return root


MAKERS: dict[str, Callable[[Path], Path]] = {
    "imagefolder": make_imagefolder,
    "cub200": make_cub200,
    "fgvc_aircraft": make_fgvc_aircraft,
    "foodx251": make_foodx251,
    "hierarchical_csv": make_hierarchical_csv,
    "multilabel": make_multilabel,
}


def truncate(path: Path, keep_fraction: float = 0.5) -> Path:
    """Cut a file short (a truncated download)."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep_fraction))])
    return path


def _lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _csv(path: Path, rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def main(argv: list[str] | None = None) -> None:
    """Write one fixture dataset (or all of them, one folder each)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layout", choices=[*MAKERS, "all"])
    parser.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    targets = MAKERS if args.layout == "all" else {args.layout: MAKERS[args.layout]}
    for name, make in targets.items():
        folder = args.root / name if args.layout == "all" else args.root
        make(folder)
        print(f"{name}: {folder}")


if __name__ == "__main__":
    main()
