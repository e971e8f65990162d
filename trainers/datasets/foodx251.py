"""FoodX-251 (iFood 2019 FGVC6 challenge) in its published layout:

    annot/class_list.txt    <label> <class name>              e.g. 0 macaron
    annot/train_info.csv    <image name>,<label>              no header, e.g. train_059329.jpg,0
    annot/val_info.csv      <image name>,<label>
    train_set/<image name>  val_set/<image name>

The public test labels were never released, so the official val set (11,994 images) is
the test split here and validation is carved out of train (118,475 images).
Torch-free (see trainers.datasets.index)."""

from __future__ import annotations

from trainers.config import DatasetConfig
from trainers.datasets.index import DatasetIndex, Files, layout, make_part

FILES = {
    "classes": "annot/class_list.txt",
    "train_csv": "annot/train_info.csv",
    "test_csv": "annot/val_info.csv",
    "train_images": "train_set",
    "test_images": "val_set",
}


@layout("foodx251", FILES)
def index_foodx251(ds: DatasetConfig, files: Files) -> DatasetIndex:
    """251 classes from class_list.txt; train from train_info.csv, test from val_info.csv."""
    classes = files.fields("classes", 2)
    labels = [int(label) if label.isdecimal() else -1 for label, _ in classes]
    if labels != list(range(len(classes))):
        raise ValueError(f"{files.tag}: {files.path('classes')}: labels must be 0..{len(classes) - 1} in order")
    class_names = [name for _, name in classes]
    parts = {}
    for split, csv_key, folder_key in (("train", "train_csv", "train_images"), ("test", "test_csv", "test_images")):
        rows = files.csv_fields(csv_key, 2)
        if rows and not rows[0][1].lstrip("-").isdigit():
            rows = rows[1:]  # tolerate a header line
        folder = files.require(folder_key, folder=True)
        nameless = [n for n, (image, _) in enumerate(rows, start=1) if not image]
        if nameless:  # `folder / ""` is the folder itself, which passed the existence check
            raise ValueError(f"{files.tag}: {files.path(csv_key)} entry {nameless[0]}: no image name")
        paths = [folder / image for image, _ in rows]
        files.check_listed(paths, str(files.path(csv_key)))
        targets = []
        for number, (_, label) in enumerate(rows, start=1):
            if not label.isdecimal() or int(label) >= len(class_names):
                where = f"{files.path(csv_key)} entry {number}"
                raise ValueError(f"{files.tag}: {where}: label not in {files.path('classes')}")
            targets.append(int(label))
        parts[split] = make_part(files, paths, targets)
    return DatasetIndex("single", class_names, parts)
