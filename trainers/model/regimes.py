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

from trainers import rules
from trainers.config import TrainConfig
from trainers.model.build import Classifier, backbone_parameters

check_regime = rules.check_regime  # pure-config rule; lives in trainers.rules (also run by `plan`)


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
