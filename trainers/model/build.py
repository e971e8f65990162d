"""The model a run trains: a timm backbone by name, optional inserted ablation modules, and
the heads its task needs, with optional weights from a local checkpoint file.

No network: `pretrained=False` always; pretrained weights come only from
ModelConfig.pretrained_path. `build_model` is the one constructor, used for training,
for complexity counting on the meta device, and by the eval/predict modes, so all of
them see the same architecture.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import load_state_dict
from torch import nn

from trainers import rules
from trainers.config import TrainConfig
from trainers.model import scra  # noqa: F401  (scra registers the `scra` insert)
from trainers.model.heads import build_heads
from trainers.model.inserts import attach
from trainers.model.tasks import TaskSpec

log = logging.getLogger(__name__)


class ClassMap(nn.Module):
    """Scores of the dataset's classes from a pretrained head's classes: each dataset class
    takes the maximum logit over the source classes mapped to it (report 001: ImageNet
    ResNet-50 on 10 Imagenette classes)."""

    index: torch.Tensor

    def __init__(self, groups: list[list[int]]) -> None:
        super().__init__()
        width = max(len(group) for group in groups)
        # Padding with a repeat of the group's first index leaves each maximum unchanged.
        index = [group + [group[0]] * (width - len(group)) for group in groups]
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, self.index].amax(dim=-1)


class Classifier(nn.Module):
    """Backbone (+ inserted modules) -> heads; returns the heads' logits concatenated.

    With `heads=None` the backbone keeps timm's own classifier (the single-linear-head
    case, where timm's `drop_rate` is the dropout before it); otherwise the backbone is
    headless (num_classes=0, pooled features) and our heads follow a dropout.
    """

    def __init__(
        self,
        backbone: nn.Module,
        heads: nn.ModuleDict | None,
        inserts: nn.ModuleDict,
        feature_dropout: float = 0.0,
        output_map: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.inserts = inserts  # hooked into the backbone; registered here so they train and save
        self.heads = heads
        self.feature_dropout = nn.Dropout(feature_dropout) if heads is not None and feature_dropout > 0 else None
        self.output_map = output_map
        self.placed: list[dict[str, Any]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.backbone(images)
        if self.heads is not None:
            if self.feature_dropout is not None:
                out = self.feature_dropout(out)
            out = torch.cat([head(out) for head in self.heads.values()], dim=1)
        if self.output_map is not None:
            out = self.output_map(out)
        return out


def uses_native_head(cfg: TrainConfig, task: TaskSpec) -> bool:
    """Whether timm's own classifier serves as the (single, linear) head.

    A linear probe always gets our head: it keeps the whole backbone in eval mode, which
    would switch off timm's in-backbone head dropout.
    """
    if cfg.regime == "pretrained_eval":
        return True
    head = cfg.model.head
    return len(task.heads) == 1 and not head.hidden_dims and not head.batchnorm and cfg.regime != "linear_probe"


def build_model(cfg: TrainConfig, task: TaskSpec, load_weights: bool = True) -> Classifier:
    """The model of `cfg` for `task`; `load_weights=False` skips the checkpoint (complexity
    counting on the meta device needs only the shapes)."""
    model = cfg.model
    if cfg.regime == "pretrained_eval":
        return _pretrained_as_is(cfg, task, load_weights)
    native = uses_native_head(cfg, task)
    kwargs: dict[str, Any] = {"num_classes": task.num_outputs if native else 0}
    if native and model.head_dropout > 0:
        kwargs["drop_rate"] = model.head_dropout
    if model.drop_path_rate > 0:  # only when asked: not every timm model takes the argument
        kwargs["drop_path_rate"] = model.drop_path_rate
    backbone = create_backbone(model.backbone, cfg.data.image_size_px, **kwargs)
    if load_weights and model.pretrained_path is not None:
        load_pretrained(backbone, Path(model.pretrained_path))
    inserts, placed = attach(backbone, model.insert)
    heads = None if native else build_heads(_num_features(backbone), task, model.head)
    net = Classifier(backbone, heads, inserts, model.head_dropout)
    net.placed = placed
    return net


def _pretrained_as_is(cfg: TrainConfig, task: TaskSpec, load_weights: bool) -> Classifier:
    """The checkpoint's own network and head, its classes mapped onto the dataset's."""
    model = cfg.model
    # The rule `plan` ran already (rules.check_regime), here against the built task: same refusal, same words.
    path = rules.check_pretrained_eval(cfg, task.kind)
    source_classes = checkpoint_num_classes(path, model.backbone)
    backbone = create_backbone(model.backbone, cfg.data.image_size_px, num_classes=source_classes)
    if load_weights:
        load_pretrained(backbone, path, require_head=True)
    inserts, placed = attach(backbone, model.insert)
    output_map = None
    if model.class_map_path is not None:
        output_map = ClassMap(read_class_map(Path(model.class_map_path), task.class_names, source_classes))
    elif source_classes != len(task.class_names):
        raise ValueError(
            f"regime pretrained_eval: the checkpoint has {source_classes} classes, the dataset "
            f"{len(task.class_names)}; set model.class_map_path"
        )
    net = Classifier(backbone, None, inserts, output_map=output_map)
    net.placed = placed
    return net


def create_backbone(name: str, image_size_px: int, **kwargs: Any) -> nn.Module:
    """timm.create_model without downloads; models with a fixed input grid (ViT and
    relatives) are built for `image_size_px` when it differs from their default."""
    default = timm.get_pretrained_cfg(name)
    default_size = tuple(default.input_size[-2:]) if default is not None else None
    if default_size is not None and default_size != (image_size_px, image_size_px):
        try:
            return timm.create_model(name, pretrained=False, img_size=image_size_px, **kwargs)
        except TypeError as error:  # a model that adapts to any input size takes no img_size
            if "img_size" not in str(error):
                raise
    return timm.create_model(name, pretrained=False, **kwargs)


def _num_features(backbone: nn.Module) -> int:
    """Width of a headless (num_classes=0) timm backbone's output, which our heads take: timm's
    `head_hidden_size`, the pre-logits width. It differs from `num_features` (the last feature
    map's channels) where timm's head has its own hidden layer (MobileNetV3/V4, GhostNet,
    HGNetV2, EfficientViT, MambaOut: 960 vs 1280 for MobileNetV3-Large), and heads sized by
    `num_features` failed at the first batch with a shape mismatch."""
    for name in ("head_hidden_size", "num_features"):  # num_features: models that predate the attribute
        features = getattr(backbone, name, None)
        if isinstance(features, int):
            return features
    raise ValueError(f"{type(backbone).__name__} does not report num_features")


check_pretrained_path = rules.check_files  # lives in trainers.rules (also run by `plan`)


def classifier_prefixes(net: nn.Module) -> list[str]:
    """Parameter-name prefixes of the classification head (timm records them per model)."""
    cfg = getattr(net, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return [f"{name}." for name in names]


def backbone_parameters(net: Classifier) -> Iterator[tuple[str, nn.Parameter]]:
    """The backbone's own parameters, without timm's classifier: what a pretrained
    checkpoint provides (frozen by a linear probe, anchored by L2-SP)."""
    head = classifier_prefixes(net.backbone)
    for name, param in net.backbone.named_parameters():
        if not any(name.startswith(prefix) for prefix in head):
            yield name, param


def load_pretrained(net: nn.Module, path: Path, require_head: bool = False) -> None:
    """Load a torch/timm state dict file into `net`, keeping `net`'s head when shapes differ.

    The model's own timm filter is applied first (it remaps original-repo checkpoints and
    resizes ViT position embeddings). Any other mismatch is an error, not a silent
    partial load; with `require_head` the head must be loaded too.
    """
    path = path.expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint file {path} does not exist")
    state = _timm_filter(net, _checkpoint_state(path))
    own = net.state_dict()
    head = classifier_prefixes(net)

    def in_head(key: str) -> bool:
        return any(key.startswith(prefix) for prefix in head) and not require_head

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


def _checkpoint_state(path: Path) -> dict[str, Any]:
    """timm's load_state_dict of a checkpoint file; ValueError naming the file when it is none that
    torch or safetensors can read (a 2-byte .safetensors was SafetensorError's traceback in `profile`)."""
    try:
        return dict(load_state_dict(str(path), weights_only=True))
    except (ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # SafetensorError, UnpicklingError, EOFError, RuntimeError of a torn file
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not a checkpoint torch or safetensors can read ({reason})") from None


def checkpoint_num_classes(path: Path, backbone: str) -> int:
    """Width of the classifier stored in a checkpoint of a `backbone` model."""
    with torch.device("meta"):
        probe = timm.create_model(backbone, pretrained=False)
    state = _timm_filter(probe, _checkpoint_state(path.expanduser()))
    for prefix in classifier_prefixes(probe):
        weight = state.get(f"{prefix}weight")
        if weight is not None:
            return int(weight.shape[0])
    raise ValueError(f"{path}: no classifier weights ({', '.join(classifier_prefixes(probe))}) for {backbone}")


def read_class_map(path: Path, class_names: tuple[str, ...], source_classes: int) -> list[list[int]]:
    """Source-class indices of each dataset class, from a JSON object
    `{"<dataset class>": <index> | [<index>, ...], ...}` that names every dataset class."""
    try:
        raw = json.loads(path.expanduser().read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object of dataset class -> source class index or indices")
    unknown = sorted(set(raw) - set(class_names))
    missing = [name for name in class_names if name not in raw]
    if unknown or missing:
        raise ValueError(f"{path}: classes not in the dataset {unknown[:5]}, dataset classes not mapped {missing[:5]}")
    groups: list[list[int]] = []
    for name in class_names:
        value = raw[name]
        indices = [value] if isinstance(value, int) else list(value)
        if not indices or not all(isinstance(i, int) and 0 <= i < source_classes for i in indices):
            raise ValueError(f"{path}: {name!r} -> {value!r}: expected indices in 0..{source_classes - 1}")
        groups.append(indices)
    return groups


def count_params(net: nn.Module) -> int:
    """Exact number of parameters (trainable or frozen; buffers excluded)."""
    return sum(p.numel() for p in net.parameters())
