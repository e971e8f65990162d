"""Training regimes (reports 001, 002): what is trained, and whether anything is.

- train: every weight, from scratch (no pretrained_path) or fine-tuned from it;
- linear_probe: the backbone's pretrained weights are frozen (no gradient, and kept in
  eval mode so BatchNorm statistics do not drift); heads and inserted modules train;
- pretrained_eval: nothing trains; the checkpoint's own head is evaluated, its classes
  mapped to the dataset's (models.ClassMap).
"""

from __future__ import annotations

from typing import cast

from torch import nn

from trainers.config import TrainConfig
from trainers.models import Classifier, backbone_parameters


def check_regime(cfg: TrainConfig) -> None:
    """Raise ValueError for a regime or loss that cannot work with this config."""
    needs_weights = {"linear_probe": "regime linear_probe", "pretrained_eval": "regime pretrained_eval"}
    if cfg.regime in needs_weights and cfg.model.pretrained_path is None:
        raise ValueError(f"{needs_weights[cfg.regime]} needs model.pretrained_path")
    if cfg.loss.l2sp > 0 and cfg.model.pretrained_path is None:
        raise ValueError("loss.l2sp anchors to pretrained weights: it needs model.pretrained_path")
    if cfg.model.class_map_path is not None and cfg.regime != "pretrained_eval":
        raise ValueError("model.class_map_path applies to regime pretrained_eval only")
    if cfg.model.class_map_scoring == "raw" and (cfg.regime != "pretrained_eval" or cfg.model.class_map_path is None):
        raise ValueError("model.class_map_scoring raw needs regime pretrained_eval and model.class_map_path")


def trains(cfg: TrainConfig) -> bool:
    """Whether the regime trains at all."""
    return cfg.regime != "pretrained_eval"


def apply_regime(model: Classifier, cfg: TrainConfig) -> None:
    """Freeze what the regime keeps fixed (before the optimizer is built)."""
    if cfg.regime in ("linear_probe", "pretrained_eval"):
        for _, param in backbone_parameters(model):
            param.requires_grad_(False)


def set_train_mode(model: nn.Module, cfg: TrainConfig) -> None:
    """model.train(), except that a linear probe's frozen backbone stays in eval mode."""
    model.train()
    if cfg.regime == "linear_probe":
        backbone = getattr(model, "backbone", None)
        if backbone is None:  # wrapped (DDP): the Classifier is .module
            backbone = cast(Classifier, model.module).backbone
        cast(nn.Module, backbone).eval()
