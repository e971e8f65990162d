"""Preflight: every check that can run before submission, in one place.

A job that waits hours in a queue must not die on a typo: `plan` and `submit` run these
before anything is queued. Checks fail closed: a check that could not run is an error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import ValidationError

from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec
from trainers.config import DatasetConfig


def check(spec: SweepSpec, runs: Sequence[RunSpec], where: str, data: bool = True) -> None:
    """Everything `plan` checks before it shows the plan (datasets on disk unless `data` is False)."""
    if data:
        check_datasets(spec, runs, where)


def check_datasets(spec: SweepSpec, runs: Sequence[RunSpec], where: str) -> None:
    """Check every distinct dataset of the planned runs on disk (roots, annotation files,
    listed images), raising a one-line SpecError that names the spec field."""
    from trainers.datasets.check import check_dataset

    seen: set[str] = set()
    for run in runs:
        ds = run.config.data.dataset
        key = json.dumps(ds.model_dump(mode="json"), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_dataset(ds)
        except (FileNotFoundError, ValueError) as exc:
            raise SpecError(f"{where}: {_origin(spec, run)}: {exc}") from None


def _origin(spec: SweepSpec, run: RunSpec) -> str:
    """The spec field a run's dataset comes from: `grid.dataset[i]`, else `defaults.data.dataset`."""
    resolved = run.config.data.dataset.model_dump(mode="json")
    for index, value in enumerate(spec.grid.get("dataset", [])):
        given = {"name": value} if isinstance(value, str) else value
        if not isinstance(given, dict):
            continue
        try:
            candidate = DatasetConfig.model_validate(given).model_dump(mode="json")
        except ValidationError:
            continue
        if all(candidate.get(k) == resolved.get(k) for k in given):
            return f"grid.dataset[{index}]"
    if "dataset" not in spec.grid:
        return "defaults.data.dataset"
    return f"run {run.name}: data.dataset"
