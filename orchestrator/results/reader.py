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


def flatten(data: dict[str, Any], prefix: str = "", keep_lists: bool = False) -> dict[str, Any]:
    """Nested dict -> {"a.b": scalar}; lists are left to their own files unless `keep_lists`."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}.", keep_lists))
        elif keep_lists or isinstance(value, str | int | float | bool) or value is None:
            out[name] = value
    return out


def _json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when missing or not a readable JSON object."""
    try:
        return rundir.read_json(path)
    except (OSError, ValueError):
        return None


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


# ---------------------------------------------------------------------------- tables a run writes

# Name fragments of the CSV tables a run writes beside metrics.json (trainers/metrics.py).
CONFUSION = "confusion"  # confusion_matrix.csv, confusion_matrix_super.csv, per_label_confusion.csv
PER_CLASS = ("per_class", "per_label")
# The split record of a run (trainers/data.py SPLIT_FILE; trainers.data imports torch, so named here).
SPLIT = "split.json"


def histories(dirs: list[tuple[str, Path]]) -> pd.DataFrame:
    """history.csv of each (seed, run folder) as one long frame with a `seed` column (unreadable ones skipped)."""
    import pandas as pd

    frames = []
    for seed, path in dirs:
        frame = _read_csv(path / rundir.HISTORY)
        if frame is not None and "epoch" in frame.columns:
            frames.append(frame.assign(seed=seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["epoch", "seed"])


def confusions(dirs: list[tuple[str, Path]]) -> list[tuple[str, pd.DataFrame]]:
    """Confusion matrices by table name, summed over runs (class names as index and columns)."""
    import pandas as pd

    sums: dict[str, pd.DataFrame] = {}
    for _, path in dirs:
        for name, file in _tables_named(path, CONFUSION).items():
            frame = _read_csv(file)
            if frame is None:
                continue
            frame = frame.set_index(frame.columns[0])
            frame = frame.apply(pd.to_numeric, errors="coerce").fillna(0)
            sums[name] = sums[name].add(frame, fill_value=0) if name in sums else frame
    return sorted(sums.items(), key=_level_order)


def per_class_f1(dirs: list[tuple[str, Path]]) -> list[tuple[str, pd.Series]]:
    """Per-class (or per-label) F1 by table name, mean over runs, in class order."""
    import pandas as pd

    values: dict[str, list[pd.Series]] = {}
    for name, frame in _per_class_tables(dirs):
        if "f1" in frame.columns:
            f1 = pd.to_numeric(frame.set_index(frame.columns[0])["f1"], errors="coerce")
            values.setdefault(name, []).append(f1)
    ordered = sorted(values.items(), key=_level_order)
    return [(name, pd.concat(series, axis=1).mean(axis=1)) for name, series in ordered]


def class_support(dirs: list[tuple[str, Path]]) -> pd.Series | None:
    """Images per class of the test split (the `support` column of the first per-class table)."""
    import pandas as pd

    for _, frame in _per_class_tables(dirs):
        if "support" in frame.columns:
            support = pd.to_numeric(frame.set_index(frame.columns[0])["support"], errors="coerce")
            return support.dropna().astype(int)
    return None


def split_facts(path: Path) -> dict[str, Any]:
    """A run's split.json flattened to {"a.b": value} ({} when absent or unreadable)."""
    data = _json_object(path / SPLIT)
    return flatten(data, keep_lists=True) if data else {}


def _per_class_tables(dirs: list[tuple[str, Path]]) -> Iterator[tuple[str, pd.DataFrame]]:
    """(table name, frame) of every non-empty per-class table of the runs."""
    for _, path in dirs:
        for fragment in PER_CLASS:
            for name, file in _tables_named(path, fragment).items():
                frame = None if CONFUSION in name else _read_csv(file)
                if frame is not None:
                    yield name, frame


def _tables_named(path: Path, fragment: str) -> dict[str, Path]:
    """CSV tables of a run folder whose name contains `fragment` (name without .csv -> path)."""
    found = {}
    for file in sorted(path.rglob(f"*{fragment}*.csv")):
        if rundir.CHECKPOINTS in file.relative_to(path).parts:
            continue
        found[file.stem] = file
    # The test split when the run also wrote validation tables.
    test = {k: v for k, v in found.items() if "val" not in k.split("_")}
    return test or found


def _level_order(item: tuple[str, Any]) -> tuple[bool, str]:
    """Tables of the super level before the sub level, then by name."""
    return ("super" not in item[0], item[0])


def _read_csv(path: Path) -> pd.DataFrame | None:
    """A CSV file as a frame; None when missing, empty or unreadable (a figure is skipped, never a crash)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError):
        return None
    return None if frame.empty else frame
