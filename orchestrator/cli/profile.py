"""`orchestrate profile` and the plan's budget verdict on the console (the numbers: checks/complexity.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from orchestrator import textsafe
from orchestrator.checks import complexity
from orchestrator.cli import terminal
from orchestrator.results.labels import decimals_for
from orchestrator.store import profile as profile_file
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import BudgetSpec, SweepSpec
from trainers import contract

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from orchestrator.cli.jsonout_profile import ProfileOut


def budget_lines(frame: pd.DataFrame, budget: BudgetSpec | None) -> list[str]:
    """One line per cell over the budget (empty when within it or without a budget)."""
    if budget is None or frame.empty:
        return []
    lines = []
    for _, row in frame[frame["over_budget"]].iterrows():
        where = f"{row['backbone']}/{row['dataset']}/{row['ablation']}" + (f" {row['axes']}" if row["axes"] else "")
        lines.append(
            f"{where}: GFLOPs {row['gflops_delta_pct']:+.2f}%, params {row['params_delta_pct']:+.2f}% "
            f"vs baseline ({_limits(budget)})"
        )
    return lines


def limits_complexity(budget: BudgetSpec | None) -> bool:
    """Whether a budget limits GFLOPs or params: one with only `max_gpu_hours` (checked by `submit`
    against the cost estimate) has no verdict here."""
    return budget is not None and (
        budget.max_gflops_increase_pct is not None or budget.max_params_increase_pct is not None
    )


def _limits(budget: BudgetSpec) -> str:
    parts = []
    if budget.max_gflops_increase_pct is not None:
        parts.append(f"GFLOPs at most +{budget.max_gflops_increase_pct:g}%")
    if budget.max_params_increase_pct is not None:
        parts.append(f"params at most +{budget.max_params_increase_pct:g}%")
    return "budget: " + ", ".join(parts)


def _profiled_line(frame: pd.DataFrame, seconds: float) -> str:
    """How many cells and distinct models were profiled, and how many cells were not (listed after)."""
    from orchestrator.cli.jsonout_profile import profiled_models

    failed = int(frame["error"].astype(bool).sum()) if not frame.empty else 0
    line = f"{len(frame) - failed} of {len(frame)} cells, {profiled_models(frame)} distinct models profiled"
    return line + f" in {seconds:.1f} s (meta device, batch 1)" + (f"; {failed} not profiled" if failed else "")


def print_profile(frame: pd.DataFrame, spec: SweepSpec, console: Console, seconds: float) -> None:
    """The profile as a table on the console, then the budget verdict."""

    table = terminal.table(title=spec.name)
    for header in ("backbone", "dataset", "ablation", "px", "classes", "GFLOPs", "Params (M)"):
        table.add_column(header, overflow="fold")
    show_axes = bool(frame["axes"].astype(bool).any()) if not frame.empty else False
    if show_axes:
        table.add_column("axes", overflow="fold")
    limited = limits_complexity(spec.budget)
    if limited:
        table.add_column("budget", overflow="fold")
    for _, row in frame.iterrows():
        if row["error"]:
            cells = [*_names(row), str(row["image_size_px"]), "?", "-", "-"]
            cells += [textsafe.rich(row["axes"])] if show_axes else []
            cells += ["?"] if limited else []
            table.add_row(*cells)
            continue
        gflops = _with_delta(row[contract.GFLOPS], row["gflops_delta_pct"], 2)
        params = _with_delta(row[contract.PARAMS_M], row["params_delta_pct"], 3)
        classes = str(row["classes"]) if row["classes"] == row["classes"] else ""
        cells = [*_names(row), str(row["image_size_px"]), classes, gflops, params]
        cells += [textsafe.rich(row["axes"])] if show_axes else []
        if limited:
            cells.append("[red]over[/]" if row["over_budget"] else "ok")
        table.add_row(*cells)
    console.print(table)
    console.print(_profiled_line(frame, seconds))
    for _, row in frame[frame["error"].astype(bool)].iterrows():
        what = textsafe.rich(f"{row['backbone']}/{row['dataset']}: {row['error']}")
        console.print(f"[yellow]not profiled[/]: {what}")
    print_budget(frame, spec, console)


def _names(row: pd.Series) -> list[str]:
    """Backbone, dataset and ablation of a profile row as rich table cells (labels are text, not markup)."""
    return [textsafe.rich(row[key]) for key in ("backbone", "dataset", "ablation")]


def print_budget(frame: pd.DataFrame, spec: SweepSpec, console: Console) -> None:
    """The budget verdict: every cell over it, or one line saying all are within it (nothing without a
    GFLOPs or params limit: "within" no limit is no verdict)."""
    if spec.budget is None or not limits_complexity(spec.budget):
        return
    over = budget_lines(frame, spec.budget)
    for line in over:
        console.print(f"[red]over budget[/]: {textsafe.rich(line)}", soft_wrap=True)
    unknown = int(frame["error"].astype(bool).sum()) if not frame.empty else 0
    if unknown:  # `profile` shows them; never call a budget ok that was not checked
        console.print(f"[red]budget unknown[/]: {unknown} cell(s) could not be profiled")
    elif not over:
        console.print(f"[green]budget ok[/]: every row within {_limits(spec.budget).removeprefix('budget: ')}")


def _with_delta(value: float, delta: float, decimals: int) -> str:
    decimals = decimals_for(value, decimals)
    if delta != delta or delta == 0:  # NaN (no baseline row) or the same model as the baseline
        return f"{value:.{decimals}f}"
    return f"{value:.{decimals}f} ({delta:+.2f}%)"


def _profile(spec: SweepSpec, runs: list[RunSpec], where: str) -> tuple[pd.DataFrame, float]:
    """The plan's backbone names checked as `plan` checks them, torch-free and before any model is built
    (timm would try to download an `hf-hub:` name from the Hub), then the plan profiled: frame, seconds."""
    from orchestrator.checks import preflight

    preflight.check_backbones(spec, runs, where)
    return complexity.profile_frame(spec, runs)


def run_profile(spec: SweepSpec, runs: list[RunSpec], console: Console, where: str, write: bool = True) -> pd.DataFrame:
    """Profile the plan, print it, write profile.csv (unless `write` is False); the frame."""
    frame, seconds = _profile(spec, runs, where)
    print_profile(frame, spec, console, seconds)
    if write:
        path = profile_file.write_profile(spec, frame)
        console.print(f"[green]profile:[/] {path}")
    return frame


def check_budget(spec: SweepSpec, runs: list[RunSpec], console: Console, where: str = "budget") -> pd.DataFrame:
    """Plan-time budget check (`orchestrate plan` with a `budget:`): profile, write profile.csv, verdict.
    Fails closed: a cell that cannot be profiled is a SpecError, not "budget ok", where the budget limits
    GFLOPs or params (a `max_gpu_hours` alone needs no model: an unprofiled cell is no reason to refuse)."""
    frame, seconds = _profile(spec, runs, where)
    profile_file.write_profile(spec, frame)
    console.print(f"budget: {_profiled_line(frame, seconds)}")
    if limits_complexity(spec.budget):
        complexity.require_profiled(frame, where)
    print_budget(frame, spec, console)
    return frame


def profile_json(spec: SweepSpec, runs: list[RunSpec], console: Console, where: str) -> ProfileOut:
    """`profile --json`: profile, write profile.csv, print the budget verdict (stderr under --json), the object."""
    from orchestrator.cli import jsonout_profile

    frame, seconds = _profile(spec, runs, where)
    path = profile_file.write_profile(spec, frame)
    print_budget(frame, spec, console)
    return jsonout_profile.profile_object(spec, frame, seconds, path, budget_lines(frame, spec.budget))


def complexity_verdict(
    frame: pd.DataFrame, budget: BudgetSpec | None
) -> tuple[Literal["ok", "over"] | None, list[str]]:
    """The GFLOPs/params verdict `print_budget` prints, as data: ok or over (with the lines), None without
    such a limit. Call after `complexity.require_profiled`: an unprofiled cell is never a verdict."""
    if not limits_complexity(budget):
        return None, []
    over = budget_lines(frame, budget)
    return ("over" if over else "ok"), over
