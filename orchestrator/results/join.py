"""The join of planned runs (the plan) with collected runs (the reader's frame)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.results.labels import axis_dims, display
from orchestrator.sweep import budget
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec
from trainers import contract

if TYPE_CHECKING:
    import pandas as pd

COMPLEXITY_SOURCE = contract.column(contract.COMPLEXITY, "source")
"""Column saying where a row's complexity came from: its run (`run`) or the profile (`profile`)."""
# (metrics column, header, decimals)
COMPLEXITY = ((contract.GFLOPS, "GFLOPs", 2), (contract.PARAMS_M, "Params (M)", 3))


def plan_frame(planned: list[RunSpec], spec: SweepSpec, with_ckey: bool = True) -> pd.DataFrame:
    """One row per planned run: its dimension values as display strings, in plan order. `ckey` (the
    complexity profile's key, a config dump per run) only `with_ckey`: None otherwise."""
    import pandas as pd

    axes = axis_dims(spec)
    # By column: a dict per run was 0.1 s at 10,000 runs.
    columns: dict[str, list[Any]] = {
        "run_id": [run.run_id for run in planned],
        "order": list(range(len(planned))),
        "backbone": [display(run.backbone) for run in planned],
        "dataset": [display(run.dataset) for run in planned],
        "ablation": [run.ablation for run in planned],
        "seed": [display(run.seed) for run in planned],
        "name": [run.name for run in planned],
        "ckey": [budget.complexity_key(run.config) for run in planned] if with_ckey else [None] * len(planned),
    }
    for axis in axes:
        columns[axis] = [display(run.axes.get(axis)) for run in planned]
    return pd.DataFrame(columns)


def joined_frame(
    frame: pd.DataFrame, planned: list[RunSpec], spec: SweepSpec, profile: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Planned runs joined with their collected columns (state, path, metrics). Metrics count only
    for completed runs (`done`); complexity of runs not done comes from `profile` (ckey ->
    complexity.gflops, complexity.params_m), marked in `complexity.source`."""
    with_profile = profile is not None and not profile.empty
    plan = plan_frame(planned, spec, with_ckey=with_profile)
    keep = [c for c in frame.columns if c not in plan.columns or c == "run_id"]
    joined = plan.merge(frame[keep], on="run_id", how="left")
    joined["state"] = joined["state"].fillna("missing") if "state" in joined.columns else "missing"
    joined["done"] = joined["state"] == "completed"
    for column, _, _ in COMPLEXITY:
        if column not in joined.columns:
            joined[column] = float("nan")
        joined[column] = joined[column].astype(float).where(joined["done"])
    joined[COMPLEXITY_SOURCE] = joined[COMPLEXITY[0][0]].notna().map({True: "run", False: None})
    if with_profile:
        assert profile is not None
        lookup = profile.drop_duplicates("ckey").set_index("ckey")
        for column, _, _ in COMPLEXITY:
            if column in lookup.columns:
                filled = joined["ckey"].map(lookup[column])
                missing = joined[column].isna() & filled.notna()
                joined.loc[missing, column] = filled[missing]
                joined.loc[missing, COMPLEXITY_SOURCE] = "profile"
    return joined
