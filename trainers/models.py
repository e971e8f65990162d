"""Backbones from timm by name, with optional weights from a local checkpoint file.

No network: `pretrained=False` always; pretrained weights come only from
ModelConfig.pretrained_path.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import load_state_dict
from torch import nn

from trainers.config import ModelConfig

log = logging.getLogger(__name__)


def build_model(model: ModelConfig, num_classes: int, load_weights: bool = True) -> nn.Module:
    """The timm backbone with a fresh `num_classes` head.

    timm's `drop_rate` is the dropout right before the classifier (ResNet, MobileNetV3,
    EfficientNet, ConvNeXt, ViT), which is what `head_dropout` means. `load_weights=False`
    skips the checkpoint (complexity counting on the meta device needs only the shapes).
    """
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if model.head_dropout > 0:
        kwargs["drop_rate"] = model.head_dropout
    net = timm.create_model(model.backbone, pretrained=False, **kwargs)
    if load_weights and model.pretrained_path is not None:
        load_pretrained(net, Path(model.pretrained_path))
    return net


def check_pretrained_path(model: ModelConfig) -> None:
    """Raise FileNotFoundError now if the configured checkpoint file is missing."""
    if model.pretrained_path is not None and not Path(model.pretrained_path).expanduser().is_file():
        raise FileNotFoundError(f"model.pretrained_path: checkpoint file {model.pretrained_path} does not exist")


def classifier_prefixes(net: nn.Module) -> list[str]:
    """Parameter-name prefixes of the classification head (timm records them per model)."""
    cfg = getattr(net, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return [f"{name}." for name in names]


def load_pretrained(net: nn.Module, path: Path) -> None:
    """Load a torch/timm state dict file into `net`, keeping `net`'s head when shapes differ.

    The model's own timm filter is applied first (it remaps original-repo checkpoints and
    resizes ViT position embeddings). Any other mismatch is an error, not a silent
    partial load.
    """
    path = path.expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint file {path} does not exist")
    state = load_state_dict(str(path), weights_only=True)
    state = _timm_filter(net, state)
    own = net.state_dict()
    head = classifier_prefixes(net)

    def in_head(key: str) -> bool:
        return any(key.startswith(prefix) for prefix in head)

    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad := [k for k in mismatched if not in_head(k)]:
        raise ValueError(f"{path}: shapes differ from {type(net).__name__} for {bad[:5]}")
    for key in mismatched:
        del state[key]  # a head for another class count: keep the fresh one
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not in_head(k)]
    unexpected = [k for k in result.unexpected_keys if not in_head(k)]
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit {type(net).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    log.info("loaded %s (%d tensors; head kept: %s)", path, len(state), bool(mismatched))


def _timm_filter(net: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    module = sys.modules.get(type(net).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    return dict(filter_fn(state, net)) if callable(filter_fn) else state


def count_params(net: nn.Module) -> int:
    """Exact number of parameters (trainable or frozen; buffers excluded)."""
    return sum(p.numel() for p in net.parameters())
