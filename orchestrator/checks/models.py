"""Checks that build models: every distinct model of a sweep built once on the meta device (no
memory, no weights), by the trainer's own code. Needs torch and timm: `submit` runs it before any
job; `plan` does not (its backbone check is the torch-free table of orchestrator/sweep/backbones.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from orchestrator.sweep.errors import SpecError, short
from orchestrator.sweep.plan import RunSpec


def check_models(runs: Sequence[RunSpec], where: str) -> None:
    """Backbone names (with a "did you mean") and inserted modules' stages, each distinct model built
    once on the meta device (no memory, no weights). Needs torch: `submit` runs it before any job."""
    import difflib

    import timm
    import torch

    from trainers.model.build import create_backbone
    from trainers.model.inserts import attach

    seen: set[str] = set()
    for run in runs:
        model, size = run.config.model, run.config.data.image_size_px
        key = json.dumps([model.backbone, size, [i.model_dump() for i in model.insert]])
        if key in seen:
            continue
        seen.add(key)
        if not timm.is_model(model.backbone):
            close = difflib.get_close_matches(model.backbone, timm.list_models(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else " (see timm.list_models())"
            name = short(model.backbone)
            raise SpecError(f"{where}: run {run.name}: model.backbone {name} is not a timm model{hint}")
        if model.insert:
            try:
                with torch.device("meta"):
                    attach(create_backbone(model.backbone, size, num_classes=0), model.insert)
            except ValueError as exc:
                raise SpecError(f"{where}: run {run.name}: {exc}") from None
