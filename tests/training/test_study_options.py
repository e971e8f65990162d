"""Trainer and dataset options the five studies' protocols need (issue 14): which model the
test split scores, FGVC-Aircraft's train+val as training set, a hierarchical dataset at one
level, per-level losses in history.csv and metrics.json, and raw N-way scoring of a
pretrained checkpoint next to the class-mapped one."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import dataset_fixtures as fixtures
import numpy as np
import pytest
import timm
import torch
from config_helpers import tiny_config

import trainers
from trainers import rundir
from trainers.config import DatasetConfig, TrainConfig
from trainers.data.loaders import Transformed
from trainers.data.transforms import build_transform, resolve_preprocessing
from trainers.datasets import build_splits
from trainers.datasets.index import resolve_splits
from trainers.datasets.known import label_shape

pytestmark = pytest.mark.filterwarnings("ignore:stratified split impossible")


def config(**fields: Any) -> TrainConfig:
    """Tiny CPU runs (config_helpers.tiny_config)."""
    return tiny_config(**fields)


def history(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / rundir.HISTORY).open() as handle:
        return list(csv.DictReader(handle))


def test_checkpoint_for_test_last_scores_the_final_epoch(tmp_path: Path) -> None:
    # A min_delta nothing beats keeps epoch 1 as best; "last" must still test the epoch-3 model.
    stopping = {"metric": "val_loss", "min_delta": 1e9}
    best = trainers.run(config(epochs=3, early_stopping=stopping), tmp_path / "best")
    last = trainers.run(config(epochs=3, early_stopping=stopping, checkpoint_for_test="last"), tmp_path / "last")
    rows = history(tmp_path / "last")
    assert best["best_epoch"] == last["best_epoch"] == 1 and last["epochs_trained"] == 3
    assert best["tested"] == {"checkpoint": "best", "epoch": 1}
    assert last["tested"] == {"checkpoint": "last", "epoch": 3}
    assert best["val"]["loss"] == pytest.approx(float(rows[0]["val_loss"]), rel=1e-6)
    assert last["val"]["loss"] == pytest.approx(float(rows[2]["val_loss"]), rel=1e-6)
    # Called again, the finished run (resumed from `last`) scores the same model.
    assert trainers.run(config(epochs=3, early_stopping=stopping, checkpoint_for_test="last"), tmp_path / "last")[
        "test"
    ] == pytest.approx(last["test"])


def test_aircraft_trainval_is_the_training_set(tmp_path: Path) -> None:
    aircraft = fixtures.make_fgvc_aircraft(tmp_path / "aircraft")
    cub = fixtures.make_cub200(tmp_path / "cub")
    plain = resolve_splits(DatasetConfig(name="fgvc_aircraft", root=str(aircraft)))
    trainval = DatasetConfig(name="fgvc_aircraft", root=str(aircraft), train_on_trainval=True, val_fraction=0.0)
    merged = resolve_splits(trainval)
    assert len(merged.train) == len(plain.train) + len(plain.val) and len(merged.val) == 0
    assert set(merged.train.ids) == set(plain.train.ids) | set(plain.val.ids)
    assert merged.test.ids == plain.test.ids
    # Report 004's task 2: CUB train (all of it) + Aircraft train+val; tests on both test sets.
    cub_all = DatasetConfig(name="cub200", root=str(cub), val_fraction=0.0, label="CUB")
    combined = resolve_splits(DatasetConfig(name="combined", parts=(cub_all, trainval)))
    cub_split = resolve_splits(cub_all)
    assert len(combined.train) == len(cub_split.train) + len(merged.train)
    assert len(combined.test) == len(cub_split.test) + len(plain.test) and len(combined.val) == 0
    with pytest.raises(ValueError, match="train_on_trainval needs official train and val"):
        resolve_splits(DatasetConfig(name="cub200", root=str(cub), train_on_trainval=True))


def test_hierarchical_dataset_at_one_level(tmp_path: Path) -> None:
    root = fixtures.make_hierarchical_csv(tmp_path / "hier", with_test=True)
    both = resolve_splits(DatasetConfig(name="hierarchical_csv", root=str(root)))
    for level, column in (("super", 0), ("sub", 1)):
        one = resolve_splits(DatasetConfig(name="hierarchical_csv", root=str(root), level=level))
        assert one.task == "single" and one.info["level"] == level
        assert np.array_equal(one.test.targets, both.test.targets[:, column])
        assert one.train.ids == both.train.ids
    sub = resolve_splits(DatasetConfig(name="hierarchical_csv", root=str(root), level="sub"))
    assert both.novel_slot and sub.class_names == [*both.class_names, "novel"]
    declared = {"classes": 5, "super_classes": 3, "novel_slot": True}
    assert label_shape(DatasetConfig(name="hierarchical_csv", level="super", label_shape=declared)).num_classes == 3
    assert label_shape(DatasetConfig(name="hierarchical_csv", level="sub", label_shape=declared)).num_classes == 6
    with pytest.raises(ValueError, match="needs a hierarchical dataset"):
        resolve_splits(DatasetConfig(name="cub200", root=str(fixtures.make_cub200(tmp_path / "cub")), level="sub"))


def test_hierarchical_runs_record_each_level_loss(tmp_path: Path) -> None:
    root = fixtures.make_hierarchical_csv(tmp_path / "hier", with_test=True)
    cfg = config(
        data__dataset={"name": "hierarchical_csv", "root": str(root)},
        loss={"class_weights": "balanced", "super_weight": 0.5, "sub_weight": 2.0},
        early_stopping={"metric": "val_super.loss"},
        epochs=2,
    )
    metrics = trainers.run(cfg, tmp_path / "run")
    test = metrics["test"]
    # The trained objective is w_super * CE(super) + w_sub * CE(sub), each level's CE recorded apart.
    assert test["loss"] == pytest.approx(0.5 * test["super"]["loss"] + 2.0 * test["sub"]["loss"], rel=1e-5)
    assert metrics["best"]["metric"] == "val_super.loss"
    rows = history(tmp_path / "run")
    for name in ("train_super_loss", "train_sub_loss", "val_super.loss", "val_sub.loss"):
        assert all(np.isfinite(float(row[name])) and float(row[name]) > 0 for row in rows), name
    for row in rows:
        weighted = 0.5 * float(row["val_super.loss"]) + 2.0 * float(row["val_sub.loss"])
        assert float(row["val_loss"]) == pytest.approx(weighted, rel=1e-5)


def test_raw_scoring_is_the_checkpoints_own_argmax(tmp_path: Path) -> None:
    # 20 source classes; digit d is source classes 2d and 2d+1, 2d being its own (first) index.
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps({str(d): [2 * d, 2 * d + 1] for d in range(10)}))
    path = tmp_path / "source.pth"
    torch.manual_seed(5)
    source = timm.create_model("test_resnet", num_classes=20).eval()
    torch.save(source.state_dict(), path)
    fields = {"regime": "pretrained_eval", "model__pretrained_path": str(path), "model__class_map_path": str(pairs)}
    mapped = trainers.run(config(**fields), tmp_path / "mapped")
    raw = trainers.run(config(**fields, model__class_map_scoring="raw"), tmp_path / "raw")
    cfg = config(**fields)
    splits = build_splits(cfg.data)
    transform = build_transform(resolve_preprocessing(cfg.data, cfg.model.backbone), train=False)
    images = torch.stack([image for image, _ in Transformed(splits.test, transform)])
    with torch.no_grad():
        logits = source(images)
    labels = np.asarray(splits.test.targets)
    raw_predicted = logits.argmax(dim=1).numpy()
    mapped_predicted = logits.reshape(len(images), 10, 2).amax(dim=2).argmax(dim=1).numpy()
    assert raw["test"]["top1"] == pytest.approx(float((raw_predicted == 2 * labels).mean()))
    assert mapped["test"]["top1"] == pytest.approx(float((mapped_predicted == labels).mean()))
    assert raw["test"]["loss"] == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(2 * labels))), rel=1e-5
    )
    assert raw["tables"] == []  # a 20 x 20 (1000 x 1000) confusion matrix is not written
    with pytest.raises(ValueError, match="class_map_scoring raw needs regime pretrained_eval"):
        trainers.run(config(model__class_map_scoring="raw"), tmp_path / "bad")


def test_batchnorm_head_is_built_in_every_regime() -> None:
    from trainers.model.build import build_model
    from trainers.model.tasks import single

    for regime in ("train", "linear_probe"):
        cfg = config(model__head={"batchnorm": True}, model__head_dropout=0.2, regime=regime)
        net = build_model(cfg, single(10), load_weights=False)
        assert net.heads is not None, regime
        first = net.heads["logits"][0]
        assert isinstance(first, torch.nn.BatchNorm1d) and first.num_features == net.backbone.num_features
        plain = build_model(config(regime=regime), single(10), load_weights=False)
        assert (
            sum(p.numel() for p in net.parameters())
            == sum(p.numel() for p in plain.parameters()) + 2 * first.num_features
        )
