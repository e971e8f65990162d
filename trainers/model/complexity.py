"""Parameters and GFLOPs of the exact model a run trains.

GFLOPs follow the house convention: torch.utils.flop_counter.FlopCounterMode total
(2 x multiply-adds) at batch 1 and the run's input size, divided by 1e9. The count
runs on the meta device: shapes only, so a 200M-parameter model costs no memory
and well under a second.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from trainers.config import TrainConfig
from trainers.model.build import build_model, count_params
from trainers.model.tasks import TaskSpec, single, task_of

log = logging.getLogger(__name__)

COUNTER = "torch.utils.flop_counter.FlopCounterMode"
CONVENTION = "2 x multiply-adds, batch 1, 3xHxW input"


def count_flops(net: nn.Module, image_size_px: int, device: torch.device) -> int:
    """FLOPs of one forward pass of `net` (eval mode) on a 1x3xSxS input on `device`."""
    was_training = net.training
    net.eval()
    image = torch.zeros(1, 3, image_size_px, image_size_px, device=device)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(image)
    finally:
        net.train(was_training)
    return int(counter.get_total_flops())


def complexity(cfg: TrainConfig, task: TaskSpec) -> dict[str, Any]:
    """Params and GFLOPs of the model `build_model` makes for this config and task: heads,
    inserted modules (SCRA) and class maps included, exactly as trained.

    Built on the meta device; a model whose constructor needs real values falls back to
    CPU (slower, same numbers), recorded in `counted_on`.
    """
    image_size_px = cfg.data.image_size_px
    try:
        with torch.device("meta"):
            net = build_model(cfg, task, load_weights=False)
        flops = count_flops(net, image_size_px, torch.device("meta"))
        counted_on = "meta"
    except Exception as error:  # any meta-incompatible op: count on CPU instead
        log.warning("meta-device count failed (%s); counting on CPU", error)
        net = build_model(cfg, task, load_weights=False)
        flops = count_flops(net, image_size_px, torch.device("cpu"))
        counted_on = "cpu"
    params = count_params(net)
    return {
        "gflops": flops / 1e9,
        "params": params,
        "params_m": params / 1e6,
        "counter": COUNTER,
        "convention": CONVENTION,
        "torch_version": torch.__version__,  # the counter's rules (which ops count) are torch's
        "input_size_px": image_size_px,
        "counted_on": counted_on,
        "inserts": net.placed,
    }


def profile_model(cfg: TrainConfig, num_classes: int | None = None) -> dict[str, Any]:
    """Complexity of the run's model. `num_classes` is the width of a single head (single-label
    or multilabel); None, or a hierarchical dataset (two heads, maybe a novel slot), reads
    the label structure from the dataset."""
    if num_classes is None or cfg.data.dataset.task == "hierarchical":
        from trainers.datasets import build_splits  # only when needed: it may scan a folder

        return complexity(cfg, task_of(build_splits(cfg.data)))
    return complexity(cfg, single(num_classes))
