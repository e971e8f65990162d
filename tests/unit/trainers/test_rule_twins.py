"""The trainer's refusals are `plan`'s: where the model, loss or selection builder checks a config at
job time, it runs the rule of trainers/rules.py that `plan` ran, so both refuse the same configs
with the same message (a twin copy of a rule drifted: plan and job said different things)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from config_helpers import config_with

from trainers import rules
from trainers.config import TrainConfig
from trainers.loop.early_stopping import Selection
from trainers.model.build import build_model
from trainers.model.losses import build_criterion
from trainers.model.tasks import TaskSpec, single

MULTI = TaskSpec("multilabel", ("p", "q", "r"))
HIER = TaskSpec("hierarchical", ("a", "b", "c", "d"), ("x", "y"), novel_slot=True)
EVAL = {"regime": "pretrained_eval", "model__pretrained_path": "/nowhere/ckpt.pth"}  # refused before it is read


def _cfg(fields: dict[str, Any]) -> TrainConfig:
    return config_with({"model": {"backbone": "test_resnet"}, "data": {"image_size_px": 16}}, fields)


def _plan_refusal(cfg: TrainConfig) -> str:
    with pytest.raises(ValueError) as refused:
        rules.check_config(cfg)
    return str(refused.value)


@pytest.mark.parametrize(
    ("fields", "task"),
    [
        ({"regime": "pretrained_eval"}, single(3)),
        ({**EVAL, "data__dataset": {"name": "multilabel", "root": "/d"}}, MULTI),
        ({**EVAL, "data__dataset": {"name": "hierarchical_csv", "root": "/d"}}, HIER),
        ({**EVAL, "model__insert": [{"module": "scra", "after_stage": 2}]}, single(3)),
    ],
    ids=["no-checkpoint", "multilabel", "hierarchical", "insert"],
)
def test_build_model_refuses_what_plan_refuses_with_its_message(fields: dict[str, Any], task: TaskSpec) -> None:
    cfg = _cfg(fields)
    message = _plan_refusal(cfg)
    with pytest.raises(ValueError) as job:
        build_model(cfg, task, load_weights=False)
    assert str(job.value) == message


@pytest.mark.parametrize(
    ("fields", "task"),
    [
        ({"loss__name": "bce"}, single(3)),
        ({"loss__name": "cross_entropy", "data__dataset": {"name": "multilabel", "root": "/d"}}, MULTI),
        ({"loss__label_smoothing": 0.1, "data__dataset": {"name": "multilabel", "root": "/d"}}, MULTI),
    ],
    ids=["bce-single", "ce-multilabel", "smoothing-multilabel"],
)
def test_build_criterion_refuses_what_plan_refuses_with_its_message(fields: dict[str, Any], task: TaskSpec) -> None:
    cfg = _cfg(fields)
    message = _plan_refusal(cfg)
    with pytest.raises(ValueError) as job:
        build_criterion(cfg.loss, task, np.zeros((2, 3) if task.kind == "multilabel" else 2))
    assert str(job.value) == message


@pytest.mark.parametrize(
    ("metric", "task"), [("val_top_1", single(3)), ("val_super.top1", single(3)), ("val_exact", MULTI)]
)
def test_selection_refuses_what_plan_refuses_with_its_message(metric: str, task: TaskSpec) -> None:
    dataset = {"name": "multilabel", "root": "/d"} if task.kind == "multilabel" else "digits"
    cfg = _cfg({"early_stopping__metric": metric, "data__dataset": dataset})
    message = _plan_refusal(cfg)
    with pytest.raises(ValueError) as job:
        Selection.from_config(cfg.early_stopping, task.kind)
    assert str(job.value) == message
