"""Annotation files as users really hand them over: a byte-order mark, Latin-1 text, a short or
blank row, an id on two lines, `.TXT` label files, class folders that differ only in Unicode
normalisation. Each is read correctly or refused in one line naming the file and line."""

from __future__ import annotations

import unicodedata
import warnings
from pathlib import Path

import pytest
from dataset_fixtures import write_flat_image

from trainers.config import DatasetConfig
from trainers.datasets.check import check_dataset
from trainers.datasets.index import build_index, resolve_splits


def _resolve(name: str, root: Path) -> list[str]:
    """The class names after a plan-time check and the job's split resolution."""
    ds = DatasetConfig(name=name, root=str(root))
    check_dataset(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny fixtures: the per-class split warning
        return resolve_splits(ds).class_names


def _cub(root: Path, extra: dict[str, str] | None = None, encoding: str = "utf-8") -> Path:
    """Four images of two classes; `extra` appends lines to a file (by name)."""
    texts = {
        "images.txt": "".join(f"{i} c/{i}.jpg\n" for i in range(1, 5)),
        "image_class_labels.txt": "1 1\n2 2\n3 1\n4 2\n",
        "train_test_split.txt": "1 1\n2 1\n3 0\n4 0\n",
        "classes.txt": "1 albatross\n2 bunting\n",
    }
    root.mkdir()
    for name, text in texts.items():
        (root / name).write_text(text + (extra or {}).get(name, ""), encoding=encoding)
    for i in range(1, 6):
        write_flat_image(root / "images" / "c" / f"{i}.jpg")
    return root


def _hierarchical(root: Path, rows: str, encoding: str = "utf-8") -> Path:
    root.mkdir()
    (root / "superclass_mapping.csv").write_text("index,class\n0,bird\n1,dog\n", encoding=encoding)
    (root / "subclass_mapping.csv").write_text("index,class\n0,a\n1,b\n2,c\n", encoding=encoding)
    header = "image,superclass_index,subclass_index\n"
    (root / "train_data.csv").write_text(header + rows, encoding=encoding)
    for i in range(12):
        write_flat_image(root / "train_images" / f"{i}.jpg")
    return root


_GOOD_ROWS = "".join(f"{i}.jpg,{i % 2},{i % 3}\n" for i in range(12))


def _foodx(root: Path, train_csv: str) -> Path:
    (root / "annot").mkdir(parents=True)
    (root / "annot" / "class_list.txt").write_text("0 macaron\n1 ramen\n")
    (root / "annot" / "train_info.csv").write_bytes(train_csv.encode())
    (root / "annot" / "val_info.csv").write_text("v0.jpg,0\nv1.jpg,1\n")
    for i in range(6):
        write_flat_image(root / "train_set" / f"t{i}.jpg")
    for i in range(2):
        write_flat_image(root / "val_set" / f"v{i}.jpg")
    return root


# ---------------------------------------------------------------- encodings


def test_a_byte_order_mark_is_not_part_of_the_first_cub_id(tmp_path: Path) -> None:
    """Notepad's BOM glued itself to the first class id: 'class ids must be 1..2 in order'."""
    root = _cub(tmp_path / "cub", encoding="utf-8-sig")
    assert _resolve("cub200", root) == ["albatross", "bunting"]


def test_a_byte_order_mark_is_not_part_of_the_first_csv_column(tmp_path: Path) -> None:
    """Excel's 'CSV UTF-8' BOM renamed the header's `image` column: 'column(s) image missing'."""
    root = _hierarchical(tmp_path / "h", _GOOD_ROWS, encoding="utf-8-sig")
    assert _resolve("hierarchical_csv", root) == ["a", "b", "c"]


def test_two_exports_concatenated_each_with_a_byte_order_mark(tmp_path: Path) -> None:
    """`cat a.csv b.csv`: the second mark sat at a line start mid-file, glued to an image name."""
    first = "".join(f"t{i}.jpg,{i % 2}\n" for i in range(3))
    second = "".join(f"t{i}.jpg,{i % 2}\n" for i in range(3, 6))
    root = _foodx(tmp_path / "food", "\ufeff" + first + "\ufeff" + second)
    assert _resolve("foodx251", root) == ["macaron", "ramen"]


def test_a_file_that_is_not_utf8_is_refused_naming_its_line(tmp_path: Path) -> None:
    """A Latin-1 mapping raised a bare UnicodeDecodeError naming no file (CSV layouts), or was read
    with U+FFFD in place of its bytes, renaming the class (line layouts)."""
    root = _hierarchical(tmp_path / "h", _GOOD_ROWS)
    (root / "subclass_mapping.csv").write_bytes("index,class\n0,a\n1,caf\xe9\n2,c\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"subclass_mapping\.csv line 3: not UTF-8 text") as caught:
        _resolve("hierarchical_csv", root)
    assert type(caught.value) is ValueError  # not a UnicodeDecodeError's own message
    cub = _cub(tmp_path / "cub")
    (cub / "classes.txt").write_bytes("1 albatross\n2 bunt\xefng\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"classes\.txt line 2: not UTF-8 text"):
        _resolve("cub200", cub)


# ---------------------------------------------------------------- CSV rows


def test_a_row_short_of_a_column_is_refused_naming_its_line(tmp_path: Path) -> None:
    """DictReader filled the missing column with None: an AttributeError traceback."""
    root = _hierarchical(tmp_path / "h", _GOOD_ROWS + "0.jpg,1\n")
    with pytest.raises(ValueError, match=r"train_data\.csv line 14: no value for column\(s\) subclass_index"):
        _resolve("hierarchical_csv", root)


def test_csv_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    """Rows were numbered from 2 as read, so a blank line above a bad row pointed at the wrong line."""
    root = _hierarchical(tmp_path / "h", "\n\n" + _GOOD_ROWS + "0.jpg,7,0\n")
    with pytest.raises(ValueError, match=r"train_data\.csv line 16: index out of the mappings' range"):
        _resolve("hierarchical_csv", root)


def test_a_row_without_an_image_name_is_refused(tmp_path: Path) -> None:
    """`folder / ''` is the image folder itself, which passed the existence check at plan; the job
    then failed to decode a folder."""
    root = _hierarchical(tmp_path / "h", _GOOD_ROWS + ",1,1\n")
    with pytest.raises(ValueError, match=r"train_data\.csv line 14: the image field is empty"):
        _resolve("hierarchical_csv", root)
    food = _foodx(tmp_path / "food", "".join(f"t{i}.jpg,{i % 2}\n" for i in range(6)) + ",1\n")
    with pytest.raises(ValueError, match=r"train_info\.csv entry 7: no image name"):
        _resolve("foodx251", food)


# ---------------------------------------------------------------- ids and names given twice


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("images.txt", "1 c/5.jpg\n"),  # image c/1.jpg silently dropped
        ("image_class_labels.txt", "1 2\n"),  # image 1 silently relabelled
        ("train_test_split.txt", "3 1\n"),  # test image 3 silently moved into train
    ],
)
def test_a_cub_image_id_on_two_lines_is_refused(tmp_path: Path, name: str, line: str) -> None:
    """A dict of the lines kept the last of each id, without a word."""
    root = _cub(tmp_path / "cub", {name: line})
    with pytest.raises(ValueError, match=rf"{name} non-empty lines \d and 5 give the same image id"):
        _resolve("cub200", root)


def test_a_cub_class_name_given_twice_is_refused(tmp_path: Path) -> None:
    root = _cub(tmp_path / "cub")
    (root / "classes.txt").write_text("1 albatross\n2 albatross\n")
    with pytest.raises(ValueError, match=r"classes\.txt non-empty lines 1 and 2 give the same class name"):
        _resolve("cub200", root)


def test_plan_refuses_an_image_listed_twice_in_an_official_split(tmp_path: Path) -> None:
    """With an official test split, plan read the index but never checked repeats: the sweep was
    submitted and every job then failed on the same line."""
    rows = "".join(f"t{i}.jpg,{i % 2}\n" for i in range(6)) + "t0.jpg,1\n"
    root = _foodx(tmp_path / "food", rows)
    with pytest.raises(ValueError, match=r"listed more than once in the train split"):
        check_dataset(DatasetConfig(name="foodx251", root=str(root)))


def test_plan_refuses_an_aircraft_image_in_two_split_files(tmp_path: Path) -> None:
    root = tmp_path / "air"
    (root / "data").mkdir(parents=True)
    (root / "data" / "variants.txt").write_text("A320\nB737\n")
    for split, images in (("train", "1 2"), ("val", "3"), ("test", "1")):
        lines = "".join(f"{i} {'A320' if int(i) % 2 else 'B737'}\n" for i in images.split())
        (root / "data" / f"images_variant_{split}.txt").write_text(lines)
    for i in "123":
        write_flat_image(root / "data" / "images" / f"{i}.jpg")
    with pytest.raises(ValueError, match=r"in both the train and the test split"):
        check_dataset(DatasetConfig(name="fgvc_aircraft", root=str(root)))


# ---------------------------------------------------------------- label files and class folders


def _multilabel(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    for i in range(1, 11):
        write_flat_image(root / "images" / f"im{i}.jpg")
    (root / "annotations" / "dog.txt").write_text("1\n2\n3\n")
    return root


def test_an_upper_case_txt_label_file_is_a_label(tmp_path: Path) -> None:
    """`Cat.TXT` (as Windows tools write) was skipped: its label was missing from every target."""
    root = _multilabel(tmp_path / "ml")
    (root / "annotations" / "Cat.TXT").write_text("4\n5\n")
    index = build_index(DatasetConfig(name="multilabel", root=str(root)))
    assert index.class_names == ["Cat", "dog"]
    assert index.parts["all"].targets.sum(axis=0).tolist() == [2.0, 3.0]


def test_two_files_of_one_label_are_refused(tmp_path: Path) -> None:
    root = _multilabel(tmp_path / "ml")
    (root / "annotations" / "dog.TXT").write_text("4\n")
    with pytest.raises(ValueError, match=r"dog\.TXT and dog\.txt in .* name the same label"):
        check_dataset(DatasetConfig(name="multilabel", root=str(root)))


def test_class_folders_differing_only_in_unicode_normalisation_are_refused(tmp_path: Path) -> None:
    """`café` typed on Linux (NFC) beside `café` copied from macOS (NFD): two classes that print alike."""
    root = tmp_path / "food"
    for name in (unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café"), "pizza"):
        for i in range(4):
            write_flat_image(root / name / f"{i}.jpg")
    with pytest.raises(ValueError, match=r"class folders .*caf.* differ only in Unicode normalisation"):
        check_dataset(DatasetConfig(name="imagefolder", root=str(root)))


def test_a_symlinked_sub_folder_of_a_class_is_read_and_a_link_loop_ends(tmp_path: Path) -> None:
    """Links were not followed: a class assembled from symlinked folders lost their images without a
    word (torchvision's ImageFolder reads them). A loop must still end."""
    root, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    for name in ("cat", "dog"):
        for i in range(5):
            write_flat_image(root / name / f"{i}.jpg")
    for i in range(3):
        write_flat_image(elsewhere / f"x{i}.jpg")
    (root / "cat" / "more").symlink_to(elsewhere, target_is_directory=True)
    (root / "dog" / "loop").symlink_to(root / "dog", target_is_directory=True)
    index = build_index(DatasetConfig(name="imagefolder", root=str(root)))
    assert index.parts["all"].targets.tolist() == [0] * 8 + [1] * 5
    assert "cat/more/x0.jpg" in index.parts["all"].ids


def test_foodx_csv_is_read_with_csv_quoting(tmp_path: Path) -> None:
    """A spreadsheet quotes a name (always, or where it holds ','): split at each ',' the quotes stayed
    in the name, which matched no file ("not found"), and a name with ',' split into two fields."""
    rows = '"t0.jpg",0\n"t,1.jpg",1\n' + "".join(f"t{i}.jpg,{i % 2}\n" for i in range(2, 6))
    root = _foodx(tmp_path / "food", rows)
    write_flat_image(root / "train_set" / "t,1.jpg")
    assert _resolve("foodx251", root) == ["macaron", "ramen"]
    ds = DatasetConfig(name="foodx251", root=str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        splits = resolve_splits(ds)
    names = {Path(p).name for part in (splits.train, splits.val) for p in part.ids}
    assert {"t0.jpg", "t,1.jpg"} <= names


def test_foodx_row_of_three_fields_names_its_line(tmp_path: Path) -> None:
    root = _foodx(tmp_path / "food", "t0.jpg,0\n\nt1.jpg,1,extra\n")
    with pytest.raises(ValueError, match=r"train_info\.csv line 3: expected 2 fields, found 3"):
        _resolve("foodx251", root)
