"""Review of the training loop and model code: each test pins a bug a researcher was hurt by."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import timm
import torch
from config_helpers import config_with

from trainers.config import ScheduleConfig, TrainConfig
from trainers.loop.metrics import evaluate_outputs, ranking_scores
from trainers.loop.optim import build_scheduler
from trainers.model.build import Classifier, build_model, count_params
from trainers.model.complexity import complexity
from trainers.model.scra import SCRA
from trainers.model.tasks import TaskSpec, single

# ---- a diverged model's validation ----------------------------------------------------------


def test_nan_outputs_of_a_diverged_model_are_scored_not_a_crash() -> None:
    # More than 5 classes, so top-5 is computed: scikit-learn's top_k_accuracy_score raised
    # "Input contains NaN", which killed the run at validation instead of letting the NaN loss
    # count as no improvement (early stopping and the best checkpoint handle that).
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(12, 8)).astype(np.float32)
    labels = scores.argmax(axis=1)
    scores[:4] = np.nan  # four images whose logits overflowed
    scores[4, 0] = np.inf
    scalars = evaluate_outputs(single(8), scores, labels, loss=math.nan).scalars
    assert math.isnan(scalars["loss"])
    assert 0.0 <= scalars["top1"] <= scalars["top5"] <= 1.0
    assert scalars["n_images"] == 12


def test_nan_outputs_of_a_hierarchical_model_are_scored_per_level() -> None:
    task = TaskSpec("hierarchical", tuple("abcdefg"), ("x", "y"), novel_slot=True)
    outputs = np.full((6, task.num_outputs), np.nan, dtype=np.float32)
    targets = np.stack([np.arange(6) % 2, np.arange(6) % 8], axis=1)
    scalars = evaluate_outputs(task, outputs, targets, loss=math.nan).scalars
    assert set(scalars["sub"]) >= {"top1", "top5", "macro_f1"}


def test_a_nan_score_never_wins_the_argmax() -> None:
    # numpy's argmax returns the first NaN: a NaN logit was a confident prediction of its class.
    scores = np.array([[np.nan, 0.1, 0.9], [-np.inf, 2.0, np.inf]], dtype=np.float32)
    ranked = ranking_scores(scores)
    assert np.isfinite(ranked).all()
    assert ranked.argmax(axis=1).tolist() == [2, 2]
    finite = np.array([[0.3, 0.1]], dtype=np.float32)
    assert ranking_scores(finite) is finite  # finite scores are untouched (no copy)


@pytest.mark.parametrize("width", [3, 8])
def test_finite_scores_give_the_same_metrics_as_before(width: int) -> None:
    rng = np.random.default_rng(1)
    scores, labels = rng.normal(size=(30, width)), rng.integers(0, width, 30)
    scalars = evaluate_outputs(single(width), scores, labels).scalars
    assert scalars["top1"] == pytest.approx(float((scores.argmax(axis=1) == labels).mean()))


# ---- heads on backbones whose timm head has a hidden layer -----------------------------------


def model_config(**fields: Any) -> TrainConfig:
    """A TrainConfig from dotted keys (test_mambaout: its head widens 64 channels to 256)."""
    return config_with({"model": {"backbone": "test_mambaout"}, "data": {"image_size_px": 32}}, fields)


@pytest.mark.parametrize(
    ("fields", "task"),
    [
        ({"model__head": {"hidden_dims": [16]}}, single(3)),
        ({"regime": "linear_probe"}, single(3)),
        ({}, TaskSpec("hierarchical", ("a", "b", "c"), ("x", "y"), novel_slot=True)),
    ],
    ids=["mlp_head", "linear_probe", "hierarchical"],
)
def test_our_heads_take_the_width_the_headless_backbone_outputs(fields: dict[str, Any], task: TaskSpec) -> None:
    # MobileNetV3 and relatives: num_features is the last feature map's channels, but the headless
    # model outputs its head's hidden layer (timm's head_hidden_size). Heads built for num_features
    # failed at the first batch (a linear probe of MobileNetV3 could not train at all) and the
    # complexity count failed with them.
    cfg = model_config(**fields)
    torch.manual_seed(0)
    net = build_model(cfg, task).eval()
    assert net.backbone.num_features != net.backbone.head_hidden_size  # the case this test is about
    with torch.no_grad():
        outputs = net(torch.zeros(2, 3, 32, 32))
    assert outputs.shape == (2, task.num_outputs)
    counted = complexity(cfg, task)
    assert counted["params"] == count_params(net) and counted["gflops"] > 0


# ---- schedules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["step", "none"])
def test_a_warmup_the_schedule_does_not_have_is_refused_not_ignored(name: str) -> None:
    # Only cosine warms up; step and none dropped warmup_epochs silently while the run's config
    # (and its table row) said it warmed up.
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="cosine schedule only"):
        build_scheduler(optimizer, ScheduleConfig(name=name, warmup_epochs=2), epochs=10)
    build_scheduler(optimizer, ScheduleConfig(name=name), epochs=10)  # without a warm-up: as before


def test_cosine_warmup_ramps_the_first_epochs() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    scheduler = build_scheduler(optimizer, ScheduleConfig(name="cosine", warmup_epochs=2), epochs=6)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:3] == pytest.approx([0.1, 0.2, 0.3])
    assert lrs[3] > lrs[4] > lrs[5] > 0


# ---- SCRA on channels-last stages ------------------------------------------------------------


def scra_hook(net: Classifier, stage: str) -> Any:
    """The forward hook `attach` put on `stage` of the model's backbone (the insert's entry point)."""
    (hook,) = net.backbone.get_submodule(stage)._forward_hooks.values()
    return hook


@pytest.mark.parametrize("height", [16, 8], ids=["height_equals_channels", "height_differs"])
def test_scra_gates_the_channels_of_an_nhwc_stage_whatever_its_height(height: int) -> None:
    # test_mambaout's stages are NHWC with 16 channels after stage 1. With height 16 SCRA read the
    # map as NCHW (shape [n, 16, 16, 16]) and gated along the height: no error, a wrong model.
    cfg = model_config(model__insert=[{"module": "scra", "after_stage": 1}])
    net = build_model(cfg, single(3))
    scra = cast(SCRA, net.inserts["scra_0"])
    stage_output = torch.randn(2, height, height, 16)  # NHWC, as the stage hands it over
    weight = scra.conv.weight.view(16, 16)
    bias = cast(torch.Tensor, scra.conv.bias)
    expected = stage_output * torch.sigmoid(stage_output @ weight.T + bias)
    with torch.no_grad():
        gated = scra_hook(net, "stages.0")(None, (), stage_output)
    assert gated.shape == stage_output.shape
    assert torch.allclose(gated, expected, atol=1e-6)


def test_scra_on_an_nchw_stage_is_unchanged() -> None:
    cfg = config_with(
        {"model": {"backbone": "test_resnet", "insert": [{"module": "scra", "after_stage": 2}]}},
        {"data__image_size_px": 32},
    )
    net = build_model(cfg, single(3))
    scra = cast(SCRA, net.inserts["scra_0"])
    stage_output = torch.randn(2, 32, 8, 8)  # NCHW
    with torch.no_grad():
        gated = scra_hook(net, "layer1")(None, (), stage_output)
        expected = stage_output * torch.sigmoid(scra.conv(stage_output))
    assert torch.allclose(gated, expected, atol=1e-6)


# ---- regimes ------------------------------------------------------------------------------------


def test_pretrained_eval_refuses_inserted_modules_it_would_never_train(tmp_path: Path) -> None:
    # An ablation grid crossing regime pretrained_eval with an SCRA row scored the checkpoint
    # through a randomly initialised gate and reported it as the checkpoint "as is".
    torch.manual_seed(0)
    weights = tmp_path / "test_resnet.pth"
    torch.save(timm.create_model("test_resnet", num_classes=3).state_dict(), weights)
    base = {"model": {"backbone": "test_resnet", "pretrained_path": str(weights)}, "data": {"image_size_px": 32}}
    cfg = config_with(base, {"regime": "pretrained_eval"})
    assert build_model(cfg, single(3)).output_map is None  # as is: allowed
    with_scra = config_with(
        base, {"regime": "pretrained_eval", "model__insert": [{"module": "scra", "after_stage": 2}]}
    )
    with pytest.raises(ValueError, match="adds untrained modules"):
        build_model(with_scra, single(3))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["defaults.schedule={name: step, warmup_epochs: 2}"], r"schedule.warmup_epochs 2 applies to the cosine"),
        (["defaults.schedule={name: none, warmup_epochs: 1}"], r"schedule.warmup_epochs 1 applies to the cosine"),
        (
            [
                "defaults.regime=pretrained_eval",
                "defaults.model.pretrained_path=ckpt.pth",
                "defaults.model.insert=[{module: scra, after_stage: 2}]",
            ],
            r"model.insert: regime pretrained_eval scores the checkpoint as is",
        ),
    ],
)
def test_the_job_time_refusals_are_plan_time_refusals_too(
    write_spec: Callable[..., Path], tmp_path: Path, overrides: list[str], message: str
) -> None:
    # Refused when the job starts only, each failed after queueing on every run of the sweep.
    from orchestrator.checks import preflight
    from orchestrator.sweep.plan import plan
    from orchestrator.sweep.spec import SpecError, load_spec

    (tmp_path / "ckpt.pth").write_bytes(b"x")
    spec = load_spec(write_spec(), overrides)
    with pytest.raises(SpecError, match=r"sweep.yaml: run .*" + message):
        preflight.check(spec, plan(spec), "sweep.yaml", data=False)
