"""The one reader of run folders: files -> records and DataFrames. Nothing else opens a run folder.

Reads only the files each run folder describes itself with (trainers/rundir.py names them):
config.yaml, status.json, metrics.json, history.csv and the CSV tables beside metrics.json.
Never imports the trainer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.sweep import store, yamlio
from orchestrator.sweep.plan import RunSpec
from trainers import rundir
from trainers.rundir import State

if TYPE_CHECKING:
    import pandas as pd

META_COLUMNS = ("run_id", "name", "ablation", "backbone", "dataset", "seed", "state", "in_plan", "path")


@dataclass(frozen=True)
class RunRecord:
    """A planned run joined with what its folder says."""

    run: RunSpec
    path: Path
    state: State
    status: dict[str, Any]


def inspect(runs: list[RunSpec], root: Path) -> list[RunRecord]:
    """Read every planned run's status.json (missing folders are State.MISSING)."""
    records = []
    for run in runs:
        path = store.run_path(root, run.run_id)
        status = rundir.read_json(path / rundir.STATUS) or {}
        state = State(status.get("state", State.MISSING.value))
        records.append(RunRecord(run, path, state, status))
    return records


def read_config(path: Path) -> dict[str, Any] | None:
    """A run folder's config.yaml (metadata + trainer config), or None."""
    try:
        data = yamlio.loads((path / rundir.CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


def run_rows(root: Path, planned: list[RunSpec]) -> Iterator[dict[str, Any]]:
    """One flat dict per run folder under `root/runs` (planned or not), plus planned runs never started."""
    planned_ids = {run.run_id for run in planned}
    runs_dir = root / "runs"
    found: set[str] = set()
    for path in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        config = read_config(path)
        if config is None:
            continue
        found.add(path.name)
        status = rundir.read_json(path / rundir.STATUS) or {}
        metrics = rundir.read_json(path / rundir.METRICS) or {}
        row: dict[str, Any] = {key: config.get(key) for key in META_COLUMNS[:6]}
        row.update(run_id=path.name, state=status.get("state", "missing"), in_plan=path.name in planned_ids)
        row["path"] = str(path)
        row.update(started_at=status.get("started_at"), finished_at=status.get("finished_at"))
        row["pretrained_path"] = ((config.get("trainer") or {}).get("model") or {}).get("pretrained_path")
        row.update({f"axis.{k}": v for k, v in (config.get("axes") or {}).items()})
        row.update(flatten(metrics))
        yield row
    for run in planned:
        if run.run_id not in found:
            yield {**run.metadata(), "state": "missing", "in_plan": True, "path": str(store.run_path(root, run.run_id))}


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b": scalar}; lists and tables are left to their own files."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, str | int | float | bool) or value is None:
            out[name] = value
    return out


def collect_frame(root: Path, planned: list[RunSpec]) -> pd.DataFrame:
    """The sweep's runs as a DataFrame (META_COLUMNS first, then `axis.*` and metric columns)."""
    import pandas as pd

    frame = pd.DataFrame(list(run_rows(root, planned)))
    if frame.empty:
        return pd.DataFrame(columns=list(META_COLUMNS))
    first = [c for c in META_COLUMNS if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def status_of(path: Path) -> dict[str, Any]:
    """A run folder's status.json ({} when there is none)."""
    return rundir.read_json(path / rundir.STATUS) or {}


def result_line(path: Path) -> str:
    """`: test top-1 98.05%, 12.3 s` from a finished run's metrics.json (empty if unreadable)."""
    metrics = rundir.read_json(path / rundir.METRICS) or {}
    top1 = (metrics.get("test") or {}).get("top1")
    wall_s = (metrics.get("timing") or {}).get("wall_s")
    parts = ([f"test top-1 {100 * top1:.2f}%"] if isinstance(top1, int | float) else []) + (
        [f"{wall_s:.1f} s"] if isinstance(wall_s, int | float) else []
    )
    return f": {', '.join(parts)}" if parts else ""


def epochs_done(path: Path) -> int:
    """Finished epochs of a run: the rows of its history.csv (0 before the first)."""
    try:
        return max(0, len((path / rundir.HISTORY).read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0
