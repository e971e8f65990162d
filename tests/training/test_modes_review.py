"""`orchestrate eval` / `predict` on data and checkpoints that are not all sound: an unreadable
image among those scored or labelled, and a corrupt weights file. Tiny CPU runs (a second each)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from config_helpers import tiny_config
from dataset_fixtures import make_imagefolder

import trainers
from orchestrator.cli import main
from trainers import rundir

pytestmark = pytest.mark.filterwarnings("ignore:stratified split impossible", "ignore:.*skipping unreadable image")

NOT_AN_IMAGE = b"not a jpeg"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/val/test image folders (2 test images a class), with one unreadable test image that
    sorts first, so every target after it shifts if the scored images and the targets part."""
    root = make_imagefolder(tmp_path_factory.mktemp("data") / "folder", per_class=6, split_folders=True)
    (root / "test" / "cat" / "broken.jpg").write_bytes(NOT_AN_IMAGE)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> Path:
    """A finished run that tolerated the unreadable test image (max_bad_fraction 0.5), as training does."""
    run_dir = tmp_path_factory.mktemp("run")
    dataset = {"name": "imagefolder", "root": str(folder), "max_bad_fraction": 0.5}
    trainers.run(tiny_config(data__dataset=dataset, epochs=2, max_steps_per_epoch=3), run_dir)
    return run_dir


def test_eval_skips_unreadable_images_as_the_run_did(
    run: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """eval loaded the split with max_bad_fraction 0, whatever the dataset said: one unreadable image
    the run's own test had skipped failed `orchestrate eval RUN_DIR` (naming the 'train split'). It now
    skips it as the run did, scores the images it read against their own targets, and reproduces the
    run's test numbers."""
    own = json.loads((run / rundir.METRICS).read_text())
    assert own["data"]["skipped_images"]["test"] == 1 and own["test"]["n_images"] == 6
    assert main(["eval", str(run), "--name", "again"]) == 0
    assert "1 unreadable skipped" in capsys.readouterr().out
    again = json.loads((run / "eval" / "again" / rundir.METRICS).read_text())
    assert again["skipped_images"] == 1
    for key in ("n_images", "top1", "macro_f1", "loss"):
        assert again["test"][key] == pytest.approx(own["test"][key], abs=1e-6), key
    own_matrix = (run / "confusion_matrix.csv").read_text()
    assert (run / "eval" / "again" / "confusion_matrix.csv").read_text() == own_matrix


def test_eval_refuses_too_many_unreadable_images_naming_the_split(
    run: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another dataset's own max_bad_fraction (default 0.01) applies, and the error names the split scored."""
    dataset = f"{{name: imagefolder, root: {folder}}}"
    assert main(["eval", str(run), "--dataset", dataset, "--name", "strict"]) == 1
    err = capsys.readouterr().err
    assert "test split: 1 of 7 images are unreadable" in err and "max_bad_fraction=0.01" in err
    assert not (run / "eval" / "strict").exists()


def test_predict_skips_unreadable_files_and_names_them(
    run: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One corrupt .jpg among the images was a traceback (PIL.UnidentifiedImageError) and no .tsv."""
    out = tmp_path / "labels.tsv"
    assert main(["predict", str(run), str(folder / "test"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "6 images ->" in printed and "1 unreadable image file(s) skipped (no row): cat/broken.jpg" in printed
    rows = list(csv.DictReader(out.open(), delimiter="\t"))
    assert sorted(row["image_id"] for row in rows) == sorted(
        p.relative_to(folder / "test").with_suffix("").as_posix()
        for p in (folder / "test").rglob("*_test*")
        if p.is_file()
    )
    broken_only = tmp_path / "broken"
    broken_only.mkdir()
    (broken_only / "a.jpg").write_bytes(NOT_AN_IMAGE)
    (broken_only / "b.png").write_bytes(b"")
    assert main(["predict", str(run), str(broken_only), "--out", str(tmp_path / "none.tsv")]) == 2
    err = capsys.readouterr().err
    assert "none of its 2 image files could be decoded" in err and err.count("\n") == 1
    assert not (tmp_path / "none.tsv").exists()


@pytest.mark.parametrize("weights", [b"garbage", b""])
def test_a_corrupt_weights_file_is_one_line_not_a_traceback(
    run: Path, tmp_path: Path, weights: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated model.safetensors (quota hit while saving, a copy cut short) raised safetensors'
    SafetensorError through the CLI."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "checkpoints" / "best" / "model.safetensors").write_bytes(weights)
    assert main(["eval", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors: cannot load the model weights" in err and err.count("\n") == 1
    assert main(["predict", str(copy), str(tmp_path), "--out", str(tmp_path / "p.tsv")]) == 2
    assert "cannot load the model weights" in capsys.readouterr().err
