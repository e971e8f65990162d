"""torchvision ImageFolder layout: `root/<class>/<image>`, or the same under
`root/train`, `root/val`, `root/test` (any case: `Train/ Val/ Test/` too). Splits missing on
disk are carved out of the training images with the seeded stratified split. `layout:`
renames the split folders, and `none` ignores one: Imagenette's `train/ val/` used as train
and test is `layout: {val: none, test: val}`. Two splits never read the same folder, or one
inside the other. A root without a train folder but with a `val` or `test` one is refused: its
splits would be read as classes. Torch-free (see trainers.datasets.index)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from trainers.config import DatasetConfig
from trainers.datasets.index import DatasetIndex, Files, Part, layout, make_part, scan_images

FILES = {"train": "train", "val": "val", "test": "test"}


def find_classes(folder: Path) -> list[str]:
    """Class names: the sorted sub-folder names of `folder` (hidden ones skipped)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def split_folder(files: Files, key: str) -> Path:
    """The folder of split `key`: `root/<name>` where it exists, else the one sub-folder of the
    root whose name matches in any case and holds sub-folders (`Train/<class>/`), so that a
    capitalised `Train/ Val/ Test/` is not read as three classes. A class folder that only
    differs in case (a `Train/` of images among vehicle classes) holds no sub-folders and is kept."""
    exact = files.path(key)
    if exact.is_dir() or "/" in files.names[key]:
        return exact
    wanted = files.names[key].lower()
    matches = [p for p in files.root.iterdir() if p.is_dir() and p.name.lower() == wanted and find_classes(p)]
    if len(matches) > 1:
        names = ", ".join(sorted(p.name for p in matches))
        raise ValueError(f"{files.tag}: layout.{key}: folders {names} differ only in case; name one in layout.{key}")
    return matches[0] if matches else exact


def check_distinct(files: Files, folders: dict[str, Path]) -> None:
    """Refuse two splits reading the same folder, or one inside the other: `layout: {test: val}`
    without `val: none` evaluated the best checkpoint on the test images."""
    resolved = [(split, folder.resolve()) for split, folder in folders.items()]
    for number, (first, one) in enumerate(resolved):
        for second, two in resolved[number + 1 :]:
            if one == two or one in two.parents or two in one.parents:
                where = str(one) if one == two else f"{one} and {two}"
                raise ValueError(
                    f"{files.tag}: layout.{first} ({files.names[first]!r}) and layout.{second} "
                    f"({files.names[second]!r}) read the same images ({where}); give each split its own "
                    "folder or set one to none, e.g. layout: {val: none, test: val}"
                )


def refuse_splits_without_train(files: Files) -> None:
    """Refuse a root without a train folder that has a `val` or `test` folder (any case, or their
    `layout` names): read as a class root, `val/<class>/` and `test/<class>/` became two classes
    named val and test, a silently wrong dataset (`training/ val/` did the same). Neither name is
    a plausible class, so such a folder is refused whatever it holds, unlike a `Train` class of
    images; a root whose classes really include one is read with `layout: {train: ., val: none,
    test: none}`. A `layout.train` set but not found is refused too: the root's sub-folders were
    read as classes instead."""
    train = files.names["train"]
    if "train" in files.ds.layout and train not in ("", "none"):
        raise ValueError(f"{files.tag}: layout.train ({train!r}) is not a folder under {files.root}")
    wanted = {
        name.lower() for split in ("val", "test") for name in (FILES[split], files.names[split]) if name != "none"
    }
    found = sorted(p.name for p in files.root.iterdir() if p.is_dir() and p.name.lower() in wanted)
    if found:
        raise ValueError(
            f"{files.tag}: {files.root}: has split folder(s) {', '.join(found)} but no {train}/ of class "
            f"folders, so they would be read as classes; add {train}/<class>/ (or name the training folder in "
            "layout.train), or read the root's sub-folders as classes with layout: {train: ., val: none, test: none}"
        )


def refuse_lookalike_classes(files: Files, folder: Path, class_names: list[str]) -> None:
    """Refuse two class folders whose names differ only in Unicode normalisation (`café` typed on
    Linux, NFC, and `café` copied from macOS, NFD): two classes that print alike in every report,
    each with half the images. Named with ascii() so the difference shows."""
    by_form: dict[str, str] = {}
    for name in class_names:
        form = unicodedata.normalize("NFC", name)
        if form in by_form:
            raise ValueError(
                f"{files.tag}: {folder}: class folders {by_form[form]!a} and {name!a} differ only in "
                "Unicode normalisation (one NFC, one NFD, as macOS writes); merge them into one folder"
            )
        by_form[form] = name


def scan_split(files: Files, folder: Path, class_names: list[str]) -> Part:
    """Every image file under `folder/<class>/` (recursively), labelled by class index."""
    unknown = set(find_classes(folder)) - set(class_names)
    if unknown:
        raise ValueError(f"{files.tag}: {folder}: classes {sorted(unknown)} are not in the training classes")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(class_names):
        images = scan_images(folder / name, files.tag) if (folder / name).is_dir() else []
        paths.extend(images)
        labels.extend([index] * len(images))
    return make_part(files, paths, labels)


@layout("imagefolder", FILES)
def index_imagefolder(ds: DatasetConfig, files: Files) -> DatasetIndex:
    """Official train/val/test folders where `root/train` exists, else one pool to split."""
    train_dir = split_folder(files, "train")
    has_layout = train_dir.is_dir()
    if not has_layout:
        refuse_splits_without_train(files)
        train_dir = files.root
    class_names = find_classes(train_dir)
    if not class_names:
        raise ValueError(f"{files.tag}: no class folders under {train_dir}")
    refuse_lookalike_classes(files, train_dir, class_names)
    folders = {"train": train_dir}
    for split in ("val", "test"):
        if files.names[split] in ("", "none"):
            continue  # `layout: {val: none}`: carve it even if the folder exists
        folder = split_folder(files, split) if has_layout else None
        if folder is not None and folder.is_dir():
            folders[split] = folder
    check_distinct(files, folders)
    parts = {split: scan_split(files, folder, class_names) for split, folder in folders.items()}
    if not has_layout:
        parts["all"] = parts.pop("train")
    return DatasetIndex("single", class_names, parts)
