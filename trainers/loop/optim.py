"""Optimizer and per-epoch learning-rate schedule builders."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim import SGD, Adadelta, Adam, Adamax, AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, StepLR

from trainers import rules
from trainers.config import OptimConfig, ScheduleConfig

# name -> optimizer over (trainable params, config); a new optimizer is one entry here
# plus its name in OptimConfig.name.
OPTIMIZERS: dict[str, Callable[[list[torch.nn.Parameter], OptimConfig], Optimizer]] = {
    "adam": lambda p, o: Adam(p, lr=o.lr, weight_decay=o.weight_decay),
    "adamw": lambda p, o: AdamW(p, lr=o.lr, weight_decay=o.weight_decay),
    "sgd": lambda p, o: SGD(p, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay),
    "adamax": lambda p, o: Adamax(p, lr=o.lr, weight_decay=o.weight_decay),
    "adadelta": lambda p, o: Adadelta(p, lr=o.lr, weight_decay=o.weight_decay),
}


def build_optimizer(params: Iterable[torch.nn.Parameter], optim: OptimConfig) -> Optimizer:
    """The configured optimizer over those of `params` that require grad (a linear probe's
    frozen backbone is left out)."""
    trainable = [p for p in params if p.requires_grad]
    if optim.name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optim.name!r}; known: {', '.join(OPTIMIZERS)}")
    if optim.nesterov and optim.name != "sgd":
        raise ValueError("optim.nesterov applies to sgd only")
    return OPTIMIZERS[optim.name](trainable, optim)


class WarmupCosine:
    """LR factor of epoch e: linear warm-up to 1, then cosine decay towards 0.

    A class rather than a lambda so LambdaLR can save it in a checkpoint. The last epoch
    keeps a small positive LR instead of wasting a whole epoch at 0.
    """

    def __init__(self, warmup_epochs: int, epochs: int) -> None:
        self.warmup_epochs = warmup_epochs
        self.epochs = epochs

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return (epoch + 1) / (self.warmup_epochs + 1)
        progress = (epoch - self.warmup_epochs) / max(1, self.epochs - self.warmup_epochs)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: Optimizer, schedule: ScheduleConfig, epochs: int) -> LRScheduler:
    """The configured schedule, meant to be stepped once at the end of every epoch."""
    rules.check_schedule(schedule)  # also a plan-time rule (check_config)
    if schedule.name == "step":
        return StepLR(optimizer, step_size=schedule.step_epochs, gamma=schedule.gamma)
    if schedule.name == "cosine":
        return LambdaLR(optimizer, WarmupCosine(schedule.warmup_epochs, epochs))
    if schedule.name == "none":
        return LambdaLR(optimizer, _constant)
    raise ValueError(f"unknown schedule {schedule.name!r}")


def _constant(epoch: int) -> float:
    return 1.0
