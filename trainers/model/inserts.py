"""Ablation modules inserted into a timm backbone at a stage boundary, by configuration.

The place is timm's own stage structure: `feature_info` lists the backbone's feature
levels (the modules `features_only=True` would tap), and `after_stage: k` is the k-th
of them, 1-based. For ConvNeXt level 1 is `stages.0`, so `after_stage: 1` sits between
stage 1 and stage 2 (report 004); ResNet's level 1 is the stem (`act1`) and level 2
`layer1`. A forward hook replaces that module's output by `insert(output)`, so no
model-specific surgery is needed and the backbone's own parameter names (hence
pretrained checkpoints) are untouched; the inserted modules live beside it.

A new module: a file that defines an nn.Module taking the channel count and decorates
its factory with `@register("name")`, imported in `trainers.model.build`, and the name added
to `InsertConfig.module`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from trainers.config import InsertConfig

Factory = Callable[[int], nn.Module]
_FACTORIES: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator registering a module factory (channels -> module) under `name`."""

    def decorate(factory: Factory) -> Factory:
        if name in _FACTORIES:
            raise ValueError(f"insert module {name!r} registered twice")
        _FACTORIES[name] = factory
        return factory

    return decorate


def stages(backbone: nn.Module) -> list[dict[str, Any]]:
    """timm's feature levels of `backbone` (module path, channels, stride), in order."""
    info = getattr(backbone, "feature_info", None)
    if not info:
        raise ValueError(f"{type(backbone).__name__} has no timm feature_info: cannot place inserted modules")
    return [dict(entry) for entry in info]


def describe_stages(backbone: nn.Module) -> str:
    """'1: stages.0 (24 ch, /4), 2: ...' for error messages and docs."""
    return ", ".join(
        f"{i}: {e['module']} ({e['num_chs']} ch, /{e['reduction']})" for i, e in enumerate(stages(backbone), 1)
    )


class _ApplyToOutput:
    """Forward hook: the stage's output goes through `module` (a class, so it pickles).

    A backbone whose stages are NHWC (timm's output_fmt: Swin, MambaOut) hands the module its
    maps as NCHW and takes them back as NHWC, so every module sees channels at dim 1. SCRA told
    the layouts apart by shape alone, and gated along the height where height equals channels
    (MambaOut-T after stage 1 at 384 px: 96 x 96 x 96).
    """

    channels_last: bool = False  # a class default: hooks pickled before the field still load

    def __init__(self, module: nn.Module, channels_last: bool = False) -> None:
        self.module = module
        self.channels_last = channels_last

    def __call__(self, _stage: nn.Module, _inputs: Any, output: Any) -> Any:
        if self.channels_last and output.dim() == 4:
            return self.module(output.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.module(output)


def attach(backbone: nn.Module, inserts: Sequence[InsertConfig]) -> tuple[nn.ModuleDict, list[dict[str, Any]]]:
    """Create the configured modules and hook each onto its stage of `backbone`.

    Returns the modules (to be registered on the model that owns them, so they train,
    are saved and are counted) and a description of where each went.
    """
    modules = nn.ModuleDict()
    placed: list[dict[str, Any]] = []
    if not inserts:
        return modules, placed
    levels = stages(backbone)
    for index, insert in enumerate(inserts):
        if insert.module not in _FACTORIES:
            raise ValueError(f"unknown insert module {insert.module!r}; registered: {', '.join(sorted(_FACTORIES))}")
        if not 1 <= insert.after_stage <= len(levels):
            raise ValueError(
                f"model.insert[{index}].after_stage {insert.after_stage}: {type(backbone).__name__} has stages "
                f"{describe_stages(backbone)}"
            )
        level = levels[insert.after_stage - 1]
        module = _FACTORIES[insert.module](int(level["num_chs"]))
        hook = _ApplyToOutput(module, channels_last=getattr(backbone, "output_fmt", "NCHW") == "NHWC")
        backbone.get_submodule(level["module"]).register_forward_hook(hook)
        modules[f"{insert.module}_{index}"] = module
        placed.append(
            {
                "module": insert.module,
                "after_stage": insert.after_stage,
                "at": level["module"],
                "channels": level["num_chs"],
            }
        )
    return modules, placed
