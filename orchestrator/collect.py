"""Collect: run folders -> one tidy pandas DataFrame, one row per run.

Reads only the files each run folder describes itself with (config.yaml,
status.json, metrics.json); never imports the trainer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import store, yamlio
from orchestrator.plan import RunSpec, plan, smoke_plan
from orchestrator.spec import SpecError, SweepSpec, load_spec, spec_from_dict
from trainers import rundir

if TYPE_CHECKING:
    import pandas as pd

META_COLUMNS = ("run_id", "name", "ablation", "backbone", "dataset", "seed", "state", "in_plan", "path")


def run_rows(root: Path, planned: list[RunSpec]) -> Iterator[dict[str, Any]]:
    """One flat dict per run folder under `root/runs` (planned or not), plus planned runs never started."""
    planned_ids = {run.run_id for run in planned}
    runs_dir = root / "runs"
    found: set[str] = set()
    for path in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        config = store.read_config(path)
        if config is None:
            continue
        found.add(path.name)
        status = rundir.read_json(path / rundir.STATUS) or {}
        metrics = rundir.read_json(path / rundir.METRICS) or {}
        row: dict[str, Any] = {key: config.get(key) for key in META_COLUMNS[:6]}
        row.update(run_id=path.name, state=status.get("state", "missing"), in_plan=path.name in planned_ids)
        row["path"] = str(path)
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


def load_snapshot(root: Path) -> SweepSpec:
    """The spec a sweep folder was last submitted with (its sweep.yaml)."""
    path = root / store.SWEEP_FILE
    try:
        document = yamlio.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{root}: no {store.SWEEP_FILE}; is this a sweep output folder?") from None
    spec = spec_from_dict(document["spec"], where=str(path))
    return spec


def find_sweeps(results: Path) -> list[Path]:
    """Sweep output folders directly under a results folder (those with a sweep.yaml)."""
    return sorted(p.parent for p in results.glob(f"*/{store.SWEEP_FILE}"))


@dataclass(frozen=True)
class Written:
    """What `write_tables` produced."""

    table_path: Path
    runs_path: Path
    markdown: str


def resolve_target(target: Path, overrides: list[str]) -> list[tuple[SweepSpec, Path]]:
    """A sweep file, a sweep output folder, or a folder of sweep output folders -> (spec, root) pairs."""
    if target.is_file():
        spec = load_spec(target, overrides)
        return [(spec, spec.output_path)]
    if (target / store.SWEEP_FILE).is_file():
        return [(load_snapshot(target), target.resolve())]
    if target.is_dir():
        found = sweeps_under(target)
        if found:
            return found
        raise SpecError(f"{target}: no sweep output here (no {store.SWEEP_FILE} in it or its subfolders)")
    raise SpecError(f"{target}: no such sweep file or folder")


def sweeps_under(results: Path) -> list[tuple[SweepSpec, Path]]:
    """(spec, root) of every sweep output folder directly under `results`."""
    return [(load_snapshot(root), root.resolve()) for root in find_sweeps(results)]


def write_tables(spec: SweepSpec, root: Path, smoke: bool = False) -> Written:
    """Collect a sweep into `<root>/tables/runs.csv` and `table.md`; returns paths and the Markdown."""
    from orchestrator import tables

    planned = plan(spec)
    if smoke:
        root, planned = root / "smoke", smoke_plan(planned)
    frame = collect_frame(root, planned)
    out = root / "tables"
    runs_path = out / "runs.csv"
    rundir.write_text(runs_path, frame.to_csv(index=False))
    built = tables.ablation_tables(frame, planned)
    markdown = tables.render(built, "md", _context(spec, frame, smoke))
    table_path = out / "table.md"
    rundir.write_text(table_path, markdown)
    return Written(table_path, runs_path, markdown)


def _context(spec: SweepSpec, frame: pd.DataFrame, smoke: bool) -> dict[str, Any]:
    """Title, labels and footnotes of the rendered tables."""
    baseline = next(iter(spec.ablations))
    notes = [
        f"Cells: test top-1 (%) as mean ± std over seeds, (Δ) against '{baseline}'; "
        "(n/N seeds) where runs are missing; '-' where none finished; best in bold.",
        "GFLOPs: 2 x multiply-adds at batch 1 and the run's input size (torch.utils.flop_counter); "
        "params: exact count of the model trained; (Δ%) relative to the baseline row.",
    ]
    if "provenance.git_commit" in frame.columns:
        commits = sorted({str(c)[:10] for c in frame["provenance.git_commit"].dropna()})
        if commits:
            notes.append(f"Code version(s): {', '.join(commits)}.")
    return {
        "sweep": spec.name + (" (smoke)" if smoke else ""),
        "metric_label": "test top-1 (%)",
        "row_header": "Ablation",
        "notes": notes,
    }
