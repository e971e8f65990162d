"""The parts of a sweep spec that say what `collect` writes and what the sweep may cost: its tables
(`TableSpec`), the compute budget (`BudgetSpec`) and what is cleaned up after runs (`CleanupSpec`).
Fields of orchestrator.sweep.spec.SweepSpec; kept apart so that spec.py reads on its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from trainers import contract
from trainers.config import StrictModel
from trainers.rundir import FOLDER_NAME

SAFE_NAME = FOLDER_NAME  # fullmatch: `$` would accept a trailing newline
"""A name that becomes a file stem or a label: letters, digits and _ . -, at most 64 (the trainer's
folder-name rule, trainers.rundir.FOLDER_NAME)."""


TableFormat = Literal["md", "tex", "html", "csv"]
TABLE_FORMATS: tuple[TableFormat, ...] = ("md", "tex", "html", "csv")
# Dimensions a table can lay out besides extra grid axes (named as in `grid:`).
TABLE_DIMS = ("backbone", "dataset", "ablation", "metric")


class TableSpec(StrictModel):
    """One table of `collect`: a metric laid out as rows x columns, written in several formats."""

    name: str = "table"
    """File stem: tables/<name>.md, .tex, .html, .csv; unique within the sweep."""
    title: str | None = None
    """Caption; None names the metric."""
    metric: str | list[str] = "top1"
    """Key(s) under metrics.json `test` (top1, macro_f1, super.macro_f1, micro_f1, exact_match) or full dotted keys."""
    metric_labels: dict[str, str] = {}
    """Header text per metric, overriding the built-in labels (`top1` -> `top-1 (%)`)."""
    rows: list[str] | None = None
    """Dimensions whose values are the rows (ablation, backbone, dataset, metric, grid axes); None: ablation + axes."""
    columns: list[str] | None = None
    """Dimensions whose values are the score columns; None = dataset (+ metric when there are several)."""
    group: str | None = None
    """Dimension whose values become row groups of one table (e.g. backbone); None = no groups."""
    split: list[str] | None = None
    """Dimensions with one table per value; None = backbone (unless used elsewhere)."""
    scale: float | None = Field(None, gt=0)
    """Factor applied to every metric's values; None: 100 for fractions (top-1, F1...: shown as
    percent), 1 for the others (a loss stays a loss)."""
    decimals: int = Field(2, ge=0, le=8)
    """Decimals of scores, their std and their deltas."""
    best: Literal["max", "min", "none"] = "max"
    """Which score is bold in each column (per row group)."""
    delta: bool = True
    """Show each score's difference to the baseline row."""
    complexity: bool = True
    """Add GFLOPs and Params (M) columns with their relative delta."""
    formats: list[TableFormat] = list(TABLE_FORMATS)
    """Files written: md, tex (booktabs), html, csv."""
    template: str | None = None
    """Custom Jinja template (relative to the spec file), written to tables/<name>.<template name without .j2>."""
    tex_notes: Literal["full", "short", "none"] = "full"
    """Notes under the `.tex` table (inside the float): full; short (warnings, left-out runs and the legend's
    first line); none (nothing under the table). The other formats always carry every note."""
    detect_delta: float | None = Field(None, gt=0)
    """A delta worth detecting, in the table's unit (after `scale`): the notes say how many seeds a paired
    test needs to find it at 80% power, given the seed spread observed. None: not asked."""

    @field_validator("name")
    @classmethod
    def _file_stem(cls, value: str) -> str:
        if not SAFE_NAME.fullmatch(value) or ".." in value:
            raise ValueError(f"{value!r} must be letters, digits, '_', '-', '.', without '/' or '..'")
        return value

    @field_validator("metric")
    @classmethod
    def _some_metric(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("needs at least one metric")
        return value

    @property
    def metrics(self) -> list[str]:
        """The metric keys as a list."""
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    def scale_of(self, metric: str) -> float:
        """The factor a metric's values are shown times: `scale`, else 100 for a fraction, 1 for others."""
        if self.scale is not None:
            return self.scale
        return 100.0 if contract.is_fraction(contract.metric_column(metric)) else 1.0


class BudgetSpec(StrictModel):
    """Compute budget relative to the baseline row of the same backbone and dataset."""

    max_gflops_increase_pct: float | None = Field(None, ge=0)
    """Most GFLOPs a row may add over its baseline, in percent (report 004: 5)."""
    max_params_increase_pct: float | None = Field(None, ge=0)
    """Most parameters a row may add over its baseline, in percent."""
    max_gpu_hours: float | None = Field(None, gt=0, allow_inf_nan=False)
    """Most device-hours the whole sweep may take, estimated at submit from `--smoke` throughput
    (an unknown estimate is refused too, unless `submit --over-budget`)."""


class CleanupSpec(StrictModel):
    """What a run folder drops once its run ends; changing it never changes a run id."""

    drop_optimizer_state: bool = True
    """When a run completes, delete what only a resume reads from checkpoints/last (optimizer, scheduler,
    scaler, RNG and loop state: about twice the model's size under Adam). The model weights in last/ and
    best/ stay, for `eval`, `predict` and `checkpoint_for_test: last`; failed and interrupted runs keep all of it."""
    smoke_checkpoints: bool = False
    """Smoke runs (`submit --smoke`) keep their checkpoints/ folder; by default it is deleted when they end."""


def unique_table_names(tables: list[TableSpec]) -> list[TableSpec]:
    names = [table.name for table in tables]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"table name {twice[0]!r} is used twice; give each table its own `name`")
    return tables
