"""Report 003's multi-label layout: an image folder and one annotation file per label.

    images/im1.jpg ... im20000.jpg
    annotations/<label>.txt      one image id per line (e.g. `12345` for im12345.jpg)

Label names are the annotation file names (sorted). An image in no annotation file is a
valid, unlabelled sample (an all-zero target). Ids may be written as the number, the file
stem (`im12345`) or the file name. There is no official split: train/val/test are carved
with the seeded split (stratified on each image's first label).
Torch-free (see trainers.datasets.index)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from trainers.config import DatasetConfig
from trainers.datasets.index import DatasetIndex, Files, layout, make_part, scan_images

FILES = {"images": "images", "annotations": "annotations"}
_PREFIXED_NUMBER = re.compile(r"^[^\d]*(\d+)$")


def image_keys(path: Path) -> list[str]:
    """The ids an annotation file may use for an image: its name, stem, and stem's number."""
    keys = [path.name, path.stem]
    match = _PREFIXED_NUMBER.match(path.stem)
    if match:
        keys.append(str(int(match.group(1))))
    return keys


def _normalise(image_id: str) -> str:
    match = _PREFIXED_NUMBER.match(image_id)
    return str(int(match.group(1))) if match and image_id.isdigit() else image_id


@layout("multilabel", FILES, tasks=("multilabel",))
def index_multilabel(ds: DatasetConfig, files: Files) -> DatasetIndex:
    """Every image of the folder with its multi-hot vector from the annotation files."""
    folder = files.require("images", folder=True)
    annotations = files.require("annotations", folder=True)
    label_files = sorted(p for p in annotations.iterdir() if p.suffix == ".txt" and not p.name.startswith("."))
    if not label_files:
        raise FileNotFoundError(f"{files.tag}: no <label>.txt annotation files in {annotations}")
    paths = scan_images(folder)
    if not paths:
        raise ValueError(f"{files.tag}: no images in {folder}")
    row_of: dict[str, int] = {}
    for row, path in enumerate(paths):
        for key in image_keys(path):
            row_of.setdefault(key, row)
    targets = np.zeros((len(paths), len(label_files)), dtype=np.float32)
    for column, label_file in enumerate(label_files):
        files.names[f"_{label_file.stem}"] = str(label_file)
        listed = files.lines(f"_{label_file.stem}")
        absent = [n for n, i in enumerate(listed, start=1) if _normalise(i) not in row_of]
        if absent:
            raise FileNotFoundError(
                f"{files.tag}: {len(absent)} image id(s) listed in {label_file} are not in {folder} "
                f"(the first: entry {absent[0]} of {len(listed)})"
            )
        targets[[row_of[_normalise(i)] for i in listed], column] = 1.0
    return DatasetIndex("multilabel", [p.stem for p in label_files], {"all": make_part(files, paths, targets)})
