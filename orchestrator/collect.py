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
from orchestrator.spec import SpecError, SweepSpec, TableSpec, load_spec, spec_from_dict
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


def load_snapshot(root: Path) -> SweepSpec:
    """The spec a sweep folder was last submitted with (its sweep.yaml)."""
    path = root / store.SWEEP_FILE
    try:
        document = yamlio.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{root}: no {store.SWEEP_FILE}; is this a sweep output folder?") from None
    spec = spec_from_dict(document["spec"], where=str(path))
    if document.get("source"):
        # Custom table templates are named relative to the original sweep file.
        spec._source = Path(document["source"])
    return spec


def find_sweeps(results: Path) -> list[Path]:
    """Sweep output folders directly under a results folder (those with a sweep.yaml)."""
    return sorted(p.parent for p in results.glob(f"*/{store.SWEEP_FILE}"))


@dataclass(frozen=True)
class Written:
    """What `write_tables` produced."""

    table_path: Path
    """The first table's Markdown file."""
    runs_path: Path
    markdown: str
    """Every table in Markdown, as printed by `orchestrate collect`."""
    files: tuple[Path, ...] = ()
    """Every table file written (all formats, custom templates)."""
    report_path: Path | None = None


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


def write_tables(spec: SweepSpec, root: Path, smoke: bool = False, report: bool = False) -> Written:
    """Collect a sweep into `<root>/tables/`: runs.csv, then every table of the spec in its formats;
    with `report`, also `<root>/report/index.html`."""
    from orchestrator import profile_cmd, tables

    planned = plan(spec)
    if root.name == "smoke" and (root / store.SWEEP_FILE).is_file():
        # The smoke folder itself (found by `collect FOLDER`): its runs are smoke runs.
        root, smoke = root.parent, True
    if smoke:
        root, planned = root / "smoke", smoke_plan(planned)
    frame = collect_frame(root, planned)
    out = root / "tables"
    runs_path = out / "runs.csv"
    rundir.write_text(runs_path, frame.to_csv(index=False))
    profile = profile_cmd.read_profile(profile_cmd.profile_path(spec))
    joined = tables.joined_frame(frame, planned, spec, profile)
    context = {"sweep": spec.name + (" (smoke)" if smoke else "")}
    where = str(spec.source or spec.name)
    files: list[Path] = []
    markdown: list[str] = []
    built_all: list[tuple[TableSpec, list[tables.Table]]] = []
    for index, table_spec in enumerate(spec.tables):
        built = tables.build_tables(joined, spec, table_spec, where=f"{where}: tables[{index}]")
        built_all.append((table_spec, built))
        formats = list(dict.fromkeys(["md", *table_spec.formats]))
        for fmt in formats:
            path = out / f"{table_spec.name}.{fmt}"
            text = tables.render(built, fmt, context)
            rundir.write_text(path, text)
            files.append(path)
            if fmt == "md":
                markdown.append(text)
        if table_spec.template:
            template = _template_path(spec, table_spec.template)
            path = out / f"{table_spec.name}.{template.name.removesuffix('.j2')}"
            rundir.write_text(path, tables.render_file(template, built, context))
            files.append(path)
    report_path = None
    if report:
        from orchestrator import report as report_mod

        report_path = report_mod.write_report(spec, root, joined, built_all, context)
    return Written(files[0], runs_path, "\n".join(markdown), tuple(files), report_path)


def _template_path(spec: SweepSpec, name: str) -> Path:
    """A table template named in the spec: absolute, or relative to the spec file."""
    path = Path(name).expanduser()
    if not path.is_absolute() and spec.source is not None:
        path = spec.source.parent / path
    if not path.is_file():
        raise SpecError(f"{spec.source or spec.name}: tables: template {path} does not exist")
    return path
