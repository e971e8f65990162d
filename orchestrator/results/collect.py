"""Collect: a sweep's run folders (through `reader`) -> runs.csv, every table of the spec, the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.results import reader
from orchestrator.sweep import store, yamlio
from orchestrator.sweep.plan import plan, smoke_plan
from orchestrator.sweep.spec import SpecError, SweepSpec, TableSpec, load_spec, spec_from_dict
from trainers import rundir


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
    from orchestrator.results import tables
    from orchestrator.sweep import complexity as profile_cmd

    planned = plan(spec)
    if root.name == "smoke" and (root / store.SWEEP_FILE).is_file():
        # The smoke folder itself (found by `collect FOLDER`): its runs are smoke runs.
        root, smoke = root.parent, True
    if smoke:
        root, planned = root / "smoke", smoke_plan(planned)
    frame = reader.collect_frame(root, planned)
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
        from orchestrator.results import report as report_mod

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
