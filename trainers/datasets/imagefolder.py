"""torchvision ImageFolder layout: `root/<class>/<image>`, or the same under
`root/train`, `root/val`, `root/test`. Splits missing on disk are carved out of the
training images with the seeded stratified split. `layout:` renames the split folders, and
`none` ignores one: Imagenette's `train/ val/` used as train and test is
`layout: {val: none, test: val}`. Torch-free (see trainers.datasets.index)."""

from __future__ import annotations

from pathlib import Path

from trainers.config import DatasetConfig
from trainers.datasets.index import DatasetIndex, Files, Part, layout, make_part, scan_images

FILES = {"train": "train", "val": "val", "test": "test"}


def find_classes(folder: Path) -> list[str]:
    """Class names: the sorted sub-folder names of `folder` (hidden ones skipped)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_split(files: Files, folder: Path, class_names: list[str]) -> Part:
    """Every image file under `folder/<class>/` (recursively), labelled by class index."""
    unknown = set(find_classes(folder)) - set(class_names)
    if unknown:
        raise ValueError(f"{files.tag}: {folder}: classes {sorted(unknown)} are not in the training classes")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(class_names):
        images = scan_images(folder / name) if (folder / name).is_dir() else []
        paths.extend(images)
        labels.extend([index] * len(images))
    return make_part(files, paths, labels)


@layout("imagefolder", FILES)
def index_imagefolder(ds: DatasetConfig, files: Files) -> DatasetIndex:
    """Official train/val/test folders where `root/train` exists, else one pool to split."""
    train_dir = files.path("train")
    has_layout = train_dir.is_dir()
    if not has_layout:
        train_dir = files.root  # without root/train, a folder named val or test is just a class
    class_names = find_classes(train_dir)
    if not class_names:
        raise ValueError(f"{files.tag}: no class folders under {train_dir}")
    parts = {"train" if has_layout else "all": scan_split(files, train_dir, class_names)}
    for split in ("val", "test"):
        if files.names[split] in ("", "none"):
            continue  # `layout: {val: none}`: carve it even if the folder exists
        if has_layout and files.path(split).is_dir():
            parts[split] = scan_split(files, files.path(split), class_names)
    return DatasetIndex("single", class_names, parts)
