"""predict's .tsv read back by pandas, whatever the class and file names: a class named NA, None,
null, nan or 1, an empty `labels` cell (no class above the threshold), and names holding tabs,
quotes, newlines or a bare carriage return. No model: the rows are prediction_rows' of random
outputs, written as predict writes them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from trainers.loop.modes import TEXT_COLUMNS, misread_by_default, prediction_rows, read_options, read_recipe, tsv
from trainers.model.tasks import TaskSpec

HOSTILE = ("NA", "None", "null", "nan", "NaN", "N/A", "#N/A", "<NA>", "", "1", "001", "1e3", "True", " a ")
"""Names pandas' defaults read as missing values, numbers or bools (and padding it might strip)."""

RECIPE = {"keep_default_na": False, "dtype": {"image_id": str, "label": str, "labels": str, "super": str, "sub": str}}
"""The read the docstrings and the CLI give, written out (pandas ignores dtype for absent columns)."""

_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
names = st.one_of(st.sampled_from(HOSTILE), st.sampled_from(("\r", "a\rb", "t\tab", 'q"t', "l\nm")), st.text(_chars))
classes = st.lists(names, min_size=2, max_size=6, unique=True)


def _task(kind: str, first: list[str], second: list[str]) -> TaskSpec:
    if kind == "hierarchical":
        return TaskSpec("hierarchical", tuple(second), super_class_names=tuple(first))
    return TaskSpec(kind, tuple(first))  # type: ignore[arg-type]


def _write(task: TaskSpec, ids: list[str], seed: int, folder: Path) -> tuple[Path, list[str], list[list[str]]]:
    outputs = np.random.default_rng(seed).normal(0, 3, (len(ids), task.num_outputs)).astype(np.float32)
    header, rows = prediction_rows(task, outputs, 0.5)
    path = folder / "p.tsv"
    path.write_text(tsv(["image_id", *header], [[i, *row] for i, row in zip(ids, rows, strict=True)]), newline="")
    return path, ["image_id", *header], [[i, *row] for i, row in zip(ids, rows, strict=True)]


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["single", "multilabel", "hierarchical"]),
    first=classes,
    second=classes,
    stems=st.lists(names, min_size=1, max_size=5, unique=True),
    seed=st.integers(0, 2**16),
)
def test_the_tsv_reads_back_exactly_as_written(
    kind: str, first: list[str], second: list[str], stems: list[str], seed: int
) -> None:
    """With the documented read (keep_default_na=False, the name columns as str), every id, label
    and header comes back as the string written. csv's quoting left a bare \\r in a name: pandas
    ended the row there and every later cell of it moved."""
    task = _task(kind, first, second)
    ids = [f"{stem}.png" for stem in stems]
    with tempfile.TemporaryDirectory() as folder:
        path, header, rows = _write(task, ids, seed, Path(folder))
        table = pd.read_csv(path, sep="\t", **RECIPE)  # type: ignore[call-overload]
        assert list(table.columns) == header
        assert len(table) == len(rows)
        for index, column in enumerate(header):
            written = [row[index] for row in rows]
            if column in TEXT_COLUMNS:
                assert table[column].tolist() == written, column
            else:
                assert np.allclose(table[column].to_numpy(float), np.asarray(written, dtype=float)), column


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(["single", "multilabel", "hierarchical"]), first=classes, second=classes)
def test_misread_by_default_names_what_the_defaults_lose(kind: str, first: list[str], second: list[str]) -> None:
    """read_options is the recipe above; misread_by_default lists exactly the names a plain
    pandas.read_csv(path, sep="\\t") does not return as written, and none when it returns them all."""
    task = _task(kind, first, second)
    with tempfile.TemporaryDirectory() as folder:
        path, header, rows = _write(task, [f"im{i}.png" for i in range(6)], 0, Path(folder))
        options = read_options(header)
        assert options["keep_default_na"] is False and set(options["dtype"]) == set(TEXT_COLUMNS) & set(header)
        assert all(value is str for value in options["dtype"].values())
        assert read_recipe(header).startswith('pandas.read_csv(path, sep="\\t", keep_default_na=False, dtype={')
        default = pd.read_csv(path, sep="\t")
        lost = []
        for index, column in enumerate(header):
            if column in TEXT_COLUMNS:
                for text, read in zip((row[index] for row in rows), default[column], strict=True):
                    if not (isinstance(read, str) and read == text) and text not in lost:
                        lost.append(text)
        assert sorted(misread_by_default(path)) == sorted(lost)


def test_na_classes_and_an_empty_labels_cell_are_named(tmp_path: Path) -> None:
    """The cases the defaults lose, by name: NA / None classes, a numeric one, and an image with no label."""
    outputs = np.array([[5.0, -5.0, -5.0], [-5.0, 5.0, -5.0], [-5.0, -5.0, 5.0], [-5.0, -5.0, -5.0]])
    ids = ["a.png", "b.png", "c.png", "d.png"]
    for kind, expected in (("single", ["NA", "None", "1"]), ("multilabel", ["NA", "None", "1", ""])):
        header, rows = prediction_rows(TaskSpec(kind, ("NA", "None", "1")), outputs, 0.5)  # type: ignore[arg-type]
        path = tmp_path / f"{kind}.tsv"
        path.write_text(tsv(["image_id", *header], [[i, *row] for i, row in zip(ids, rows, strict=True)]))
        assert misread_by_default(path) == expected
        assert pd.read_csv(path, sep="\t", **read_options(["image_id", *header])).iloc[:, 1].tolist() == [
            row[0] for row in rows
        ]
    plain = tmp_path / "plain.tsv"
    header, rows = prediction_rows(TaskSpec("single", ("cat", "dog", "owl")), outputs, 0.5)
    plain.write_text(tsv(["image_id", *header], [[i, *row] for i, row in zip(ids, rows, strict=True)]))
    assert misread_by_default(plain) == []
