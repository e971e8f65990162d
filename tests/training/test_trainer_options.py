"""Trainer options the studies' reports need (issue 27): the checkpoint's own preprocessing,
drop-path, per-level train accuracy in history.csv, eval/predict scoring the model the run's
test numbers come from, a vertical flip, and the ViT patch / image size check."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from config_helpers import tiny_config
from PIL import Image
from pydantic import ValidationError
from timm.layers import DropPath
from torchvision.transforms import v2

import trainers
from orchestrator.cli.main import main
from trainers import rundir
from trainers.config import DataConfig, TrainConfig
from trainers.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchNormalize,
    build_transform,
    resolve_preprocessing,
    stats,
)
from trainers.loop import checkpoint
from trainers.loop.modes import Trained
from trainers.model.build import build_model
from trainers.model.tasks import TaskSpec

pytestmark = pytest.mark.filterwarnings("ignore:stratified split impossible")


def history(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / rundir.HISTORY).open() as handle:
        return list(csv.DictReader(handle))


# ---- the checkpoint's own preprocessing ----------------------------------------------------


def test_checkpoint_preprocessing_is_timms_config_of_the_backbone() -> None:
    vit = resolve_preprocessing(DataConfig(), "vit_base_patch16_224.augreg_in21k")
    assert stats(vit) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) and vit.interpolation == "bicubic"
    tv = resolve_preprocessing(DataConfig(), "resnet50.tv_in1k")
    assert stats(tv)[0] == IMAGENET_MEAN and tv.interpolation == "bilinear"
    # A name without a tag is timm's default tag (resnet50 = resnet50.a1_in1k: bicubic).
    assert resolve_preprocessing(DataConfig(), "resnet50").interpolation == "bicubic"
    pinned = resolve_preprocessing(DataConfig(normalize="imagenet", interpolation="bicubic"), "vit_base_patch16_224")
    assert stats(pinned)[0] == IMAGENET_MEAN and pinned.interpolation == "bicubic"
    own = DataConfig.model_validate({"normalize": {"mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]}})
    assert stats(resolve_preprocessing(own, "vit_base_patch16_224"))[0] == (0.1, 0.2, 0.3)
    with pytest.raises(ValidationError, match="std must be positive"):
        DataConfig.model_validate({"normalize": {"mean": [0, 0, 0], "std": [1, 0, 1]}})
    # No pretrained config in timm: ImageNet's and bicubic (not a failure on the node).
    unknown = resolve_preprocessing(DataConfig(), "no_such_model_xyz")
    assert stats(unknown)[0] == IMAGENET_MEAN and unknown.interpolation == "bicubic"


def test_loader_and_per_image_pipelines_normalise_alike() -> None:
    # Training normalises uint8 batches on the device, eval/predict per image: same numbers.
    data = resolve_preprocessing(DataConfig(image_size_px=16), "test_resnet")  # mean/std 0.5, bilinear
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8))
    per_image = build_transform(data, train=False)(image)
    batched = BatchNormalize(*stats(data))(build_transform(data, train=False, normalize=False)(image)[None])[0]
    assert torch.allclose(per_image, batched, atol=1e-5)
    resize = next(t for t in build_transform(data, train=False).transforms if isinstance(t, v2.Resize))
    assert resize.interpolation == v2.InterpolationMode.BILINEAR


def test_run_records_the_preprocessing_it_used(tmp_path: Path) -> None:
    metrics = trainers.run(tiny_config(), tmp_path / "own")
    used = metrics["preprocessing"]
    assert used["mean"] == [0.5, 0.5, 0.5] and used["interpolation"] == "bilinear"
    assert used["pretrained_cfg"] == "test_resnet.r160_in1k"
    imagenet = trainers.run(tiny_config(data__normalize="imagenet"), tmp_path / "imagenet")
    assert imagenet["preprocessing"]["mean"] == list(IMAGENET_MEAN)
    assert imagenet["test"]["loss"] != pytest.approx(metrics["test"]["loss"])  # the inputs really differ


# ---- drop-path, vertical flip, patch size ----------------------------------------------------


def test_drop_path_rate_reaches_the_backbone() -> None:
    task = TaskSpec(kind="single", class_names=("a", "b"))
    plain = build_model(tiny_config(), task, load_weights=False)
    deep = build_model(tiny_config(model__drop_path_rate=0.2), task, load_weights=False)
    assert not any(isinstance(m, DropPath) for m in plain.modules())
    rates = [m.drop_prob for m in deep.modules() if isinstance(m, DropPath)]
    assert rates and max(rates) == pytest.approx(0.2) and min(rates) < 0.2  # scaled per block, as timm does


def test_vertical_flip_is_an_augmentation() -> None:
    data = DataConfig.model_validate({"augment": {"vflip_p": 1.0}, "image_size_px": 8})
    image = Image.fromarray(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3))
    flipped = build_transform(data, train=True, normalize=False)(image)
    clean = build_transform(data, train=False, normalize=False)(image)
    assert torch.equal(flipped, clean.flip(-2))


def test_vit_image_size_must_be_a_multiple_of_its_patch() -> None:
    fields: dict[str, Any] = {"model": {"backbone": "vit_small_patch8_224"}, "data": {"image_size_px": 60}}
    with pytest.raises(ValidationError, match=r"not a multiple of vit_small_patch8_224's 8 px patch .*; use 56 or 64"):
        TrainConfig.model_validate(fields)
    fields["data"]["image_size_px"] = 64
    assert TrainConfig.model_validate(fields).data.image_size_px == 64


# ---- train accuracy in history.csv -------------------------------------------------------------


def test_history_has_train_accuracy_per_level(tmp_path: Path) -> None:
    trainers.run(tiny_config(epochs=2), tmp_path / "single")
    rows = history(tmp_path / "single")
    assert all(0.0 <= float(row["train_top1"]) <= 1.0 for row in rows) and len(rows) == 2
    hier = tiny_config(data__dataset={"name": "digits", "task": "hierarchical", "max_samples": 32})
    trainers.run(hier, tmp_path / "hier")
    for row in history(tmp_path / "hier"):
        assert 0.0 <= float(row["train_super.top1"]) <= 1.0 and 0.0 <= float(row["train_sub.top1"]) <= 1.0


# ---- eval / predict score the run's tested model ----------------------------------------------


@pytest.fixture(scope="module")
def last_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """3 epochs, best = epoch 1 (a min_delta nothing beats), the epoch-3 model tested, weighted loss."""
    run_dir = tmp_path_factory.mktemp("last_run")
    cfg = tiny_config(
        data__dataset={"name": "digits", "task": "hierarchical", "max_samples": 32},
        loss={"class_weights": "balanced"},
        early_stopping={"metric": "val_loss", "min_delta": 1e9},
        checkpoint_for_test="last",
        epochs=3,
    )
    return run_dir, trainers.run(cfg, run_dir)


def eval_metrics(run_dir: Path, name: str, *args: str) -> dict[str, Any]:
    assert main(["eval", str(run_dir), "--name", name, *args]) == 0
    return dict(json.loads((run_dir / "eval" / name / rundir.METRICS).read_text()))


def test_eval_scores_the_tested_model_with_the_runs_loss(last_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, metrics = last_run
    assert metrics["tested"] == {"checkpoint": "last", "epoch": 3} and metrics["best_epoch"] == 1
    again = eval_metrics(run_dir, "default")
    assert again["checkpoint"] == "last" and again["checkpoint_epoch"] == 3
    assert again["loss_class_weights"] == metrics["loss_class_weights"] == "balanced"
    for key in ("top1", "loss"):
        assert again["test"][key] == pytest.approx(metrics["test"][key], rel=1e-5)
    assert again["test"]["super"]["loss"] == pytest.approx(metrics["test"]["super"]["loss"], rel=1e-5)
    rows = history(run_dir)
    best_val = eval_metrics(run_dir, "best-val", "--checkpoint", "best", "--split", "val")
    assert best_val["checkpoint"] == "best" and best_val["checkpoint_epoch"] == 1
    assert best_val["test"]["loss"] == pytest.approx(float(rows[0]["val_loss"]), rel=1e-5)
    last_val = eval_metrics(run_dir, "last-val", "--split", "val")
    assert last_val["test"]["loss"] == pytest.approx(float(rows[2]["val_loss"]), rel=1e-5)


def test_predict_uses_the_tested_model_unless_told(last_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    run_dir, _ = last_run
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(images / f"im{i}.png")
    tables = {}
    for which in ("run", "last", "best"):
        out = tmp_path / f"{which}.tsv"
        assert main(["predict", str(run_dir), str(images), "--out", str(out), "--checkpoint", which]) == 0
        tables[which] = out.read_text()
    assert tables["run"] == tables["last"] != tables["best"]


def test_runs_recorded_before_the_option_keep_imagenet_preprocessing(
    last_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    # Their trainer normalised with ImageNet's statistics and resized bicubically, whatever the backbone.
    old = tmp_path / "old"
    shutil.copytree(last_run[0], old)
    state_file = checkpoint.find_complete(checkpoint.checkpoint_dir(old), checkpoint.BEST) / checkpoint.STATE_FILE
    state = json.loads(state_file.read_text())
    for key in ("normalize", "interpolation"):
        del state["config"]["data"][key]
    state_file.write_text(json.dumps(state))
    data = Trained(old).cfg.data
    assert stats(data) == (IMAGENET_MEAN, IMAGENET_STD) and data.interpolation == "bicubic"
    assert stats(Trained(last_run[0]).cfg.data)[0] == (0.5, 0.5, 0.5)  # test_resnet's own, as trained


# ---- deterministic kernels ------------------------------------------------------------------


def test_a_deterministic_run_trains_and_on_cpu_equals_the_default(tmp_path: Path) -> None:
    """`deterministic: true` runs every op of the loop under torch.use_deterministic_algorithms
    (an op without a deterministic kernel would raise) and, on CPU, changes no number."""
    default = trainers.run(tiny_config(epochs=2), tmp_path / "default")
    try:
        forced = trainers.run(tiny_config(epochs=2, deterministic=True), tmp_path / "forced")
    finally:
        torch.use_deterministic_algorithms(False)
    assert forced["test"] == default["test"]
    timing = {"epoch_s", "train_images_per_s"}
    rows = {
        name: [{k: v for k, v in row.items() if k not in timing} for row in history(tmp_path / name)]
        for name in ("forced", "default")
    }
    assert rows["forced"] == rows["default"] and len(rows["forced"]) == 2
