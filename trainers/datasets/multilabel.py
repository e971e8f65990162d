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


def rows_by_key(paths: list[Path]) -> dict[str, list[int]]:
    """Every id an annotation file may use, with the rows of all images it names."""
    rows_of: dict[str, list[int]] = {}
    for row, path in enumerate(paths):
        for key in dict.fromkeys(image_keys(path)):
            rows_of.setdefault(key, []).append(row)
    return rows_of


def _one_row(
    files: Files, rows_of: dict[str, list[int]], paths: list[Path], label_file: Path, listed: list[str], entry: int
) -> int:
    """The row of the image that entry `entry` of `label_file` names; refused when the id fits
    several images (`1` fits im1.jpg and extra/im1.jpg, im01.png): the recursive scan bound it
    to whichever sorted first. The entry is named by number, not quoted (see Files)."""
    rows = rows_of[_normalise(listed[entry])]
    if len(rows) > 1:
        first, second = (paths[r].relative_to(files.root) for r in rows[:2])
        raise ValueError(
            f"{files.tag}: entry {entry + 1} of {label_file} matches {len(rows)} images ({first} and {second}); "
            "rename or move one so that each id names one image"
        )
    return rows[0]


def label_files_in(files: Files, annotations: Path) -> list[Path]:
    """The `<label>.txt` files of `annotations`, sorted, the suffix in any case: a `Cat.TXT` (as
    Windows tools write) was skipped, and its label silently missing from every target. Two files
    of one label (`cat.txt`, `cat.TXT`) are refused: the label would be two columns."""
    found = sorted(
        p for p in annotations.iterdir() if p.suffix.lower() == ".txt" and not p.name.startswith(".") and p.is_file()
    )
    if not found:
        raise FileNotFoundError(f"{files.tag}: no <label>.txt annotation files in {annotations}")
    by_label: dict[str, Path] = {}
    for path in found:
        if path.stem in by_label:
            raise ValueError(
                f"{files.tag}: {by_label[path.stem].name} and {path.name} in {annotations} name the same label; "
                "merge them into one file"
            )
        by_label[path.stem] = path
    return found


@layout("multilabel", FILES, tasks=("multilabel",))
def index_multilabel(ds: DatasetConfig, files: Files) -> DatasetIndex:
    """Every image of the folder with its multi-hot vector from the annotation files."""
    folder = files.require("images", folder=True)
    annotations = files.require("annotations", folder=True)
    label_files = label_files_in(files, annotations)
    joined = [p.name for p in label_files if "," in p.stem]
    if joined:  # `predict` writes an image's labels joined with ',': such a name could not be split back
        raise ValueError(f"{files.tag}: label names may not hold ',' ({joined[0]} in {annotations}); rename the file")
    paths = scan_images(folder, files.tag)
    if not paths:
        raise ValueError(f"{files.tag}: no images in {folder}")
    rows_of = rows_by_key(paths)
    targets = np.zeros((len(paths), len(label_files)), dtype=np.float32)
    for column, label_file in enumerate(label_files):
        files.names[f"_{label_file.stem}"] = str(label_file)
        listed = files.lines(f"_{label_file.stem}")
        absent = [n for n, i in enumerate(listed, start=1) if _normalise(i) not in rows_of]
        if absent:
            raise FileNotFoundError(
                f"{files.tag}: {len(absent)} image id(s) listed in {label_file} are not in {folder} "
                f"(the first: entry {absent[0]} of {len(listed)})"
            )
        targets[[_one_row(files, rows_of, paths, label_file, listed, n) for n in range(len(listed))], column] = 1.0
    return DatasetIndex("multilabel", [p.stem for p in label_files], {"all": make_part(files, paths, targets)})
