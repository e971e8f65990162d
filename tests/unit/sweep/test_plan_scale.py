"""Issue 22, item 10: plan at the run cap. Cells that differ only by seed reuse the previous cell's
validated config; their ids and configs must equal a full validation's, exactly."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.results import cost
from orchestrator.sweep import plan as plan_mod
from orchestrator.sweep.plan import plan, run_id_of
from orchestrator.sweep.spec import PLAIN_INT_FIELDS, SpecError, load_spec, validate_train
from trainers.config import TrainConfig

SPEC = """
name: reseed
output_dir: {out}
defaults: {{data: {{image_size_px: 16, batch_size: 8}}, epochs: 1, seed: 3}}
grid:
  backbone: [resnet10t, resnet18]
  dataset: [digits, {{name: digits, label: Digits small, max_samples: 64}}]
  seed: [0, 1, 7, 0x10]
  optim.lr: [0.1, 0.01]
modifiers:
  aug: {{data.augment: {{rotate_deg: 10}}}}
  drop: {{model.head_dropout: 0.2}}
per_backbone:
  resnet18: {{data.batch_size: 16}}
ablations: {{Baseline: [], + Aug: [aug], + Aug + Drop: [aug, drop]}}
"""


def test_reseeded_runs_equal_a_full_validation(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(SPEC))
    runs = plan(spec)
    cells = list(plan_mod._cells(spec))
    assert len(runs) == len(cells) == 2 * 2 * 4 * 2 * 3
    for run, cell in zip(runs, cells, strict=True):
        full = validate_train(cell.values, "test", cell.name)
        assert run.config == full and run.run_id == run_id_of(full), cell.name
        assert run.seed == full.seed


def test_a_modifier_that_sets_the_seed_is_still_a_duplicate(write_spec: Callable[..., Path]) -> None:
    path = write_spec(SPEC.replace("drop: {{model.head_dropout: 0.2}}", "drop: {{seed: 5}}"))
    with pytest.raises(SpecError, match=r"resolve to the same config"):
        plan(load_spec(path))


def test_cost_estimate_plans_no_smoke_variants_without_smoke_runs(
    write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(write_spec(SPEC))
    runs = plan(spec)

    def refuse(runs: object) -> object:
        raise AssertionError("smoke_plan called without any smoke run folder")

    monkeypatch.setattr(cost, "smoke_plan", refuse)
    assert len(cost.estimate(spec, runs)) == len({r.name.rsplit("/", 1)[0] for r in runs})


def test_the_seed_axis_shortcut_holds_only_for_a_plain_int_no_validator_reads() -> None:
    """spec.PLAIN_INT_FIELDS: an axis of ints there is checked by its first value alone."""
    decorators = TrainConfig.__pydantic_decorators__
    for name in PLAIN_INT_FIELDS:
        field = TrainConfig.model_fields[name]
        assert field.annotation is int and not field.metadata, f"{name} gained a type or constraint"
        assert not any(name in d.info.fields for d in decorators.field_validators.values())
        for validator in decorators.model_validators.values():
            assert name not in inspect.getsource(validator.func), f"{validator.cls_var_name} reads {name}"


@pytest.mark.parametrize(("seeds", "error"), [("[0, 1, 2]", None), ("[0, 1, true]", r"grid\.seed\[2\]")])
def test_a_seed_axis_is_checked_value_by_value_unless_all_ints(
    write_spec: Callable[..., Path], seeds: str, error: str | None
) -> None:
    path = write_spec(SPEC.replace("seed: [0, 1, 7, 0x10]", f"seed: {seeds}"))
    if error is None:
        assert [run.seed for run in plan(load_spec(path))][:3] == [0, 1, 2]
    else:
        with pytest.raises(SpecError, match=error):
            load_spec(path)
