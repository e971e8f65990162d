"""`orchestrate init` on a researcher's own, untidy folder: it reads the dataset with the reader
the runs use, so that what it writes (classes, split sizes, comments) is what every run trains on,
and a folder no run could score is refused in one line instead of becoming a sweep."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.cli.main import main
from trainers.config import DatasetConfig
from trainers.datasets.check import check_dataset


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
        (
            {"": {f"k{i:02d}": 1 for i in range(12)}},
            "the test split would hold no image (carved 20% of the training images; 12 train images in 12 classes),"
            " so no run could report a test score; add images (a carved split takes its share of each class: 5 or"
            " more per class gives each class a test image) or a test/ folder",
        ),
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


def test_init_refuses_an_empty_test_split_in_plans_own_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """init had its own check and message for an empty carved test split beside plan's
    (trainers.datasets.check.check_not_empty): two rules and two wordings that could drift apart.
    It now says exactly what plan says, after the --root it was given."""
    data = _tree(tmp_path / "d", {"": {f"k{i:02d}": 1 for i in range(12)}}).resolve()
    with warnings.catch_warnings(), pytest.raises(ValueError) as refused:
        warnings.simplefilter("ignore")  # the per-class fallback split's warning
        check_dataset(DatasetConfig(name="imagefolder", root=str(data)))
    code, _, err = _init(data, tmp_path / "x.yaml", capsys)
    assert code == 2
    assert err == f"error: --root {data}: {refused.value}\n"


@pytest.mark.parametrize(
    ("layout", "batch", "why"),
    [
        ({"": {"a": 4, "b": 4, "c": 4}}, 4, "; 4, not 32: 2+ steps per epoch from 9 training images"),
        ({"": {"a": 30, "b": 30, "c": 30}}, 16, "; 16, not 32: 2+ steps per epoch from 63 training images"),
        ({"train": {"a": 1, "b": 1}, "test": {"a": 1, "b": 1}}, 2, "; 2, not 32: at most the 2 training image(s)"),
        ({"train": {"a": 32, "b": 32}, "val": {"a": 1, "b": 1}, "test": {"a": 1, "b": 1}}, 32, ""),
    ],
)
def test_the_batch_size_fits_the_training_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: dict[str, dict[str, int]], batch: int, why: str
) -> None:
    """init wrote batch_size 32 for 9 training images: one optimizer step per epoch, of 9 images, under a
    batch size the sweep said was 32. Below 64 training images it writes a smaller power of two, and why."""
    data = _tree(tmp_path / "d", layout)
    code, _, _ = _init(data, tmp_path / "x.yaml", capsys)
    assert code == 0
    line = next(line for line in (tmp_path / "x.yaml").read_text().splitlines() if "batch_size:" in line)
    assert re.fullmatch(
        rf"    batch_size: {batch} +# global: images per optimizer step over all GPUs{re.escape(why)}", line
    )
    assert line.index("#") == 30, line  # aligned with the comments around it


def test_first_batch_is_a_power_of_two_within_the_split_with_two_steps_an_epoch() -> None:
    from orchestrator.cli.scaffold import BATCH_SIZE, first_batch

    for train in range(1, 300):
        batch, why = first_batch(train)
        assert batch & (batch - 1) == 0 and 1 <= batch <= min(train, BATCH_SIZE), (train, batch)
        assert (batch == BATCH_SIZE) == (why == "") == (train >= 2 * BATCH_SIZE), (train, why)
        if train >= 4:  # two or more steps, and drop_last's partial batch under a third of the images
            assert train // batch >= 2 and 3 * (train % batch) < train, (train, batch)
        if train >= 2:
            assert batch >= 2, train  # a batch of 1 breaks BatchNorm in train mode


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
