"""`orchestrate plan --json`: the model of its output (schema_version as in orchestrator.cli.jsonout)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orchestrator.cli.jsonout import SCHEMA_VERSION, Out, abs_path

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.results.cost import CellCost
    from orchestrator.sweep.plan import RunSpec
    from orchestrator.sweep.spec import SweepSpec


class PlanRun(Out):
    """One planned run."""

    index: int
    run_id: str
    name: str
    ablation: str
    backbone: str
    dataset: str
    seed: int
    axes: dict[str, Any]
    run_dir: str
    """Absolute path of the run's folder (it may not exist yet)."""


class CellEstimate(Out):
    """Estimated compute of one (backbone, dataset, ablation, axes) cell, all seeds together."""

    cell: str
    runs: int
    hours: float | None
    """Device-hours; null when unknown (see `note`)."""
    unit: str
    images_per_s: float | None
    source: str | None
    note: str


class PlanBudget(Out):
    """The spec's `budget:` as `plan` checks it (its lines go to stderr under --json)."""

    max_gflops_increase_pct: float | None
    max_params_increase_pct: float | None
    max_gpu_hours: float | None
    complexity: Literal["ok", "over"] | None
    """GFLOPs and params against the baseline row: every cell within, or some over (listed in
    `over_budget`; `submit` refuses them without --over-budget); null without such a limit. A cell
    that cannot be profiled fails `plan` itself, never a verdict."""
    over_budget: list[str]
    """One line per cell over the GFLOPs or params limit, as printed."""
    gpu_hours: Literal["ok", "over", "unknown"] | None
    """The estimated device-hours of the sweep (`estimates`) against max_gpu_hours: unknown when a
    cell has no estimate (`submit` refuses both over and unknown without --over-budget); null without the limit."""
    gpu_hours_problem: str | None
    """Why gpu_hours is over or unknown, as `submit` words it."""


class PlanOut(Out):
    """`orchestrate plan --json`."""

    schema_version: int = SCHEMA_VERSION
    command: Literal["plan"] = "plan"
    sweep: str
    output_dir: str
    runs_total: int
    axes: dict[str, list[Any]]
    """Grid axis -> its values as the plan shows them (datasets by label)."""
    ablations: dict[str, int]
    """Ablation row -> planned runs."""
    runs: list[PlanRun]
    """Every planned run, in plan order (not cut at 40 like the table)."""
    estimates: list[CellEstimate]
    estimate_summary: str
    warnings: list[str]
    budget: PlanBudget | None = None
    """The budget verdict; null without a `budget:` in the spec."""


def plan_object(
    spec: SweepSpec, runs: list[RunSpec], warnings: list[str], costs: list[CellCost], budget: PlanBudget | None
) -> PlanOut:
    """The plan as `plan` prints it: axes, rows, every run, the cost estimate."""
    from orchestrator import store
    from orchestrator.cli.views import axis_value
    from orchestrator.results import cost

    root = store.sweep_root(spec)
    return PlanOut(
        sweep=spec.name,
        output_dir=abs_path(spec.output_path) or "",
        runs_total=len(runs),
        axes={axis: [axis_value(v) for v in values] for axis, values in spec.grid.items()},
        ablations=dict(Counter(run.ablation for run in runs)),
        runs=[_plan_run(index, run, root) for index, run in enumerate(runs)],
        estimates=[CellEstimate(**c.__dict__) for c in costs],
        estimate_summary=cost.summary(costs),
        warnings=warnings,
        budget=budget,
    )


def _plan_run(index: int, run: RunSpec, root: Path) -> PlanRun:
    from orchestrator import store

    axes = json.loads(json.dumps(run.axes, default=str))
    return PlanRun(
        index=index,
        run_id=run.run_id,
        name=run.name,
        ablation=run.ablation,
        backbone=run.backbone,
        dataset=run.dataset,
        seed=run.seed,
        axes=axes,
        run_dir=abs_path(store.run_path(root, run.run_id)) or "",
    )


def budget_object(spec: SweepSpec, frame: pd.DataFrame | None, costs: list[CellCost]) -> PlanBudget:
    """The budget's verdict as `submit` judges it: GFLOPs and params from the profile `plan` made
    (`frame`; None when it made none), device-hours from the estimate."""
    from orchestrator.cli import profile
    from orchestrator.results import cost

    assert spec.budget is not None
    complexity, over = profile.complexity_verdict(frame, spec.budget) if frame is not None else (None, [])
    limit_h = spec.budget.max_gpu_hours
    hours, problem = cost.hours_verdict(costs, limit_h) if limit_h is not None else (None, None)
    return PlanBudget(
        max_gflops_increase_pct=spec.budget.max_gflops_increase_pct,
        max_params_increase_pct=spec.budget.max_params_increase_pct,
        max_gpu_hours=limit_h,
        complexity=complexity,
        over_budget=over,
        gpu_hours=hours,
        gpu_hours_problem=problem,
    )
