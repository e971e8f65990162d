"""Report 000's super-/sub-class layout: one CSV row per image with its two indices.

    train_data.csv           image,superclass_index,subclass_index[,...]   (header row)
    superclass_mapping.csv   index,class                                    e.g. 0,bird
    subclass_mapping.csv     index,class                                    e.g. 87,novel
    train_images/<image>
    test_data.csv, test_images/   optional: a labelled test set (else test is carved)

A sub-class named `novel` in subclass_mapping.csv is the unseen-class slot: it is not a
trainable class, its test images get sub index len(class_names) (`novel_slot`).
`novel_subclasses` marks further sub-classes as unseen. Every name above can be changed
with `layout:` (keys: FILES). Torch-free (see trainers.datasets.index)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from trainers.config import DatasetConfig
from trainers.datasets.index import DatasetIndex, Files, layout, make_part

FILES = {
    "csv": "train_data.csv",
    "super_classes": "superclass_mapping.csv",
    "sub_classes": "subclass_mapping.csv",
    "images": "train_images",
    "test_csv": "test_data.csv",
    "test_images": "test_images",
    "image_column": "image",
    "super_column": "superclass_index",
    "sub_column": "subclass_index",
}
NOVEL_NAME = "novel"


def read_mapping(files: Files, key: str) -> list[str]:
    """Class names by index from an `index,class` CSV (header optional); duplicate names
    get their index appended so every class stays addressable by name."""
    path = files.require(key)
    rows = [r for r in csv.reader(io.StringIO(files.text(path), newline="")) if r and any(c.strip() for c in r)]
    if rows and not rows[0][0].strip().isdecimal():
        rows = rows[1:]
    by_index: dict[int, str] = {}
    for number, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip().isdecimal():
            raise ValueError(f"{files.tag}: {path} row {number}: expected `index,class` rows")
        by_index[int(row[0])] = row[1].strip()
    if sorted(by_index) != list(range(len(by_index))) or not by_index:
        raise ValueError(f"{files.tag}: {path}: indices must be 0..n-1 without gaps")
    names = [by_index[i] for i in range(len(by_index))]
    seen = {n for n in names if names.count(n) > 1}
    return [f"{n} #{i}" if n in seen else n for i, n in enumerate(names)]


def read_rows(
    files: Files, csv_key: str, images_key: str, n_super: int, n_sub: int
) -> tuple[list[Path], list[list[int]]]:
    """(paths, [super, sub] targets) of one annotation CSV, checked against the mappings."""
    path = files.require(csv_key)
    folder = files.require(images_key, folder=True)
    paths, targets = [], []
    for line, (image, sup, sub) in read_columns(files, path):
        if not image.strip():  # `folder / ""` is the folder itself, which passed the existence check
            raise ValueError(f"{files.tag}: {path} line {line}: the {files.names['image_column']} field is empty")
        # isdecimal, not isdigit: int() refuses a superscript digit with a ValueError quoting it.
        if not (sup.strip().isdecimal() and sub.strip().isdecimal()):
            raise ValueError(f"{files.tag}: {path} line {line}: indices must be integers")
        if int(sup) >= n_super or int(sub) >= n_sub:
            raise ValueError(
                f"{files.tag}: {path} line {line}: index out of the mappings' range ({n_super} super, {n_sub} sub)"
            )
        paths.append(folder / image.strip())
        targets.append([int(sup), int(sub)])
    files.check_listed(paths, str(path))
    return paths, targets


def read_columns(files: Files, path: Path) -> list[tuple[int, tuple[str, str, str]]]:
    """(line number, (image, super, sub)) of each row of annotation CSV `path`, by header name.
    Line numbers are the file's own (csv counts blank and multi-line rows; numbering rows from 2
    was off after a blank line). A row short of a column is refused naming its line: DictReader
    gave None for it, and `.strip()` on None was an AttributeError traceback."""
    columns = [files.names[k] for k in ("image_column", "super_column", "sub_column")]
    reader = csv.DictReader(io.StringIO(files.text(path), newline=""))
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        found = len(reader.fieldnames or [])
        what = f"column(s) {', '.join(missing)} missing from its header ({found} columns)"
        raise ValueError(f"{files.tag}: {path}: {what}")
    rows = []
    for row in reader:
        values = [row[c] for c in columns]
        if any(v is None for v in values):
            short = ", ".join(c for c, v in zip(columns, values, strict=True) if v is None)
            raise ValueError(f"{files.tag}: {path} line {reader.line_num}: no value for column(s) {short}")
        rows.append((reader.line_num, (values[0], values[1], values[2])))
    return rows


@layout("hierarchical_csv", FILES, tasks=("hierarchical",))
def index_hierarchical_csv(ds: DatasetConfig, files: Files) -> DatasetIndex:
    """Super and sub classes from the mappings; train (and optional test) from the CSVs."""
    supers = read_mapping(files, "super_classes")
    subs = read_mapping(files, "sub_classes")
    novel = [n for n in subs if n.lower() == NOVEL_NAME]
    parts = {}
    for split, csv_key, images_key in (("train", "csv", "images"), ("test", "test_csv", "test_images")):
        if split == "test" and not files.path(csv_key).is_file():
            continue  # no labelled test set: carved out of train
        paths, targets = read_rows(files, csv_key, images_key, len(supers), len(subs))
        parts[split] = make_part(files, paths, targets)
        parts[split].targets = parts[split].targets.reshape(-1, 2)
    return DatasetIndex("hierarchical", subs, parts, supers, novel)
