"""`plan --json` carries the budget's verdict: the lines alone went to stderr, so a script that read
the object could not tell a sweep over its GFLOPs budget, or one whose hours are unknown, from one within."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.main import main

SPEC = """\
name: budget_json
output_dir: {out}
defaults:
  data: {{image_size_px: 32, batch_size: 32}}
  optim: {{name: adam, lr: 1e-3}}
  epochs: 1
grid:
  backbone: [test_resnet]
  dataset: [digits]
  seed: [0]
modifiers:
  px: {{data.image_size_px: 64}}
ablations:
  Baseline: []
  + Px: [px]
"""


def _plan_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], *overrides: str) -> tuple[dict[str, Any], str]:
    path = tmp_path / "sweep.yaml"
    path.write_text(SPEC.format(out=tmp_path / "results"))
    code = main(["plan", str(path), *overrides, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    obj: dict[str, Any] = json.loads(captured.out)
    return obj, captured.err


def test_a_row_over_the_gflops_budget_is_over_in_the_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obj, err = _plan_json(tmp_path, capsys, "budget={max_gflops_increase_pct: 5}")
    budget = obj["budget"]
    assert budget["complexity"] == "over"
    assert len(budget["over_budget"]) == 1 and "+ Px" in budget["over_budget"][0]
    assert budget["over_budget"][0] in err  # the same line `plan` prints
    assert budget["max_gflops_increase_pct"] == 5 and budget["gpu_hours"] is None


def test_a_budget_every_row_keeps_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obj, err = _plan_json(tmp_path, capsys, "budget={max_gflops_increase_pct: 500, max_params_increase_pct: 1}")
    assert obj["budget"]["complexity"] == "ok" and obj["budget"]["over_budget"] == []
    assert "budget ok" in err


def test_hours_with_no_estimate_are_unknown_as_submit_judges_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    obj, _ = _plan_json(tmp_path, capsys, "budget={max_gpu_hours: 10}")
    budget = obj["budget"]
    assert budget["complexity"] is None, "no GFLOPs or params limit: no verdict on them"
    assert budget["gpu_hours"] == "unknown"
    assert budget["gpu_hours_problem"].startswith("2 of 2 cells have no estimate")
    assert all(cell["hours"] is None for cell in obj["estimates"])


def test_without_a_budget_the_field_is_null(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obj, _ = _plan_json(tmp_path, capsys)
    assert obj["budget"] is None
