"""`orchestrate eval` / `predict` on data and checkpoints that are not all sound: an unreadable
image among those scored or labelled, a corrupt weights file, file and class names that broke the
.tsv, and a run that has not completed. Tiny CPU runs (a second each)."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from config_helpers import tiny_config
from dataset_fixtures import make_imagefolder
from PIL import Image

import trainers
from orchestrator.cli.main import main
from trainers import rundir
from trainers.contract import State
from trainers.loop import checkpoint

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
        p.relative_to(folder / "test").as_posix() for p in (folder / "test").rglob("*_test*") if p.is_file()
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


TRICKY_NAMES = ("x.jpg", "x.png", "tab\there.png", "new\nline.png", 'say "cheese".png', "001.png", "NA.png")
"""Two files sharing a stem, a tab, a newline and quotes in names, and stems pandas reads as 1 and NaN."""


def test_predict_ids_are_unique_and_the_tsv_reads_back_with_pandas(run: Path, tmp_path: Path) -> None:
    """`image_id` was the path without its suffix (x.jpg and x.png were both `x`) and rows were joined
    with bare tabs (a tab or newline in a file or class name split a row). Ids are now the relative
    paths and the file is csv-quoted: pandas.read_csv(sep="\\t") gets every name back, as a string."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    best = checkpoint.find_complete(checkpoint.checkpoint_dir(copy), checkpoint.BEST)
    assert best is not None
    state_file = best / checkpoint.STATE_FILE
    state = json.loads(state_file.read_text())
    classes = ["ca\tt", "do\ng", 'o"wl']
    state["task"]["class_names"] = classes
    state_file.write_text(json.dumps(state))
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in (*TRICKY_NAMES, "sub/x.jpg"):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(images / name)
    out = tmp_path / "labels.tsv"
    assert main(["predict", str(copy), str(images), "--out", str(out)]) == 0
    table = pd.read_csv(out, sep="\t")
    assert sorted(table["image_id"]) == sorted([*TRICKY_NAMES, "sub/x.jpg"])
    assert list(table.columns) == ["image_id", "label", "label_p", *(f"p_{name}" for name in classes)]
    assert set(table["label"]) <= set(classes) and not table.isna().any().any()
    probabilities = table[[f"p_{name}" for name in classes]].sum(axis=1)
    assert np.allclose(probabilities, 1.0, atol=1e-5)


@pytest.mark.parametrize("state", [State.RUNNING, State.FAILED, State.PENDING, "bogus", None])
def test_eval_and_predict_refuse_a_run_that_has_not_completed(
    run: Path, tmp_path: Path, state: State | str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A running run replaces its checkpoints while eval/predict read them (a failed one may be resumed
    at any time): both read only a completed run, and say which run and which state in one line.
    None: no status.json and no metrics.json (a run trained outside the orchestrator, unfinished)."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    if isinstance(state, State):
        rundir.update_status(copy, state)
    elif state is not None:
        rundir.write_json(copy / rundir.STATUS, {"state": state})
    else:
        (copy / rundir.METRICS).unlink()
    shown = "not completed" if state is None else f"the run is {state.value if isinstance(state, State) else 'unknown'}"
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    before = sorted(copy.rglob("*"))
    for command in (["eval", str(copy)], ["predict", str(copy), str(images), "--out", str(tmp_path / "p.tsv")]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert str(copy) in err and shown in err and err.count("\n") == 1, err
    assert sorted(copy.rglob("*")) == before and not (tmp_path / "p.tsv").exists()
    rundir.update_status(copy, State.COMPLETED)  # the same folder, once completed, is scored
    assert main(["predict", str(copy), str(images), "--out", str(tmp_path / "p.tsv")]) == 0


@pytest.mark.parametrize("scoring", ["raw", "mapped"])
def test_eval_scores_as_the_runs_class_map_scoring(tmp_path: Path, scoring: str) -> None:
    """`orchestrate eval` of a class_map_scoring raw run scored the class-mapped outputs: its top1 and
    loss were the mapped model's, not the run's own test numbers. It now scores as the run's test does
    (the checkpoint's own argmax and cross-entropy over all its classes), and a mapped run as before."""
    # 20 source classes; digit d is source classes 2d and 2d+1, 2d being its own (first) index.
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps({str(d): [2 * d, 2 * d + 1] for d in range(10)}))
    weights = tmp_path / "source.pth"
    torch.manual_seed(5)
    torch.save(timm.create_model("test_resnet", num_classes=20).state_dict(), weights)
    cfg = tiny_config(
        regime="pretrained_eval",
        model__pretrained_path=str(weights),
        model__class_map_path=str(pairs),
        model__class_map_scoring=scoring,
    )
    run_dir = tmp_path / "run"
    own = trainers.run(cfg, run_dir)["test"]
    assert main(["eval", str(run_dir), "--name", "again"]) == 0
    again = json.loads((run_dir / "eval" / "again" / rundir.METRICS).read_text())
    assert again["test"].keys() == own.keys()
    for key in ("n_images", "top1", "macro_f1", "loss"):
        assert again["test"][key] == pytest.approx(own[key], rel=1e-5), key
    assert (again["tables"] == []) == (scoring == "raw")  # no 20 x 20 (1000 x 1000) confusion matrix


def test_predict_names_what_pandas_defaults_misread_and_how_to_read_it(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Classes named NA, None and null came back from pandas.read_csv(path, sep="\\t") as NaN, and a
    bare carriage return in a file name (csv's quoting left it bare) cut its row in two, so pandas
    refused the file. The \\r is quoted now, and predict names the labels the defaults misread and
    prints the read that returns every name as written."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    best = checkpoint.find_complete(checkpoint.checkpoint_dir(copy), checkpoint.BEST)
    assert best is not None
    state = json.loads((best / checkpoint.STATE_FILE).read_text())
    classes = ["NA", "None", "null"]
    state["task"]["class_names"] = classes
    (best / checkpoint.STATE_FILE).write_text(json.dumps(state))
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    names = ["cr\rname.png", "a.png", "NA.png"]
    for name in names:
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(images / name)
    out = tmp_path / "labels.tsv"
    assert main(["predict", str(copy), str(images), "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    recipe = "pandas.read_csv(path, sep=\"\\t\", keep_default_na=False, dtype={'image_id': str, 'label': str})"
    assert "as missing values or numbers" in printed and printed.endswith(recipe), printed
    table = pd.read_csv(out, sep="\t", keep_default_na=False, dtype={"image_id": str, "label": str})
    assert sorted(table["image_id"]) == sorted(names)
    assert set(table["label"]) <= set(classes) and len(table) == 3
    assert list(table.columns) == ["image_id", "label", "label_p", *(f"p_{name}" for name in classes)]
    assert pd.read_csv(out, sep="\t")["label"].isna().all()  # what the defaults made of them


def test_predict_writes_a_file_name_that_is_not_utf8(run: Path, tmp_path: Path) -> None:
    """Linux file names are bytes: one that is not UTF-8 failed predict's whole write (a surrogate the
    UTF-8 .tsv could not encode); its row is written with the byte shown as \\xff."""
    images = tmp_path / "images"
    images.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(images / "a.png")
    odd = os.fsdecode(b"bad\xff.png")
    Image.fromarray(pixels).save(images / odd, format="PNG")
    out = tmp_path / "labels.tsv"
    assert main(["predict", str(run), str(images), "--out", str(out)]) == 0
    table = pd.read_csv(out, sep="\t", keep_default_na=False, dtype={"image_id": str})
    assert sorted(table["image_id"]) == ["a.png", "bad\\xff.png"]
