"""Training objectives per task, with scikit-learn's balanced class weights.

- single: cross-entropy (optional label smoothing and class weights);
- hierarchical: w_super * CE(super) + w_sub * CE(sub), class weights per level;
- multilabel: one of MULTILABEL_LOSSES on the logits (BCE-with-logits, multilabel
  soft-margin) or on the sigmoid probabilities (MSE, L1), as report 003 compares.

A new multilabel loss is one entry of MULTILABEL_LOSSES plus its name in LossConfig.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.nn import functional as F

from trainers import rules
from trainers.config import LossConfig
from trainers.model.tasks import TaskSpec

MultilabelLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MULTILABEL_LOSSES: dict[str, MultilabelLoss] = {
    "bce": F.binary_cross_entropy_with_logits,
    "soft_margin": F.multilabel_soft_margin_loss,
    "mse": lambda logits, targets: F.mse_loss(torch.sigmoid(logits), targets),
    "l1": lambda logits, targets: F.l1_loss(torch.sigmoid(logits), targets),
}


def balanced_class_weights(labels: np.ndarray, num_outputs: int) -> np.ndarray:
    """sklearn's `compute_class_weight('balanced')` over the classes present in `labels`;
    every output with no training image (the novel slot, classes lost to a cap) gets the
    mean of those weights (report 000's treatment of the novel class)."""
    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    weights = np.full(num_outputs, np.nan)
    computed = compute_class_weight("balanced", classes=present, y=labels)
    weights[present] = computed
    weights[np.isnan(weights)] = computed.mean()
    return weights


class CrossEntropy(nn.Module):
    """Cross-entropy over one head, optionally class-weighted and label-smoothed."""

    def __init__(self, weight: np.ndarray | None, label_smoothing: float) -> None:
        super().__init__()
        self.weight: torch.Tensor | None
        self.register_buffer("weight", None if weight is None else torch.tensor(weight, dtype=torch.float32))
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(logits.dtype)
        return F.cross_entropy(logits, labels, weight=weight, label_smoothing=self.label_smoothing)


class HierarchicalLoss(nn.Module):
    """w_super * CE(super logits, super labels) + w_sub * CE(sub logits, sub labels)."""

    def __init__(self, task: TaskSpec, super_ce: CrossEntropy, sub_ce: CrossEntropy, weights: tuple[float, float]):
        super().__init__()
        self.task = task
        self.super_ce = super_ce
        self.sub_ce = sub_ce
        self.weights = weights
        self.last_levels: dict[str, torch.Tensor] = {}

    def levels(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each level's own (unweighted) cross-entropy: {"super": ..., "sub": ...}."""
        parts = self.task.split_outputs(outputs)
        return {"super": self.super_ce(parts["super"], targets[:, 0]), "sub": self.sub_ce(parts["sub"], targets[:, 1])}

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        levels = self.levels(outputs, targets)
        # Kept (detached) so the training loop can report each level's loss without a second pass.
        self.last_levels = {name: loss.detach() for name, loss in levels.items()}
        w_super, w_sub = self.weights
        return w_super * levels["super"] + w_sub * levels["sub"]


def level_losses(criterion: nn.Module, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float] | None:
    """Each level's cross-entropy of a hierarchical criterion (None for other tasks)."""
    if not isinstance(criterion, HierarchicalLoss):
        return None
    return {name: float(loss) for name, loss in criterion.levels(outputs, targets).items()}


class Multilabel(nn.Module):
    """A multilabel loss of MULTILABEL_LOSSES on float multi-hot targets."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return MULTILABEL_LOSSES[self.name](logits.float(), targets.float())


def build_criterion(loss: LossConfig, task: TaskSpec, train_targets: np.ndarray) -> nn.Module:
    """The loss module of `task`: criterion(model outputs, targets) -> scalar."""
    rules.check_loss_for(loss, task.kind)  # `plan`'s rule (rules.check_loss), against the built task
    if task.kind == "multilabel":
        return Multilabel("bce" if loss.name == "auto" else loss.name)
    targets = np.asarray(train_targets)

    def ce(level: str, labels: np.ndarray) -> CrossEntropy:
        width = len(task.level_names(level))
        weight = balanced_class_weights(labels, width) if loss.class_weights == "balanced" else None
        return CrossEntropy(weight, loss.label_smoothing)

    if task.kind == "hierarchical":
        return HierarchicalLoss(
            task, ce("super", targets[:, 0]), ce("sub", targets[:, 1]), (loss.super_weight, loss.sub_weight)
        )
    return CrossEntropy(
        balanced_class_weights(targets, task.num_outputs) if loss.class_weights == "balanced" else None,
        loss.label_smoothing,
    )
