"""Issue 22, item 6: non-finite numbers in any form, and strings or booleans where numbers go, are
refused at plan with the field's path (YAML `.inf`, the string "inf", an override, the budget)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.sweep.spec import SpecError, load_spec


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["defaults.optim.lr=inf"], r"defaults\.optim\.lr: a string, not a number"),
        (["defaults.optim.lr=.inf"], r"defaults\.optim\.lr: inf is not a finite number"),
        (["defaults.optim.lr=-.inf"], r"defaults\.optim\.lr: -inf is not a finite number"),
        (["defaults.optim.lr=.nan"], r"defaults\.optim\.lr: nan is not a finite number"),
        (["defaults.optim.lr=nan"], r"defaults\.optim\.lr: a string, not a number"),
        (["defaults.optim.lr='1e-3'"], r"defaults\.optim\.lr: a string, not a number"),
        (["defaults.epochs='3'"], r"defaults\.epochs: a string, not a number"),
        (["budget.max_gflops_increase_pct=inf"], r"budget\.max_gflops_increase_pct: a string, not a number"),
        (["budget.max_gflops_increase_pct=.inf"], r"budget\.max_gflops_increase_pct: inf is not a finite number"),
        (["budget.max_params_increase_pct=Infinity"], r"budget\.max_params_increase_pct: a string, not a number"),
        (["slurm.timeout_min='60'"], r"slurm\.timeout_min: a string, not a number"),
        (["modifiers.dropout.model.head_dropout=nan"], r"modifiers\.dropout\.model\.head_dropout: a string"),
        (["grid.optim.lr=[0.1, inf]"], r"grid\.optim\.lr\[1\]: a string, not a number"),
        (["grid.optim.lr=[0.1, .nan]"], r"grid\.optim\.lr\[1\]: nan is not a finite number"),
    ],
)
def test_non_finite_and_string_numbers_are_refused(
    write_spec: Callable[..., Path], overrides: list[str], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(), overrides)


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"max_gflops_increase_pct": "inf"}, r"budget\.max_gflops_increase_pct: a string, not a number"),
        ({"max_gflops_increase_pct": "5"}, r"budget\.max_gflops_increase_pct: a string, not a number"),
        ({"max_gpu_hours": "nan"}, r"budget\.max_gpu_hours: a string, not a number"),
        ({"max_gflops_increase_pct": True}, r"budget\.max_gflops_increase_pct: a boolean, not a number"),
    ],
)
def test_budget_numbers_are_numbers(write_spec: Callable[..., Path], budget: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(budget=budget))


def test_yaml_inf_written_in_the_file_is_refused(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError, match=r"defaults\.optim\.lr: inf is not a finite number"):
        load_spec(write_spec(defaults={"optim": {"name": "adam", "lr": float("inf")}}))


def test_ordinary_numbers_and_numeric_text_fields_still_pass(write_spec: Callable[..., Path]) -> None:
    """Strings stay fine where the field takes text (a dataset named "inf", a label "1e3")."""
    spec = load_spec(write_spec(), ["defaults.optim.lr=1e-4", "budget.max_gflops_increase_pct=5", "grid.seed=[0, 3]"])
    assert spec.budget is not None and spec.budget.max_gflops_increase_pct == 5.0
    assert load_spec(write_spec(), ["modifiers.x.data.augment.rotate_deg=5", "ablations.inf=[x]"]).ablations
