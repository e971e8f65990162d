"""`orchestrate profile --json`: the model of its output (schema_version as in orchestrator.cli.jsonout)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orchestrator.cli.jsonout import SCHEMA_VERSION, Out, abs_path, number_or_none
from trainers import contract

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.sweep.spec import SweepSpec


class ProfileCell(Out):
    """One (backbone, dataset, ablation, axes) cell's model."""

    backbone: str
    dataset: str
    ablation: str
    axes: str
    image_size_px: int | None
    classes: int | None
    """A single-label head's classes; null for other label shapes (see `label_shape`) or when unknown."""
    label_shape: str | None
    """The heads' class counts as `profile` shows them (`200`, `3 / 87+novel`, `14 labels`); null when unknown."""
    gflops: float | None
    params_m: float | None
    gflops_delta_pct: float | None
    """Versus the cell's baseline row; null without one."""
    params_delta_pct: float | None
    over_budget: bool
    error: str
    """Why the cell could not be profiled ('' when it was)."""


class ProfileOut(Out):
    """`orchestrate profile --json`."""

    schema_version: int = SCHEMA_VERSION
    command: Literal["profile"] = "profile"
    sweep: str
    cells: list[ProfileCell]
    distinct_models: int
    seconds: float
    profile_csv: str | None
    budget: dict[str, float | None] | None
    """The spec's budget limits (percent), null without a budget."""
    over_budget: list[str]
    """One line per cell over the budget, as printed."""


def profiled_models(frame: pd.DataFrame) -> int:
    """Distinct models among the cells profiled (a cell that could not be is no model profiled)."""
    if frame.empty:
        return 0
    return int(frame.loc[~frame["error"].astype(bool), "ckey"].nunique())


def profile_object(
    spec: SweepSpec, frame: pd.DataFrame, seconds: float, path: Path | None, over_budget: list[str]
) -> ProfileOut:
    """The profile table as rows; `over_budget`: the verdict lines `profile` prints."""
    cells = [_profile_cell(row) for _, row in frame.iterrows()]
    budget = (
        spec.budget.model_dump(include={"max_gflops_increase_pct", "max_params_increase_pct"}) if spec.budget else None
    )
    return ProfileOut(
        sweep=spec.name,
        cells=cells,
        distinct_models=profiled_models(frame),
        seconds=round(seconds, 3),
        profile_csv=abs_path(path),
        budget=budget,
        over_budget=over_budget,
    )


def _profile_cell(row: pd.Series) -> ProfileCell:
    def _int(value: Any) -> int | None:
        number = number_or_none(value)
        return None if number is None else int(number)

    return ProfileCell(
        backbone=str(row["backbone"]),
        dataset=str(row["dataset"]),
        ablation=str(row["ablation"]),
        axes=str(row["axes"] or ""),
        image_size_px=_int(row["image_size_px"]),
        classes=_int(row["classes"]) if str(row["classes"]).isdigit() else None,
        label_shape=str(row["classes"]) or None,
        gflops=number_or_none(row.get(contract.GFLOPS)),
        params_m=number_or_none(row.get(contract.PARAMS_M)),
        gflops_delta_pct=number_or_none(row.get("gflops_delta_pct")),
        params_delta_pct=number_or_none(row.get("params_delta_pct")),
        over_budget=bool(row.get("over_budget", False)),
        error=str(row["error"] or ""),
    )
