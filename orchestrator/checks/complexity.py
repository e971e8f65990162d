"""`orchestrate profile SPEC`: GFLOPs and params of every cell's exact model, before anything trains.

Each distinct model of the plan (backbone, head width, inserted modules, input size)
is built once on the meta device by `trainers.profile_model`: shapes only, no memory,
no dataset and no pretrained file needed. Class counts come from the datasets' known
sizes (trainers/datasets/known.py); a dataset with no known size (an ImageFolder) is
read from disk when it is there.

The results go to `<output>/profile.csv`, keyed by a hash of what shapes the model,
so `collect` can fill the GFLOPs and Params columns of cells that have not run yet.
A `budget:` in the spec is checked here (and by `orchestrate plan`).
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.sweep.budget import complexity_key, over_budget
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SpecError, SweepSpec
from trainers import contract
from trainers.config import TrainConfig

if TYPE_CHECKING:
    import pandas as pd

    from trainers.datasets.known import LabelShape


@dataclass(frozen=True)
class Profiled:
    """The complexity of one distinct model of the plan."""

    ckey: str
    run: RunSpec
    """The first planned run with this model (its backbone, dataset, ablation name the row)."""
    classes: str | None
    """The heads' class counts as shown (`200`, `2 / 10+novel`, `4 labels`)."""
    gflops: float | None
    params_m: float | None
    seconds: float
    error: str | None = None


Counter = Callable[[TrainConfig, "LabelShape | None"], dict[str, Any]]


def count_model(cfg: TrainConfig, shape: LabelShape | None) -> dict[str, Any]:
    """Complexity of a run's exact model on the meta device (trainers.profile_model).

    A known single-label shape needs no data; a hierarchical or multilabel one builds the
    task's heads from the counts alone; None reads the label structure from the dataset.
    """
    from trainers import profile_model

    if shape is None or shape.task == "single":
        return profile_model(cfg, None if shape is None else shape.num_classes)
    # Looked up by name: the heads API (trainers.model.tasks) is typed and tested on the trainer side.
    task_spec = importlib.import_module("trainers.model.tasks").TaskSpec
    complexity = importlib.import_module("trainers.model.complexity").complexity
    task = task_spec(
        kind=shape.task,
        class_names=tuple(str(i) for i in range(shape.num_classes)),
        super_class_names=tuple(str(i) for i in range(shape.num_super)),
        novel_slot=shape.novel_slot,
    )
    return dict(complexity(cfg, task))


def profile_runs(runs: list[RunSpec], counter: Counter | None = None) -> list[Profiled]:
    """Profile each distinct model of `runs` once, in plan order.

    `counter(cfg, shape)` defaults to `count_model` (meta device); a cell whose label
    shape cannot be found (dataset files absent) gets an `error` instead of numbers.
    """
    from trainers.datasets.known import label_shape

    count = counter or count_model
    seen: dict[str, Profiled] = {}
    for run in runs:
        key = complexity_key(run.config)
        if key in seen:
            continue
        started = time.perf_counter()
        shape = label_shape(run.config.data.dataset)
        classes = shape.describe() if shape is not None else None
        try:
            counted = count(run.config, shape)
        except (OSError, ValueError, KeyError, RuntimeError, ImportError) as error:
            message = _why(run.config, error)
            seen[key] = Profiled(key, run, classes, None, None, time.perf_counter() - started, message)
            continue
        if classes is None and counted.get("num_classes") is not None:
            classes = str(counted["num_classes"])
        elapsed = time.perf_counter() - started
        seen[key] = Profiled(key, run, classes, float(counted["gflops"]), float(counted["params_m"]), elapsed)
    return list(seen.values())


def _why(cfg: TrainConfig, error: Exception) -> str:
    """A one-line reason a model could not be profiled."""
    path = cfg.model.pretrained_path
    if cfg.regime == "pretrained_eval" and path is not None and not Path(path).expanduser().is_file():
        return f"regime pretrained_eval keeps the checkpoint's own head: its width is read from {path}, not here"
    return str(error) or type(error).__name__


def to_frame(runs: list[RunSpec], profiled: list[Profiled], spec: SweepSpec) -> pd.DataFrame:
    """One row per cell (backbone, dataset, ablation, extra axes; seeds collapsed) with its model's
    complexity, the relative change to the baseline row of the same grid cell, and the budget verdict."""
    import pandas as pd

    by_key = {item.ckey: item for item in profiled}
    records: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
    for run, base_key in zip(runs, baseline_keys(runs, spec), strict=True):
        axes = json.dumps(run.axes, sort_keys=True, default=str) if run.axes else ""
        cell = (run.backbone, run.dataset, run.ablation, axes, base_key or "")
        if cell in records:
            continue
        item = by_key[complexity_key(run.config)]
        base = by_key.get(base_key) if base_key is not None else None
        records[cell] = {
            "ckey": item.ckey,
            "backbone": run.backbone,
            "dataset": run.dataset,
            "ablation": run.ablation,
            "axes": axes,
            "image_size_px": run.config.data.image_size_px,
            "classes": item.classes or "",
            contract.GFLOPS: item.gflops,
            contract.PARAMS_M: item.params_m,
            "seconds": round(item.seconds, 3),
            "error": item.error or "",
            "baseline_ckey": base_key or "",
            "gflops_delta_pct": _delta_pct(item.gflops, base.gflops if base else None),
            "params_delta_pct": _delta_pct(item.params_m, base.params_m if base else None),
        }
    frame = pd.DataFrame(list(records.values()))
    if frame.empty:
        return frame
    frame["over_budget"] = over_budget(frame, spec.budget)
    return frame


def baseline_keys(runs: list[RunSpec], spec: SweepSpec) -> list[str | None]:
    """The complexity key of each run's baseline: the baseline row's run of the same grid cell (grid
    backbone and dataset, extra axes), None where the plan has none.

    Found by plan order, not by the resolved backbone and dataset: a row whose modifier swaps the
    backbone (`model.backbone: resnet101`) or the dataset is still compared with its grid cell's
    baseline, not left without one (and its budget verdict silently "ok"). The plan yields each
    (backbone, dataset) grid pair's baseline row first, then its other rows (orchestrator.sweep.plan)."""
    baseline = next(iter(spec.ablations))
    current: dict[str, str] = {}  # extra axes -> the key of the latest baseline run with them
    keys: list[str | None] = []
    for run in runs:
        axes = json.dumps(run.axes, sort_keys=True, default=str)
        if run.ablation == baseline:  # a new grid pair's baseline replaces the previous pair's
            current[axes] = complexity_key(run.config)
        keys.append(current.get(axes))
    return keys


def _delta_pct(value: float | None, reference: float | None) -> float:
    """Relative change in percent; NaN when either is unknown, infinite from a baseline of 0 (never "ok")."""
    if value is None or reference is None:
        return math.nan
    if reference == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return (value - reference) / reference * 100.0


def profile_frame(spec: SweepSpec, runs: list[RunSpec]) -> tuple[pd.DataFrame, float]:
    """Profile the plan's distinct models: the per-cell frame and the seconds it took."""
    started = time.perf_counter()
    frame = to_frame(runs, profile_runs(runs), spec)
    return frame, time.perf_counter() - started


def require_profiled(frame: pd.DataFrame, where: str) -> None:
    """Fail closed: SpecError when a cell could not be profiled (its budget verdict would be a guess)."""
    failed = frame[frame["error"].astype(bool)] if not frame.empty else frame
    if not failed.empty:
        first = failed.iloc[0]
        raise SpecError(
            f"{where}: budget: {len(failed)} cell(s) cannot be profiled, so the budget cannot be checked "
            f"(first: {first['backbone']}/{first['dataset']}: {first['error']})"
        )
