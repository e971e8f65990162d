"""Shared fixtures: small sweep files written into a temporary folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.sweep import yamlio

TINY_SPEC = """
name: tiny
output_dir: {out}
defaults:
  data: {{image_size_px: 16, batch_size: 32, num_workers: 0}}
  optim: {{name: adam, lr: 1e-3}}
  epochs: 1
grid:
  backbone: [resnet10t]
  dataset: [digits]
  seed: [0, 1]
modifiers:
  aug: {{data.augment: {{rotate_deg: 10}}}}
  dropout: {{model.head_dropout: 0.5}}
ablations:
  Baseline: []
  + Aug: [aug]
  + Aug + Dropout: [aug, dropout]
"""


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a sweep file (default: TINY_SPEC) into tmp_path; outputs go to tmp_path/out."""

    def write(text: str | None = None, filename: str = "sweep.yaml", **changes: object) -> Path:
        body = (text or TINY_SPEC).format(out=tmp_path / "out")
        if changes:
            data = yamlio.loads(body)
            data.update(changes)
            body = yamlio.dumps(data)
        path = tmp_path / filename
        path.write_text(body)
        return path

    return write
