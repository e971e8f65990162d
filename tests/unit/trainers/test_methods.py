"""Trainer methods, piece by piece (no training loop): heads, losses and class weights,
multilabel losses and threshold, optimizers and schedules, augmentation policies, SCRA,
L2-SP, class maps, input size, and the metrics of each task."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from config_helpers import config_with
from PIL import Image
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import v2

from trainers.config import TrainConfig
from trainers.data.transforms import build_transform
from trainers.loop.early_stopping import Selection
from trainers.loop.epoch import loss_divisor, window_size
from trainers.loop.metrics import evaluate_outputs, metric_names
from trainers.loop.optim import build_optimizer, build_scheduler
from trainers.loop.resume import Progress
from trainers.model.build import Classifier, backbone_parameters, build_model, count_params, read_class_map
from trainers.model.complexity import complexity
from trainers.model.l2sp import L2SP
from trainers.model.losses import MULTILABEL_LOSSES, balanced_class_weights, build_criterion
from trainers.model.regimes import apply_regime
from trainers.model.scra import SCRA
from trainers.model.tasks import TaskSpec, single

HIER = TaskSpec("hierarchical", ("a", "b", "c", "d"), ("x", "y"), novel_slot=True)
MULTI = TaskSpec("multilabel", ("p", "q", "r"))


def cfg(**fields: Any) -> TrainConfig:
    """A TrainConfig from dotted keys, on tiny inputs."""
    data: dict[str, Any] = {"model": {"backbone": "test_resnet"}, "data": {"image_size_px": 16}}
    return config_with(data, fields)


def save_backbone(tmp_path: Path, backbone: str = "test_resnet", num_classes: int = 1000, seed: int = 1) -> Path:
    """A local 'pretrained' checkpoint: a timm state dict file."""
    torch.manual_seed(seed)
    path = tmp_path / f"{backbone}_{num_classes}.pth"
    torch.save(timm.create_model(backbone, num_classes=num_classes).state_dict(), path)
    return path


# ---- heads -------------------------------------------------------------------------------


def test_hierarchical_heads_have_report_000_shape_and_novel_slot() -> None:
    net = build_model(cfg(model__head={"hidden_dims": [512], "dropout": 0.3}, model__head_dropout=0.1), HIER)
    assert net.heads is not None and list(net.heads) == ["super", "sub"]
    features = net.backbone.num_features
    for name, width in (("super", 2), ("sub", 5)):  # sub: 4 classes + the novel slot
        layers = list(net.heads[name])
        assert [type(m) for m in layers] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
        assert (layers[0].in_features, layers[0].out_features) == (features, 512)
        assert layers[2].p == 0.3 and layers[3].out_features == width
    assert net.feature_dropout is not None and net.feature_dropout.p == 0.1
    headless = timm.create_model("test_resnet", num_classes=0)
    expected = count_params(headless) + sum(features * 512 + 512 + 512 * w + w for w in (2, 5))
    assert count_params(net) == expected
    net.eval()
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 7)


def test_single_linear_head_is_timm_classifier_and_custom_head_dropout_acts() -> None:
    native = build_model(cfg(), single(10))
    assert native.heads is None and native.backbone.get_classifier().out_features == 10
    net = build_model(cfg(model__head={"hidden_dims": [16]}, model__head_dropout=0.8), single(10))
    assert net.heads is not None and net.feature_dropout is not None
    seen: list[torch.Tensor] = []
    net.heads["logits"].register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    images = torch.randn(4, 3, 16, 16)
    net.eval()
    net(images)
    net.train()
    net.backbone.eval()  # same pooled features; only the head dropout is in train mode
    net(images)
    clean, dropped = seen
    kept = dropped != 0
    assert 0.05 < kept.float().mean() < 0.4  # p = 0.8
    assert torch.allclose(dropped[kept], 5 * clean[kept])


# ---- losses ------------------------------------------------------------------------------


def test_balanced_class_weights_match_sklearn_and_novel_gets_mean() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2, 3, 3, 3, 3])
    expected = compute_class_weight("balanced", classes=np.arange(4), y=labels)
    weights = balanced_class_weights(labels, num_outputs=5)
    assert np.allclose(weights[:4], expected)
    assert weights[4] == pytest.approx(expected.mean())


def test_hierarchical_loss_is_weighted_sum_of_weighted_cross_entropies() -> None:
    targets = torch.tensor([[0, 0], [0, 1], [1, 2], [1, 3], [1, 3], [0, 0]])
    loss_cfg = cfg(loss={"class_weights": "balanced", "super_weight": 0.3, "sub_weight": 2.0}).loss
    criterion = build_criterion(loss_cfg, HIER, targets.numpy())
    torch.manual_seed(0)
    outputs = torch.randn(6, 7)
    w_super = torch.tensor(compute_class_weight("balanced", classes=np.arange(2), y=targets[:, 0].numpy()))
    sub = compute_class_weight("balanced", classes=np.arange(4), y=targets[:, 1].numpy())
    w_sub = torch.tensor([*sub, sub.mean()])
    expected = 0.3 * F.cross_entropy(outputs[:, :2], targets[:, 0], weight=w_super.float()) + 2.0 * F.cross_entropy(
        outputs[:, 2:], targets[:, 1], weight=w_sub.float()
    )
    assert float(criterion(outputs, targets)) == pytest.approx(float(expected), rel=1e-6)
    unweighted = build_criterion(cfg().loss, HIER, targets.numpy())
    plain = F.cross_entropy(outputs[:, :2], targets[:, 0]) + F.cross_entropy(outputs[:, 2:], targets[:, 1])
    assert float(unweighted(outputs, targets)) == pytest.approx(float(plain), rel=1e-6)


def test_label_smoothing_changes_single_label_loss() -> None:
    outputs, labels = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([0])
    plain = build_criterion(cfg().loss, single(3), labels.numpy())
    smooth = build_criterion(cfg(loss={"label_smoothing": 0.2}).loss, single(3), labels.numpy())
    assert float(smooth(outputs, labels)) == pytest.approx(float(F.cross_entropy(outputs, labels, label_smoothing=0.2)))
    assert float(smooth(outputs, labels)) > float(plain(outputs, labels))


@pytest.mark.parametrize("name", ["bce", "soft_margin", "mse", "l1"])
def test_multilabel_losses(name: str) -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.2, 1.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    reference = {
        "bce": nn.BCELoss()(torch.sigmoid(logits), targets),
        "soft_margin": nn.MultiLabelSoftMarginLoss()(logits, targets),
        "mse": nn.MSELoss()(torch.sigmoid(logits), targets),
        "l1": nn.L1Loss()(torch.sigmoid(logits), targets),
    }[name]
    criterion = build_criterion(cfg(loss={"name": name}).loss, MULTI, targets.numpy())
    assert float(criterion(logits, targets)) == pytest.approx(float(reference), rel=1e-5)
    assert set(MULTILABEL_LOSSES) == {"bce", "soft_margin", "mse", "l1"}


def test_loss_task_mismatches_are_errors() -> None:
    with pytest.raises(ValueError, match="multilabel only"):
        build_criterion(cfg(loss={"name": "bce"}).loss, single(3), np.array([0, 1]))
    with pytest.raises(ValueError, match="not a multilabel loss"):
        build_criterion(cfg(loss={"name": "cross_entropy"}).loss, MULTI, np.zeros((2, 3), np.float32))


# ---- metrics -----------------------------------------------------------------------------


def test_multilabel_metrics_follow_threshold_and_sklearn() -> None:
    probs = np.array([[0.9, 0.45, 0.1], [0.2, 0.6, 0.45], [0.7, 0.3, 0.8]])
    logits = np.log(probs / (1 - probs))
    truth = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 1]], dtype=np.float32)
    strict = evaluate_outputs(MULTI, logits, truth, threshold=0.5)
    loose = evaluate_outputs(MULTI, logits, truth, threshold=0.4)
    # 0.5: row 0 misses label q; 0.4: row 0 is right, row 1 gains a wrong r.
    assert (
        strict.scalars["exact_match"] == pytest.approx(2 / 3)
        and strict.scalars["top1"] == strict.scalars["exact_match"]
    )
    assert loose.scalars["exact_match"] == pytest.approx(2 / 3)
    predicted = (probs >= 0.5).astype(int)
    assert strict.scalars["micro_f1"] == pytest.approx(f1_score(truth, predicted, average="micro"))
    assert strict.scalars["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert strict.scalars["mean_label_accuracy"] == pytest.approx((predicted == truth).mean())
    matrix = {row["label"]: row for row in strict.tables["per_label_confusion"]}
    assert (matrix["q"]["tp"], matrix["q"]["fn"], matrix["q"]["tn"], matrix["q"]["fp"]) == (1, 1, 1, 0)
    assert [row["label"] for row in strict.tables["per_label"]] == ["p", "q", "r"]


def test_hierarchical_metrics_per_level_and_top1_is_sub() -> None:
    targets = np.array([[0, 0], [0, 1], [1, 2], [1, 4]])  # the last image is novel
    outputs = np.full((4, 7), -5.0)
    outputs[[0, 1, 2, 3], [0, 0, 1, 0]] = 5.0  # super: 3 of 4 right
    outputs[[0, 1, 2, 3], [2 + 0, 2 + 0, 2 + 2, 2 + 4]] = 5.0  # sub: 3 of 4 right (novel found)
    result = evaluate_outputs(HIER, outputs, targets, loss=1.5)
    assert result.scalars["super"]["top1"] == 0.75 and result.scalars["sub"]["top1"] == 0.75
    assert result.scalars["top1"] == result.scalars["sub"]["top1"] and result.scalars["loss"] == 1.5
    assert result.scalars["macro_f1"] == result.scalars["sub"]["macro_f1"]
    assert set(result.tables) == {"per_class_super", "confusion_matrix_super", "per_class_sub", "confusion_matrix_sub"}
    sub_matrix = result.tables["confusion_matrix_sub"]
    assert [row["true \\ predicted"] for row in sub_matrix] == ["a", "b", "c", "d", "novel"]
    assert sub_matrix[4]["novel"] == 1 and sub_matrix[1]["a"] == 1
    assert {"val_super.top1", "val_sub.macro_f1"} <= {f"val_{n}" for n in metric_names(HIER)}


def test_single_label_metrics_keys_and_top5() -> None:
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=(40, 8)), rng.integers(0, 8, 40)
    scalars = evaluate_outputs(single(8), scores, labels).scalars
    assert {"top1", "top5", "macro_f1", "micro_f1", "weighted_f1", "macro_precision", "micro_recall"} <= set(scalars)
    assert "top5" not in evaluate_outputs(single(4), scores[:, :4], labels % 4).scalars


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_macro_scores_leave_out_a_class_absent_from_the_split_but_predicted() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])  # class 3 has no image in this split
    predictions = np.array([0, 3, 1, 1, 2, 0])  # ... and is predicted once
    scores = np.eye(4)[predictions]
    scalars = evaluate_outputs(single(4), scores, labels).scalars
    present = [0, 1, 2]
    assert scalars["macro_f1"] == pytest.approx(f1_score(labels, predictions, labels=present, average="macro"))
    assert scalars["macro_f1"] > f1_score(labels, predictions, average="macro")  # which counted class 3 as a 0
    assert scalars["macro_precision"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert scalars["macro_recall"] == pytest.approx(balanced_accuracy_score(labels, predictions)) == 4 / 6
    assert scalars["micro_f1"] == pytest.approx(scalars["top1"]) == pytest.approx(4 / 6)  # every prediction counts


def test_multilabel_macro_scores_leave_out_a_label_without_positive_in_the_split() -> None:
    truth = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=np.float32)  # no image has r
    predicted = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 0]])  # ... and r is predicted once
    logits = np.where(predicted == 1, 5.0, -5.0)
    result = evaluate_outputs(MULTI, logits, truth)
    scalars = result.scalars
    expected = precision_recall_fscore_support(truth, predicted, labels=[0, 1], average="macro")[:3]
    assert [scalars[f"macro_{name}"] for name in ("precision", "recall", "f1")] == pytest.approx(expected)
    assert scalars["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert scalars["macro_f1"] > f1_score(truth, predicted, average="macro", zero_division=0)  # r counted as a 0
    assert scalars["micro_f1"] == pytest.approx(f1_score(truth, predicted, average="micro"))  # r's false positive
    assert [(row["label"], row["support"]) for row in result.tables["per_label"]] == [("p", 2), ("q", 2), ("r", 0)]
    # A label the model never predicts either was a 0 too: the macro is now the same as without it.
    never = evaluate_outputs(MULTI, np.where(truth == 1, 5.0, -5.0), truth).scalars
    assert never["macro_f1"] == never["macro_precision"] == never["macro_recall"] == 1.0


def test_multilabel_macro_scores_of_a_split_without_any_positive_stay_finite() -> None:
    truth = np.zeros((3, 3), dtype=np.float32)  # e.g. a capped split of digit-1 images only
    scalars = evaluate_outputs(MULTI, np.full((3, 3), -5.0), truth).scalars
    assert (scalars["macro_f1"], scalars["exact_match"]) == (0.0, 1.0)


def test_selection_mode_and_unknown_metric() -> None:
    names = single(3).kind
    loss = Selection.from_config(cfg(early_stopping={"metric": "val_loss"}).early_stopping, names)
    assert loss.mode == "min" and loss.improved(0.5, 0.6) and not loss.improved(0.6, 0.6)
    top1 = Selection.from_config(cfg(early_stopping={"metric": "val_top1", "min_delta": 0.1}).early_stopping, names)
    assert top1.mode == "max" and not top1.improved(0.65, 0.6) and top1.improved(0.75, 0.6)
    with pytest.raises(ValueError, match="val_macro_f1"):
        Selection.from_config(cfg(early_stopping={"metric": "val_super.top1"}).early_stopping, names)


def progress_over(values: list[float | None], patience: int | None = 3) -> list[Progress]:
    """Progress after each epoch validated at `values` of a min metric."""
    selection, progress, seen = Selection("val_loss", "min", patience, 0.0), Progress(), []
    for epoch, value in enumerate(values):
        progress = progress.after_epoch(epoch, value, selection)
        seen.append(progress)
    return seen


def test_a_nan_validation_score_is_never_the_best_and_counts_toward_patience() -> None:
    seen = progress_over([1.0, 0.5, math.nan, 0.9, 0.8, 0.7, 0.6])
    assert [p.best_epoch for p in seen] == [1, 2, 2, 2, 2, 2, 2] and seen[-1].best_value == 0.5
    assert [p.epochs_since_best for p in seen[:5]] == [0, 0, 1, 2, 3]
    assert [p.stopped_early for p in seen[:5]] == [False, False, False, False, True]


def test_nan_from_the_first_epoch_keeps_a_model_to_test_until_a_real_value() -> None:
    seen = progress_over([math.nan, math.nan, 0.9, math.nan], patience=None)
    assert [(p.best_epoch, p.best_value) for p in seen] == [(1, None), (1, None), (3, 0.9), (3, 0.9)]
    assert [p.epochs_since_best for p in seen] == [1, 2, 0, 1]


def test_without_a_validation_split_the_latest_epoch_is_the_best() -> None:
    selection = Selection("val_loss", "min", 1, 0.0)
    assert selection.value({"n_images": 0}) is None  # an empty split, not a NaN score
    assert selection.value({"n_images": 4, "loss": math.nan}) != selection.value({"n_images": 4, "loss": math.nan})
    seen = progress_over([selection.value({"n_images": 0})] * 3, patience=1)
    assert [(p.best_epoch, p.best_value, p.epochs_since_best, p.stopped_early) for p in seen] == [
        (1, None, 0, False),
        (2, None, 0, False),
        (3, None, 0, False),
    ]


# ---- optimizers and schedules ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "extra"),
    [
        ("adam", torch.optim.Adam, {}),
        ("adamw", torch.optim.AdamW, {}),
        ("sgd", torch.optim.SGD, {"nesterov": True}),
        ("adamax", torch.optim.Adamax, {}),
        ("adadelta", torch.optim.Adadelta, {}),
    ],
)
def test_optimizers_step(name: str, kind: type, extra: dict[str, Any]) -> None:
    layer = nn.Linear(3, 2)
    frozen = nn.Parameter(torch.ones(2), requires_grad=False)
    optimizer = build_optimizer([*layer.parameters(), frozen], cfg(optim={"name": name, "lr": 0.1, **extra}).optim)
    assert type(optimizer) is kind and len(optimizer.param_groups[0]["params"]) == 2  # frozen left out
    if name == "sgd":
        assert optimizer.param_groups[0]["nesterov"] is True
    before = layer.weight.detach().clone()
    layer(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, layer.weight)


def test_accumulation_windows_of_an_epoch() -> None:
    # 5 micro-batches in windows of 2: [0 1] [2 3] [4], the last one short.
    assert [window_size(index, 2, 5) for index in range(5)] == [2, 2, 2, 2, 1]
    assert [window_size(index, 3, 3) for index in range(3)] == [3, 3, 3]
    # DeepSpeed divides by its accumulation steps itself: only a short window is left to correct.
    assert loss_divisor(1, 2, deepspeed=False) == 1.0 and loss_divisor(2, 2, deepspeed=False) == 2.0
    assert loss_divisor(2, 2, deepspeed=True) == 1.0 and loss_divisor(1, 4, deepspeed=True) == 0.25


def test_step_schedule_of_report_004() -> None:
    optimizer = torch.optim.Adam(nn.Linear(2, 2).parameters(), lr=1e-4)
    config = cfg(schedule={"name": "step", "step_epochs": 5, "gamma": 0.1})
    scheduler = build_scheduler(optimizer, config.schedule, epochs=30)
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert (
        lrs[:5] == pytest.approx([1e-4] * 5)
        and lrs[5:10] == pytest.approx([1e-5] * 5)
        and lrs[10] == pytest.approx(1e-6)
    )


# ---- augmentation --------------------------------------------------------------------------


def test_fgvc_policy_is_report_004_and_fields_override() -> None:
    augment = cfg(data__augment={"policy": "fgvc"}).data.augment
    assert augment is not None
    assert (augment.hflip_p, augment.rotate_deg, augment.rotate_p) == (0.25, 15.0, 0.25)
    assert augment.color_jitter == (0.25, 0.25, 0.25, 0.05)
    transform = build_transform(cfg(data__augment={"policy": "fgvc"}).data, train=True)
    steps = {type(t): t for t in transform.transforms}
    assert steps[v2.RandomHorizontalFlip].p == 0.25
    rotate = steps[v2.RandomApply]
    assert rotate.p == 0.25 and rotate.transforms[0].degrees == [-15.0, 15.0]
    jitter = steps[v2.ColorJitter]
    assert jitter.brightness == jitter.contrast == jitter.saturation == (0.75, 1.25)
    assert jitter.hue == (-0.05, 0.05)
    override = cfg(data__augment={"policy": "fgvc", "hflip_p": 0.5}).data.augment
    assert override is not None and override.hflip_p == 0.5 and override.rotate_deg == 15.0


def test_keras_policy_shifts_shears_zooms_and_changes_images() -> None:
    data = cfg(data__augment={"policy": "keras"}, data__image_size_px=24).data
    affine = next(t for t in build_transform(data, train=True).transforms if isinstance(t, v2.RandomAffine))
    assert tuple(affine.translate) == (0.2, 0.2) and tuple(affine.scale) == (0.8, 1.2)
    assert list(affine.shear) == [-0.2, 0.2]  # Keras shear_range is in degrees
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8))
    torch.manual_seed(0)
    augmented = [build_transform(data, train=True)(image) for _ in range(3)]
    clean = build_transform(data, train=False)(image)
    assert all(not torch.allclose(a, clean) for a in augmented)


# ---- SCRA ----------------------------------------------------------------------------------


def test_scra_adds_exactly_its_conv_after_convnext_stage_1_and_its_flops() -> None:
    base = complexity(cfg(model__backbone="test_convnext", data__image_size_px=32), single(5))
    scra = cfg(
        model__backbone="test_convnext", data__image_size_px=32, model__insert=[{"module": "scra", "after_stage": 1}]
    )
    counted = complexity(scra, single(5))
    channels = 24  # test_convnext stages.0, stride 4: an 8x8 map at 32 px
    assert counted["params"] - base["params"] == channels * channels + channels
    assert counted["inserts"] == [{"module": "scra", "after_stage": 1, "at": "stages.0", "channels": 24}]
    assert round((counted["gflops"] - base["gflops"]) * 1e9) == 2 * channels * channels * 8 * 8
    real = build_model(scra, single(5))
    assert count_params(real) == counted["params"]  # the meta count is the trained model


def test_scra_gates_the_stage_output() -> None:
    torch.manual_seed(0)
    net = build_model(
        cfg(model__backbone="test_convnext", model__insert=[{"module": "scra", "after_stage": 2}]), single(3)
    )
    module = net.inserts["scra_0"]
    assert isinstance(module, SCRA) and module.channels == 32  # stages.1
    seen: list[torch.Tensor] = []
    net.backbone.stages[2].register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    nn.init.zeros_(module.conv.weight)
    images = torch.randn(1, 3, 32, 32)
    net.eval()
    with torch.no_grad():
        nn.init.constant_(module.conv.bias, 50.0)  # gate = 1: the stage output passes unchanged
        net(images)
        nn.init.zeros_(module.conv.bias)  # gate = 0.5
        net(images)
    open_gate, half_gate = seen
    assert torch.allclose(half_gate, 0.5 * open_gate, atol=1e-6)


def test_scra_on_vit_tokens_and_bad_stage() -> None:
    net = build_model(
        cfg(model__backbone="test_vit", data__image_size_px=32, model__insert=[{"module": "scra", "after_stage": 3}]),
        single(3),
    )
    net.eval()
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"1: act1 .*5: layer4"):
        build_model(cfg(model__insert=[{"module": "scra", "after_stage": 6}]), single(3))


def test_scra_keeps_pretrained_names(tmp_path: Path) -> None:
    path = save_backbone(tmp_path, "test_convnext")
    config = cfg(
        model__backbone="test_convnext",
        model__pretrained_path=str(path),
        model__insert=[{"module": "scra", "after_stage": 1}],
    )
    net = build_model(config, single(4))
    source = torch.load(path)
    assert torch.equal(net.backbone.stages[1].downsample[1].weight, source["stages.1.downsample.1.weight"])


# ---- L2-SP and regimes -----------------------------------------------------------------------


def test_l2sp_penalty_zero_at_pretrained_and_quadratic_away(tmp_path: Path) -> None:
    config = cfg(model__pretrained_path=str(save_backbone(tmp_path)), loss={"l2sp": 0.01})
    net = build_model(config, single(4))
    penalty = L2SP(net, strength=0.01)
    assert penalty().item() == 0.0
    named = dict(backbone_parameters(net))
    assert "fc.weight" not in named and "conv1.0.weight" in named
    with torch.no_grad():
        net.backbone.fc.weight.add_(1.0)  # the new head is not anchored
    assert penalty().item() == 0.0
    with torch.no_grad():
        net.backbone.conv1[0].weight.add_(0.1)
    one = penalty().item()
    assert one == pytest.approx(0.01 * 0.1**2 * net.backbone.conv1[0].weight.numel(), rel=1e-4)
    with torch.no_grad():
        net.backbone.conv1[0].weight.add_(0.1)
    assert penalty().item() == pytest.approx(4 * one, rel=1e-4)
    penalty().backward()
    assert net.backbone.conv1[0].weight.grad is not None and float(net.backbone.conv1[0].weight.grad.abs().sum()) > 0


def test_linear_probe_freezes_backbone_only(tmp_path: Path) -> None:
    config = cfg(model__pretrained_path=str(save_backbone(tmp_path)), regime="linear_probe")
    net = build_model(config, single(4))
    apply_regime(net, config)
    assert net.heads is not None  # our head, so the frozen backbone can stay in eval mode
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"heads.logits.0.weight", "heads.logits.0.bias"}


# ---- class maps, input size ----------------------------------------------------------------


def test_class_map_file(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"tench": 0, "church": [497, 498]}))
    assert read_class_map(path, ("tench", "church"), 1000) == [[0], [497, 498]]
    with pytest.raises(ValueError, match=r"not mapped.*golf"):
        read_class_map(path, ("tench", "church", "golf"), 1000)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        read_class_map(path, ("tench", "church"), 10)


def test_pretrained_eval_model_maps_source_logits(tmp_path: Path) -> None:
    path = save_backbone(tmp_path, num_classes=6)
    class_map = tmp_path / "map.json"
    class_map.write_text(json.dumps({"a": [4, 1], "b": 0}))
    config = cfg(regime="pretrained_eval", model__pretrained_path=str(path), model__class_map_path=str(class_map))
    task = TaskSpec("single", ("a", "b"))
    net = build_model(config, task)
    source = timm.create_model("test_resnet", num_classes=6)
    source.load_state_dict(torch.load(path))
    images = torch.randn(3, 3, 16, 16)
    net.eval()
    source.eval()
    with torch.no_grad():
        raw = source(images)
        assert torch.equal(net(images), torch.stack([raw[:, [4, 1]].amax(dim=1), raw[:, 0]], dim=1))
    assert complexity(config, task)["params"] == count_params(net)


def test_vit_is_built_for_the_run_image_size() -> None:
    net = build_model(cfg(model__backbone="test_vit", data__image_size_px=48), single(3))
    assert tuple(net.backbone.patch_embed.img_size) == (48, 48)
    small = complexity(cfg(model__backbone="test_vit", data__image_size_px=32), single(3))
    big = complexity(cfg(model__backbone="test_vit", data__image_size_px=64), single(3))
    assert big["gflops"] > 3 * small["gflops"]
    assert isinstance(net, Classifier) and net(torch.zeros(1, 3, 48, 48)).shape == (1, 3)
