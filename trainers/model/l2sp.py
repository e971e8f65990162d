"""L2-SP (Li et al.; report 004): penalise the backbone's distance to its pretrained weights,

    penalty = lambda * sum over backbone weights of (w - w_pretrained)^2,

added to the training loss. The anchor is taken when the run is built, right after the
checkpoint is loaded and before any resume, so a resumed run anchors to the same
pretrained weights. New parts (heads, inserted modules) have no pretrained value and are
not penalised.
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.model.build import Classifier, backbone_parameters


class L2SP:
    """The penalty of one model, anchored at that model's current backbone weights."""

    def __init__(self, model: Classifier, strength: float) -> None:
        self.strength = strength
        self.pairs: list[tuple[nn.Parameter, torch.Tensor]] = [
            (param, param.detach().clone()) for _, param in backbone_parameters(model) if param.requires_grad
        ]

    def __call__(self) -> torch.Tensor:
        """strength * sum (w - w0)^2, as a scalar on the parameters' device."""
        total = sum(((param - anchor) ** 2).sum() for param, anchor in self.pairs)
        return self.strength * torch.as_tensor(total)
