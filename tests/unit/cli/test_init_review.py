"""`orchestrate init` on a researcher's own, untidy folder: it reads the dataset with the reader
the runs use, so that what it writes (classes, split sizes, comments) is what every run trains on,
and a folder no run could score is refused in one line instead of becoming a sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from orchestrator.cli.main import main


def _tree(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    """`{split folder ('' for none): {class: images}}` of tiny images."""
    for split, classes in layout.items():
        for index, (name, count) in enumerate(classes.items()):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (16, 16), (index * 60, i * 20, 0)).save(folder / f"{i}.png")
    return root


def _init(data: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["init", "--root", str(data), "--out", str(out)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_capitalised_split_folders_are_splits_as_the_runs_read_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runs read `Train/ Val/` as splits (any case); init read them as two classes named Train
    and Val and wrote 'no split folders; val and test carved' into the sweep."""
    data = _tree(tmp_path / "cars", {"Train": {"sedan": 6, "truck": 6}, "Val": {"sedan": 2, "truck": 2}})
    code, out, _ = _init(data, tmp_path / "cars.yaml", capsys)
    assert code == 0
    assert "2 classes (sedan, truck)" in out and "Train" not in out
    text = (tmp_path / "cars.yaml").read_text()
    assert "split folders train, val; test carved from the training images" in text
    assert "# ROOT/train/<class>/<image>" in text
    assert main(["plan", str(tmp_path / "cars.yaml")]) == 0


@pytest.mark.parametrize(
    ("layout", "says"),
    [
        ({"val": {"a": 3, "b": 3}, "test": {"a": 3, "b": 3}}, "has split folder(s) test, val but no train/"),
        ({"train": {"a": 3, "b": 3}, "val": {"a": 1, "b": 1, "z": 1}}, "classes ['z'] are not in the training"),
        ({"": {f"k{i:02d}": 1 for i in range(12)}}, "the test split would hold no image (carved 20% of the"),
    ],
)
def test_a_folder_no_run_could_use_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: dict[str, dict[str, int]], says: str
) -> None:
    """init wrote these sweeps and said they plan: the first two `plan` refused; the third planned and
    trained 9 runs on an empty test split, and `collect` then had nothing to tabulate."""
    data = _tree(tmp_path / "d", layout)
    code, _, err = _init(data, tmp_path / "x.yaml", capsys)
    assert code == 2
    assert err.startswith("error: --root ") and says in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.yaml").exists()


def test_the_sweep_states_the_split_sizes_the_runs_train_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It said '12 training images' for a folder of 12 of which the runs train on 9."""
    data = _tree(tmp_path / "shapes", {"": {"circle": 4, "square": 4, "triangle": 4}})
    code, out, _ = _init(data, tmp_path / "shapes.yaml", capsys)
    assert code == 0
    assert "9 train, 1 val, 2 test images" in out
    assert "# 3 classes; 9 train, 1 val, 2 test images; no split folders;" in (tmp_path / "shapes.yaml").read_text()


def test_an_empty_class_folder_is_warned_about(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder of notes beside the class folders silently became a class of the model."""
    data = _tree(tmp_path / "d", {"": {"a": 5, "b": 5}})
    (data / "notes").mkdir()
    (data / "notes" / "readme.txt").write_text("labelled by Anna\n")
    code, _, err = _init(data, tmp_path / "x.yaml", capsys)
    assert code == 0
    assert "warning: class folder(s) without an image: notes" in err
    assert "# warning: class folder(s) without an image: notes" in (tmp_path / "x.yaml").read_text()


def test_the_next_command_it_prints_can_be_pasted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _tree(tmp_path / "my data", {"": {"a": 5, "b": 5}})
    out_file = tmp_path / "my sweeps" / "first try.yaml"
    code, out, _ = _init(data, out_file, capsys)
    assert code == 0
    assert f"next: orchestrate plan '{out_file}'" in out.replace("\n", "")
