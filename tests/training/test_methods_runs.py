"""Trainer methods inside the real loop, on CPU: regimes, clipping, accumulation, L2-SP,
early stopping, the three task types on fixture datasets and digits, pretrained
evaluation through a class map, and the eval / predict modes from the CLI."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from config_helpers import run_killed_after_first_epoch, tiny_config
from dataset_fixtures import make_hierarchical_csv, make_imagefolder, make_multilabel

import trainers
from orchestrator.cli.main import main
from trainers import rundir
from trainers.config import TrainConfig
from trainers.data.loaders import Transformed
from trainers.data.transforms import build_transform, resolve_preprocessing
from trainers.datasets import build_splits
from trainers.loop import epoch as epoch_module
from trainers.loop.build import Parts, build_parts, release_accelerator
from trainers.loop.epoch import train_one_epoch
from trainers.loop.resume import Progress

pytestmark = pytest.mark.filterwarnings("ignore:stratified split impossible")


def config(**fields: Any) -> TrainConfig:
    """Tiny CPU runs (config_helpers.tiny_config)."""
    return tiny_config(**fields)


@contextmanager
def built(cfg: TrainConfig, run_dir: Path) -> Iterator[Parts]:
    """A prepared run (no epoch trained yet); Accelerate's state released afterwards."""
    parts = build_parts(cfg, run_dir)
    try:
        yield parts
    finally:
        release_accelerator(parts.accelerator)


def pretrained(tmp_path: Path, backbone: str = "test_resnet", num_classes: int = 1000, seed: int = 1) -> str:
    torch.manual_seed(seed)
    path = tmp_path / f"{backbone}-{num_classes}.pth"
    torch.save(timm.create_model(backbone, num_classes=num_classes).state_dict(), path)
    return str(path)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def one_epoch(cfg: TrainConfig, run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Model state before and after one (capped) epoch."""
    with built(cfg, run_dir) as run:
        net = run.accelerator.unwrap_model(run.model)
        before = snapshot(net)
        train_one_epoch(run, 0, Progress())
        return before, snapshot(net)


# ---- regimes and optimisation details ----------------------------------------------------


def test_linear_probe_keeps_backbone_bit_identical(tmp_path: Path) -> None:
    weights = pretrained(tmp_path)
    before, after = one_epoch(config(regime="linear_probe", model__pretrained_path=weights), tmp_path / "probe")
    backbone = [k for k in before if k.startswith("backbone.")]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)  # weights and BN statistics
    assert any(k.startswith("backbone.") and "running_mean" in k for k in backbone)
    assert not torch.equal(before["heads.logits.0.weight"], after["heads.logits.0.weight"])
    before, after = one_epoch(config(model__pretrained_path=weights), tmp_path / "finetune")  # control
    assert not torch.equal(before["backbone.conv1.0.weight"], after["backbone.conv1.0.weight"])


def _update_norm(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    params = [k for k in before if before[k].is_floating_point() and "running" not in k]
    return float(torch.sqrt(sum(((after[k] - before[k]) ** 2).sum() for k in params)))


def test_gradient_clipping_bounds_the_step(tmp_path: Path) -> None:
    sgd = {"name": "sgd", "lr": 1.0, "momentum": 0.0}
    clipped = config(optim={**sgd, "grad_clip_norm": 1e-3}, max_steps_per_epoch=1)
    assert _update_norm(*one_epoch(clipped, tmp_path / "clip")) <= 1e-3 * 1.001
    assert _update_norm(*one_epoch(config(optim=sgd, max_steps_per_epoch=1), tmp_path / "free")) > 1e-2


def test_gradient_accumulation_equals_one_big_batch(tmp_path: Path) -> None:
    # LayerNorm only (no BatchNorm), no dropout: two micro-batches of 16 = one batch of 32.
    fields = {
        "model__backbone": "test_vit",
        "data__batch_size": 32,
        "optim": {"name": "sgd", "lr": 0.5, "momentum": 0.0},
    }
    fields |= {"max_steps_per_epoch": 1, "data__image_size_px": 16}
    start, big = one_epoch(config(**fields), tmp_path / "big")
    _, accumulated = one_epoch(config(**fields, distributed={"grad_accum_steps": 2}), tmp_path / "accum")
    _, small = one_epoch(config(**{**fields, "data__batch_size": 16}), tmp_path / "small")
    assert all(torch.allclose(big[k], accumulated[k], atol=1e-6) for k in big)
    assert not all(torch.allclose(big[k], small[k], atol=1e-6) for k in big)
    assert not torch.equal(start["backbone.head.weight"], accumulated["backbone.head.weight"])


def test_a_short_last_accumulation_window_steps_as_a_full_batch(tmp_path: Path) -> None:
    # 16 training images: batch 32 in 2 micro-batches of 16 leaves the epoch one window of a single
    # micro-batch, whose step must equal batch 16 without accumulation (it was half of it).
    fields = {
        "model__backbone": "test_vit",
        "data__dataset": {"name": "digits", "max_samples": 16},
        "data__image_size_px": 16,
        "optim": {"name": "sgd", "lr": 0.5, "momentum": 0.0},
    }
    start, plain = one_epoch(config(**fields, data__batch_size=16), tmp_path / "plain")
    _, short = one_epoch(config(**fields, data__batch_size=32, distributed={"grad_accum_steps": 2}), tmp_path / "short")
    assert _update_norm(start, plain) > 0.1
    assert all(torch.allclose(plain[k], short[k], atol=1e-6) for k in plain)


def test_l2sp_pulls_training_towards_pretrained(tmp_path: Path) -> None:
    weights = pretrained(tmp_path)
    fields = {"model__pretrained_path": weights, "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.0}}
    fields["max_steps_per_epoch"] = 3

    def drift(run_dir: Path, **extra: Any) -> float:
        before, after = one_epoch(config(**fields, **extra), run_dir)
        keys = [k for k in before if k.startswith("backbone.") and "fc." not in k and before[k].is_floating_point()]
        return float(
            sum(((after[k] - before[k]) ** 2).sum() for k in keys if "running" not in k and "num_batches" not in k)
        )

    free, anchored = drift(tmp_path / "free"), drift(tmp_path / "l2sp", loss={"l2sp": 2.0})
    assert 0 < anchored < 0.9 * free


# ---- early stopping, best checkpoint -------------------------------------------------------


def test_early_stopping_stops_and_evaluates_the_best_epoch(tmp_path: Path) -> None:
    # A min_delta nothing can beat: epoch 1 stays best, epoch 2 is the one without improvement.
    cfg = config(epochs=5, early_stopping={"metric": "val_loss", "patience": 1, "min_delta": 1e9})
    metrics = trainers.run(cfg, tmp_path)
    assert metrics["epochs_trained"] == 2 and metrics["stopped_early"] is True
    assert metrics["best_epoch"] == 1 and metrics["best"]["metric"] == "val_loss" and metrics["best"]["mode"] == "min"
    with (tmp_path / rundir.HISTORY).open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and rows[0]["val_loss"] != rows[1]["val_loss"]
    assert metrics["val"]["loss"] == pytest.approx(float(rows[0]["val_loss"]), rel=1e-6)  # best, not last
    again = trainers.run(cfg, tmp_path)  # the stop is part of the resumable state
    assert again["epochs_trained"] == 2 and again["test"] == metrics["test"]


def test_a_nan_validation_loss_is_recorded_but_never_selected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scored, epochs = epoch_module.evaluate, []

    def nan_in_epoch_2(parts: Parts, loader: Any) -> dict[str, Any]:
        """The epoch's validation, with a diverged model's loss in the second epoch."""
        val = scored(parts, loader)
        epochs.append(val)
        if len(epochs) == 2:
            val["loss"] = float("nan")
        return val

    monkeypatch.setattr(epoch_module, "evaluate", nan_in_epoch_2)
    cfg = config(epochs=2, early_stopping={"metric": "val_loss", "patience": 5})
    metrics = trainers.run(cfg, tmp_path / "run")
    with (tmp_path / "run" / rundir.HISTORY).open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["val_loss"] == "nan" and rows[0]["val_loss"] != "nan"
    assert metrics["best_epoch"] == 1 and metrics["best"]["value"] == pytest.approx(float(rows[0]["val_loss"]))


def test_without_a_validation_split_the_last_epoch_is_tested(tmp_path: Path) -> None:
    cfg = config(epochs=2, data__dataset={"name": "digits", "max_samples": 32, "val_fraction": 0.0})
    cfg = cfg.model_copy(update={"early_stopping": cfg.early_stopping.model_copy(update={"patience": 1})})
    metrics = trainers.run(cfg, tmp_path)
    assert metrics["val"] == {"n_images": 0} and metrics["epochs_trained"] == 2 and not metrics["stopped_early"]
    assert metrics["best_epoch"] == 2 and metrics["best"]["value"] is None


# ---- the three tasks ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fixtures")
    return {
        "hierarchical_csv": make_hierarchical_csv(root / "hier", per_class=5, with_test=True),
        "multilabel": make_multilabel(root / "multi", n_images=30),
        "imagefolder": make_imagefolder(root / "folder", per_class=6),
    }


@pytest.fixture(scope="module")
def hier_run(tmp_path_factory: pytest.TempPathFactory, fixtures: dict[str, Path]) -> Path:
    run_dir = tmp_path_factory.mktemp("hier_run")
    cfg = config(
        data__dataset={"name": "hierarchical_csv", "root": str(fixtures["hierarchical_csv"])},
        model__head={"hidden_dims": [32], "dropout": 0.2},
        loss={"class_weights": "balanced", "super_weight": 0.5},
        early_stopping={"metric": "val_loss", "patience": 3},
        epochs=2,
    )
    trainers.run(cfg, run_dir)
    return run_dir


def test_hierarchical_run_on_fixture_writes_per_level_metrics(hier_run: Path) -> None:
    metrics = json.loads((hier_run / rundir.METRICS).read_text())
    test = metrics["test"]
    assert metrics["task"] == "hierarchical" and test["n_images"] == 12
    assert test["top1"] == test["sub"]["top1"] and test["macro_f1"] == test["sub"]["macro_f1"]
    assert {"top1", "macro_f1", "micro_f1", "weighted_f1", "macro_precision"} <= set(test["super"])
    with (hier_run / "confusion_matrix_sub.csv").open() as handle:
        matrix = list(csv.DictReader(handle))
    assert [row["true \\ predicted"] for row in matrix][-1] == "novel"
    assert sum(int(v) for row in matrix for k, v in row.items() if k != "true \\ predicted") == 12
    assert (hier_run / "per_class_super.csv").is_file() and metrics["tables"][0] == "per_class_super.csv"
    header = (hier_run / rundir.HISTORY).read_text().splitlines()[0].split(",")
    assert header == [
        "epoch",
        "train_loss",
        "val_loss",
        "val_top1",
        "val_macro_f1",
        "train_super_loss",
        "train_sub_loss",
        "train_super.top1",
        "train_sub.top1",
        "val_super.loss",
        "val_sub.loss",
        "val_super.top1",
        "val_sub.top1",
        "lr",
        "epoch_s",
        "train_images_per_s",
    ]
    # Two heads of 32 hidden units: 3 super classes, 5 sub classes + the novel slot.
    features = timm.create_model("test_resnet", num_classes=0).num_features
    head_params = sum(features * 32 + 32 + 32 * n + n for n in (3, 6))
    assert (
        metrics["complexity"]["params"]
        == sum(p.numel() for p in timm.create_model("test_resnet", num_classes=0).parameters()) + head_params
    )


@pytest.mark.parametrize(
    ("dataset", "fields"),
    [
        ("imagefolder", {"loss": {"label_smoothing": 0.1}, "optim": {"name": "sgd", "lr": 0.01, "nesterov": True}}),
        ("multilabel", {"loss": {"name": "soft_margin"}, "optim": {"name": "adadelta", "lr": 0.5}, "threshold": 0.4}),
        (
            {"name": "digits", "task": "multilabel", "max_samples": 32},
            {"loss": {"name": "mse"}, "data__grayscale": True},
        ),
        (
            {"name": "digits", "task": "hierarchical", "novel_subclasses": ["9"], "max_samples": 32},
            {"model__head": {"hidden_dims": [16]}},
        ),
    ],
)
def test_task_runs_train(tmp_path: Path, fixtures: dict[str, Path], dataset: Any, fields: dict[str, Any]) -> None:
    if isinstance(dataset, str):
        dataset = {"name": dataset, "root": str(fixtures[dataset])}
    metrics = trainers.run(config(data__dataset=dataset, **fields), tmp_path)
    test = metrics["test"]
    if metrics["task"] == "multilabel":
        assert test["top1"] == test["exact_match"] and {"micro_f1", "macro_f1", "mean_label_accuracy"} <= set(test)
        assert test["threshold"] == fields.get("threshold", 0.5)
        assert sorted(metrics["tables"]) == ["per_label.csv", "per_label_confusion.csv"]
    elif metrics["task"] == "hierarchical":
        assert test["top1"] == test["sub"]["top1"] and "novel" in (tmp_path / "per_class_sub.csv").read_text()
    else:
        assert sorted(metrics["tables"]) == ["confusion_matrix.csv", "per_class.csv"] and "macro_f1" in test
    assert metrics["timing"]["train_images"] > 0 and 0 <= test["top1"] <= 1


# ---- pretrained model evaluated as-is through a class map (report 001) ----------------------


def test_pretrained_eval_with_class_map_scores_the_checkpoint(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps({str(d): [2 * d, 2 * d + 1] for d in range(10)}))
    path = tmp_path / "source.pth"
    cfg = config(regime="pretrained_eval", model__pretrained_path=str(path), model__class_map_path=str(pairs))
    splits = build_splits(cfg.data)
    transform = build_transform(resolve_preprocessing(cfg.data, cfg.model.backbone), train=False)

    def batch(images: Any) -> torch.Tensor:
        return torch.stack([image for image, _ in Transformed(images, transform)])

    # The known checkpoint: random features, a nearest-class-mean head over 20 source classes
    # (classes 2d and 2d+1 both stand for digit d), so its predictions vary and mean something.
    torch.manual_seed(3)
    source = timm.create_model("test_resnet", num_classes=20).eval()
    with torch.no_grad():
        features = source.forward_head(source.forward_features(batch(splits.train)), pre_logits=True)
        train_labels = torch.as_tensor(np.asarray(splits.train.targets))
        means = torch.stack([features[train_labels == d].mean(dim=0) for d in range(10)])
        source.fc.weight.copy_(torch.repeat_interleave(means, 2, dim=0) * torch.tensor([1.0, 0.9]).repeat(10)[:, None])
        source.fc.bias.copy_(-0.5 * (source.fc.weight**2).sum(dim=1))
    torch.save(source.state_dict(), path)
    metrics = trainers.run(cfg, tmp_path / "pairs")

    # The same numbers computed directly: source logits, max over each digit's two classes.
    images = batch(splits.test)
    with torch.no_grad():
        logits = source(images).reshape(len(images), 10, 2).amax(dim=2)
    predicted = logits.argmax(dim=1).numpy()
    labels = np.asarray(splits.test.targets)
    assert len(set(predicted.tolist())) >= 3  # not a constant classifier
    assert metrics["test"]["top1"] == pytest.approx(float((predicted == labels).mean()))
    assert metrics["epochs_trained"] == 0 and metrics["best_epoch"] == 0 and metrics["regime"] == "pretrained_eval"
    assert metrics["complexity"]["params"] == sum(p.numel() for p in source.parameters())

    # A permuted map scores what the confusion matrix of the first map predicts.
    with (tmp_path / "pairs" / "confusion_matrix.csv").open() as handle:
        confusion = np.array(
            [[int(v) for k, v in row.items() if k != "true \\ predicted"] for row in csv.DictReader(handle)]
        )
    shift = [(d + 1) % 10 for d in range(10)]  # digit d takes the classes of digit d+1
    shifted = tmp_path / "shifted.json"
    shifted.write_text(json.dumps({str(d): [2 * shift[d], 2 * shift[d] + 1] for d in range(10)}))
    cfg2 = cfg.model_copy(update={"model": cfg.model.model_copy(update={"class_map_path": str(shifted)})})
    permuted = trainers.run(cfg2, tmp_path / "shifted")
    # The new map predicts d exactly when the first predicted shift[d]: right for a true t when the
    # first map predicted shift[t], i.e. confusion[t, shift[t]] (rows true, columns predicted).
    expected = sum(confusion[t, shift[t]] for t in range(10)) / confusion.sum()
    assert permuted["test"]["top1"] == pytest.approx(expected)


# ---- modes: eval and predict on an existing run ---------------------------------------------


def test_eval_mode_reproduces_run_metrics_and_scores_other_sets(hier_run: Path, fixtures: dict[str, Path]) -> None:
    own = json.loads((hier_run / rundir.METRICS).read_text())
    dataset = f"{{name: hierarchical_csv, root: {fixtures['hierarchical_csv']}}}"
    assert main(["eval", str(hier_run), "--dataset", dataset, "--name", "again"]) == 0
    again = json.loads((hier_run / "eval" / "again" / rundir.METRICS).read_text())
    for key in ("top1", "macro_f1", "n_images"):
        assert again["test"][key] == pytest.approx(own["test"][key])
        assert again["test"]["super"][key] == pytest.approx(own["test"]["super"][key])
    assert (hier_run / "eval" / "again" / "confusion_matrix_sub.csv").is_file()
    assert main(["eval", str(hier_run), "--split", "val"]) == 0  # the run's own dataset by default
    assert json.loads(next((hier_run / "eval").glob("*-val/metrics.json")).read_text())["split"] == "val"
    assert main(["eval", str(hier_run), "--dataset", "digits"]) == 2  # other classes: a clear error


def test_predict_mode_writes_tsv(hier_run: Path, fixtures: dict[str, Path], tmp_path: Path) -> None:
    images = fixtures["hierarchical_csv"] / "test_images"
    out = tmp_path / "pred.tsv"
    assert main(["predict", str(hier_run), str(images), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open(), delimiter="\t"))
    assert len(rows) == len(list(images.glob("*.jpg")))
    assert list(rows[0])[:5] == ["image_id", "super", "super_p", "p_super_bird", "p_super_dog"]
    assert rows[0]["sub"] in {"hawk", "sparrow", "chihuahua", "beagle", "gecko", "novel"}
    probs = [float(rows[0][f"p_sub_{n}"]) for n in ("hawk", "sparrow", "chihuahua", "beagle", "gecko", "novel")]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4) and float(rows[0]["sub_p"]) == pytest.approx(max(probs), abs=1e-6)


def test_eval_and_predict_write_only_where_they_may(
    hier_run: Path, fixtures: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`eval --name ..` wrote eval/../metrics.json: over the run's own metrics.json. `predict --out`
    replaced a user's file, a FIFO or a link, and an existing folder was a traceback. Each is now one
    line before anything is computed, and nothing is touched."""
    own = (hier_run / rundir.METRICS).read_bytes()
    for name in ("..", "../escaped", str(tmp_path / "abs"), "a/b", ".hidden"):
        assert main(["eval", str(hier_run), "--name", name]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: eval ") and "a folder name of at most 64" in err and err.count("\n") == 1
    assert (hier_run / rundir.METRICS).read_bytes() == own and not (tmp_path / "abs").exists()
    images = fixtures["hierarchical_csv"] / "test_images"
    mine = tmp_path / "mine.tsv"
    mine.write_text("a user's own file\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.tsv"
    link.symlink_to(mine)
    for out in (mine, fifo, link, tmp_path):
        assert main(["predict", str(hier_run), str(images), "--out", str(out)]) == 2, out
        assert "exists; not overwritten" in capsys.readouterr().err
    assert mine.read_text() == "a user's own file\n" and fifo.is_fifo() and link.is_symlink()


def test_predict_multilabel_threshold(tmp_path: Path, fixtures: dict[str, Path]) -> None:
    run_dir = tmp_path / "run"
    trainers.run(config(data__dataset={"name": "multilabel", "root": str(fixtures["multilabel"])}), run_dir)
    images = fixtures["multilabel"] / "images"
    assert main(["predict", str(run_dir), str(images), "--threshold", "0.01"]) == 0
    rows = list(csv.DictReader((run_dir / "predictions" / "images.tsv").open(), delimiter="\t"))
    assert len(rows) == 30 and rows[0]["image_id"].startswith("im")
    assert all(row["labels"] == "bird,car,sea" for row in rows)  # every sigmoid is above 0.01
    assert main(["predict", str(run_dir), str(images), "--threshold", "0.99", "--out", str(tmp_path / "high.tsv")]) == 0
    high = list(csv.DictReader((tmp_path / "high.tsv").open(), delimiter="\t"))
    assert sum(bool(row["labels"]) for row in high) < 30


def test_resume_is_exact_with_methods_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hierarchical + SCRA + L2-SP + accumulation + clipping + early-stopping state across a kill.
    cfg = config(
        data__dataset={"name": "digits", "task": "hierarchical", "max_samples": 32},
        model__pretrained_path=pretrained(tmp_path),
        model__insert=[{"module": "scra", "after_stage": 2}],
        model__head_dropout=0.3,
        loss={"l2sp": 0.01, "class_weights": "balanced"},
        optim={"name": "adamw", "lr": 3e-3, "grad_clip_norm": 1.0},
        distributed={"grad_accum_steps": 2},
        early_stopping={"metric": "val_loss", "patience": 5},
        epochs=2,
    )
    straight = trainers.run(cfg, tmp_path / "straight")
    run_killed_after_first_epoch(cfg, tmp_path / "resumed", monkeypatch)
    resumed = trainers.run(cfg, tmp_path / "resumed")
    assert resumed["test"] == straight["test"] and resumed["val"] == straight["val"]
    assert (tmp_path / "resumed" / rundir.HISTORY).read_text().split("\n")[1].split(",")[:3] == (
        (tmp_path / "straight" / rundir.HISTORY).read_text().split("\n")[1].split(",")[:3]
    )
    assert straight["complexity"]["inserts"][0]["at"] == "layer1"
