"""Collect: a sweep's run folders (through `reader`) -> runs.csv, every table of the spec, the report."""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator import store
from orchestrator.results import compare_cache, folder_reads, reader, runs_csv, runs_csv_cache
from orchestrator.results.outputs import Outputs
from orchestrator.store import run_states
from orchestrator.sweep import bounded, forked, gcpause, yamlio
from orchestrator.sweep.errors import short
from orchestrator.sweep.plan import RunSpec, plan, smoke_plan, smoke_seeds
from orchestrator.sweep.spec import MAX_RUNS, SpecError, SweepSpec, TableSpec, load_spec, spec_from_dict
from trainers import rundir

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.results.model import Table


def load_snapshot(root: Path, max_runs: int | None = MAX_RUNS) -> SweepSpec:
    """The spec a sweep folder was last submitted with (its sweep.yaml); a clear SpecError when that
    file is unreadable or truncated, rather than the table of a different, default sweep."""
    path = root / store.SWEEP_FILE
    try:
        text = bounded.read_text(path)
        if text is None:
            raise SpecError(f"{root}: no {store.SWEEP_FILE}; is this a sweep output folder?")
        document = yamlio.loads(text, fast=True)  # written by submit: LibYAML, same rules
    except bounded.Unreadable as exc:
        raise SpecError(f"{root}: {exc}; resubmit the sweep file to rewrite it") from None
    except (yaml.YAMLError, RecursionError, MemoryError) as exc:
        raise SpecError(f"{path}: unreadable ({type(exc).__name__}); resubmit the sweep file to rewrite it") from None
    truncated = _truncated_by(root, text)
    if truncated is not None:
        raise SpecError(f"{path}: truncated ({truncated}); resubmit the sweep file to rewrite it")
    edited = store.snapshot_problem(root)
    if edited is not None:  # its labels and tables would no longer be those the runs were planned with
        raise SpecError(f"{root}: {edited} (or collect the spec file)")
    if not isinstance(document, dict) or not isinstance(document.get("spec"), dict):
        raise SpecError(f"{path}: no `spec:` mapping; resubmit the sweep file to rewrite it")
    # No `spec._source` from the snapshot's `source:`: anyone who can write the results folder can
    # write that line, and custom templates are taken only from a spec file the user names.
    return spec_from_dict(document["spec"], where=str(path), max_runs=max_runs)


def _truncated_by(root: Path, text: str) -> str | None:
    """Why sweep.yaml looks cut short: YAML dumps end with a newline, and the latest submission record
    (written from the same text) is longer and starts with it. None when it looks whole."""
    if not text.endswith("\n"):
        return "it does not end with a newline"
    records = sorted((root / "submissions").glob("*.yaml"))
    for record in reversed(records):  # the latest record that is a readable file (not a folder, not a FIFO)
        try:
            data = bounded.read_bytes(record)
        except bounded.Unreadable:
            continue
        if data is None:
            continue
        latest = data.decode("utf-8", errors="replace")
        return f"{record.name} holds more of it" if len(latest) > len(text) and latest.startswith(text) else None
    return None


def find_sweeps(results: Path) -> list[Path]:
    """Sweep output folders directly under a results folder (those with a sweep.yaml)."""
    return sorted(p.parent for p in results.glob(f"*/{store.SWEEP_FILE}"))


class NothingFinished(Exception):
    """No planned run of the sweep has completed: `write_tables` wrote nothing (no empty tables,
    no runs.csv, no report). The message is the one line `collect` prints."""


INDEX_FILE = ".collect-index.json"
"""Per-run-folder cache of what `collect` read (under the sweep folder), keyed by file size and mtime."""


@dataclass(frozen=True, kw_only=True)
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
    problems: tuple[run_states.Problem, ...] = ()
    """Broken run folders and values, by run (printed by `collect` as its problems section); with the
    report, also the run files its figures could not use."""
    usable: int = 0
    """Planned runs with a usable value of some table's metric; 0 makes `collect` exit non-zero."""
    counts: dict[str, int] = field(default_factory=dict)
    """Planned runs per state (completed, missing, unknown, ...)."""
    usage_path: Path | None = None
    """usage.csv: per completed run, what its job requested against what it used."""
    usage_lines: tuple[str, ...] = ()
    """The requested-vs-used summary `collect` prints after the tables."""


def resolve_target(target: Path, overrides: list[str], max_runs: int | None = MAX_RUNS) -> list[tuple[SweepSpec, Path]]:
    """A sweep file, a sweep output folder, or a folder of sweep output folders -> (spec, root) pairs;
    a sweep planning more than `max_runs` runs is refused (SpecError), as `plan` refuses it."""
    if target.is_file():
        spec = load_spec(target, overrides, max_runs=max_runs)
        return [(spec, spec.output_path)]
    refuse_overrides(target, overrides)
    if (target / store.SWEEP_FILE).is_file():
        return [(load_snapshot(target, max_runs), target.resolve())]
    if target.is_dir():
        found = sweeps_under(target, max_runs)
        if found:
            return found
        raise SpecError(f"{target}: no sweep output here (no {store.SWEEP_FILE} in it or its subfolders)")
    raise SpecError(f"{target}: no such sweep file or folder")


def refuse_overrides(folder: Path, overrides: list[str]) -> None:
    """SpecError when overrides come with a folder: its sweep.yaml is what ran, so they would be
    ignored without a word (they apply to a sweep file, as `plan` and `submit` take them)."""
    if overrides:
        raise SpecError(
            f"{folder}: overrides ({short(' '.join(overrides))}) apply to a sweep file; a results folder is "
            "collected as its sweep.yaml says (give the sweep file, with the overrides it was submitted with)"
        )


def sweeps_under(results: Path, max_runs: int | None = MAX_RUNS) -> list[tuple[SweepSpec, Path]]:
    """(spec, root) of every sweep output folder directly under `results`."""
    return [(load_snapshot(root, max_runs), root.resolve()) for root in find_sweeps(results)]


def write_tables(spec: SweepSpec, root: Path, smoke: bool = False, report: bool = False) -> Written:
    """Collect a sweep into `<root>/tables/`: runs.csv, then every table of the spec in its formats;
    with `report`, also `<root>/report/index.html`. Never raises on a bad run folder: broken runs are
    left out of the numbers and listed in `problems`. NothingFinished, before any file is written,
    when no planned run has completed yet."""
    # The whole collect makes a sweep's worth of acyclic objects (plan, rows, frames, cells); the
    # collector's passes over them were 0.1-0.3 s of a second collect at 10,000 runs (see gcpause).
    with gcpause.paused_gc():
        return _write_tables(spec, root, smoke, report)


def _write_tables(spec: SweepSpec, root: Path, smoke: bool, report: bool) -> Written:
    from orchestrator.results import adaptive, tables
    from orchestrator.store import profile as profile_cmd

    root, planned, smoke = _collected_runs(spec, root, smoke)
    _check_finished(spec, root, planned, smoke)
    outputs = _checked_outputs(spec, root, smoke, report)
    out = outputs.folder("tables")
    try:
        collected = reader.read_sweep(root, planned, root / INDEX_FILE, wait=False)
        runs_path = out / "runs.csv"
        # Formatted by a forked worker while this process builds the tables (runs_csv_cache: unchanged lines kept).
        workers = folder_reads.worker_count(len(collected.frame))
        runs_text = forked.later(functools.partial(runs_csv_cache.text, collected, root, runs_path), workers)
        usage_texts = forked.later(functools.partial(_usage_texts, collected.frame, root), workers)
        refused = False
        try:
            profile = profile_cmd.read_profile(profile_cmd.profile_path(spec))
            joined = adaptive.annotate(tables.joined_frame(collected.frame, planned, spec, profile), spec, root)
            context = {"sweep": spec.name + (" (smoke)" if smoke else "")}
            with compare_cache.remembered(root):  # a delta whose cells did not change is not bootstrapped again
                files, markdown, built_all = _write_table_files(spec, joined, outputs, context)
            files.extend(adaptive.write_rounds(spec, root, outputs))
            usable, value_problems = _usable(joined, spec)
            counts = {str(k): int(v) for k, v in joined["state"].value_counts().items()}
            problems = tuple(collected.problems) + tuple(value_problems)
            usage_path, usage_lines = _write_usage(usage_texts(), outputs)
        except SpecError:
            refused = True  # bad input (a table or template refused): no runs.csv either
            raise
        finally:
            try:
                if not refused:
                    runs_csv_cache.write(outputs, root, runs_path, runs_text())  # the frame as read_sweep returned it
            finally:
                collected.index_written()
                with contextlib.suppress(Exception):  # its worker shut down when the tables failed
                    usage_texts()
        report_path = None
        if report:
            from orchestrator.results import report as report_mod

            lines = [str(p) for p in problems]
            with gcpause.resumed_gc():  # its figures are cyclic garbage
                report_path, unusable = report_mod.write_report(spec, root, joined, built_all, context, lines, outputs)
            problems += tuple(unusable)  # run files its figures could not use, printed with the others
    finally:
        outputs.save()  # what was written so far is collect's, even when a later step failed
    return Written(
        table_path=files[0],
        runs_path=runs_path,
        markdown="\n".join(markdown),
        files=tuple(files),
        report_path=report_path,
        problems=problems,
        usable=usable,
        counts=counts,
        usage_path=usage_path,
        usage_lines=usage_lines,
    )


def _checked_outputs(spec: SweepSpec, root: Path, smoke: bool, report: bool) -> Outputs:
    """collect's writes under `root`, every file it will write checked before the first is (no
    user's file there, no symlinked folder on the way): an edited table.md was refused only after
    runs.csv had been replaced."""
    if smoke:
        Outputs(root.parent).folder("smoke")  # the smoke folder itself is no symlink out of the sweep folder
    outputs = Outputs(root)
    outputs.check(_output_paths(spec, root, outputs, report))
    return outputs


def _output_paths(spec: SweepSpec, root: Path, outputs: Outputs, report: bool) -> list[Path]:
    """Every file `_write_tables` writes under `root` (and the report figures it may replace)."""
    from orchestrator.results import adaptive

    out = root / "tables"
    paths = [out / "runs.csv", out / "usage.csv"]
    for table_spec in spec.tables:
        paths += [out / f"{table_spec.name}.{fmt}" for fmt in dict.fromkeys(["md", *table_spec.formats])]
        if table_spec.template and spec.source is not None:
            paths.append(_custom_path(spec, table_spec, out)[0])
    if spec.seeds is not None and (root / adaptive.ADAPTIVE_FILE).exists():
        paths.append(out / "adaptive_rounds.csv")
    if report:
        from orchestrator.results.report import IMG_DIR, INDEX, REPORT_DIR

        paths.append(root / REPORT_DIR / INDEX)
        paths += outputs.existing(root / REPORT_DIR / IMG_DIR, ".png")  # any may be replaced or removed
    return paths


def _collected_runs(spec: SweepSpec, root: Path, smoke: bool) -> tuple[Path, list[RunSpec], bool]:
    """The folder whose runs are collected, its planned runs so far, and whether they are smoke runs."""
    from orchestrator.results import adaptive

    planned = plan(spec)
    if root.name == "smoke" and (root / store.SWEEP_FILE).is_file():
        # The smoke folder itself (found by `collect FOLDER`): its runs are smoke runs.
        root, smoke = root.parent, True
    if smoke:  # what `submit --smoke` ran
        return root / "smoke", smoke_plan(smoke_seeds(spec, planned)), smoke
    return root, adaptive.scheduled(spec, planned, root), smoke  # adaptive seeds: the rounds' runs so far


def _check_finished(spec: SweepSpec, root: Path, planned: list[RunSpec], smoke: bool) -> None:
    """NothingFinished when no planned run's status.json says completed (read from status files
    only: nothing is indexed or written for a sweep that has nothing to show). It stops at the first
    completed run; only a sweep with none reads every status.json, for the message."""
    from orchestrator.store import run_ids

    # Most sweeps have a completed run under its own id: found without mapping every folder; then
    # the folders an older id rule named (run_ids), the only ones not looked at yet.
    for run in planned:
        status, problem = run_states.read_status(store.run_path(root, run.run_id))
        if problem is None and status.state == rundir.State.COMPLETED.value:
            return
    for run_id, path in run_ids.run_folders(root, planned).items():
        if path.name == run_id:
            continue
        status, problem = run_states.read_status(path)
        if problem is None and status.state == rundir.State.COMPLETED.value:
            return
    states = Counter(record.state.value for record in run_states.inspect(planned, root, check_results=False))
    if states[rundir.State.COMPLETED.value]:
        return
    others = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    what = f"{spec.name} (smoke)" if smoke else spec.name
    raise NothingFinished(
        f"{what}: nothing to collect yet: 0 of {len(planned)} planned runs completed ({others}); no files written"
    )


def _usage_texts(frame: pd.DataFrame, root: Path) -> tuple[str, tuple[str, ...]]:
    """usage.csv's text (requested vs used per completed run) and its printed summary (on a forked
    worker at 2,000 runs and more: 0.1-0.2 s of a second collect at 10,000 runs)."""
    from orchestrator.results import usage

    used = usage.usage_frame(frame, root)
    return runs_csv.csv_text(used), tuple(usage.summary_lines(used))  # to_csv's bytes, in a third of its time


def _write_usage(texts: tuple[str, tuple[str, ...]], outputs: Outputs) -> tuple[Path, tuple[str, ...]]:
    """tables/usage.csv from `_usage_texts`, and its printed summary."""
    text, lines = texts
    path = outputs.folder("tables") / "usage.csv"
    outputs.write_text(path, text)
    return path, lines


def _write_table_files(
    spec: SweepSpec, joined: pd.DataFrame, outputs: Outputs, context: dict[str, Any]
) -> tuple[list[Path], list[str], list[tuple[TableSpec, list[Table]]]]:
    """Every table of the spec in each of its formats (and its custom template): files, Markdown,
    tables. All are rendered before the first is written: a table or template refused (SpecError)
    leaves every file as it was."""
    from orchestrator.results import tables

    out = outputs.folder("tables")
    where = str(spec.source or spec.name)
    texts: dict[Path, str] = {}
    markdown: list[str] = []
    built_all: list[tuple[TableSpec, list[Table]]] = []
    for index, table_spec in enumerate(spec.tables):
        built = tables.build_tables(joined, spec, table_spec, where=f"{where}: tables[{index}]")
        built_all.append((table_spec, built))
        # The custom template first: its warning (when skipped) belongs in every format's notes.
        custom = _render_custom(spec, table_spec, built, out, context) if table_spec.template else {}
        for fmt in dict.fromkeys(["md", *table_spec.formats]):
            text = tables.render(built, fmt, {**context, "tex_notes": table_spec.tex_notes})
            texts[out / f"{table_spec.name}.{fmt}"] = text
            if fmt == "md":
                markdown.append(text)
        for path, text in custom.items():  # a template named like a format's file: the format's text
            texts.setdefault(path, text)
    for path, text in texts.items():
        outputs.write_text(path, text)
    return list(texts), markdown, built_all


def _render_custom(
    spec: SweepSpec, table_spec: TableSpec, built: list[Table], out: Path, context: dict[str, Any]
) -> dict[Path, str]:
    """The table through the spec's own template (sandboxed; orchestrator.sweep.templates says which
    files qualify), by the path it goes to. From a results folder alone (no spec file) it is skipped
    with a warning."""
    from orchestrator.results import tables
    from orchestrator.sweep import templates

    if spec.source is None:
        for table in built:
            table.warnings.append(
                f"custom template {table_spec.template} not rendered: collect the spec file to render it"
            )
        return {}
    path, (root, name, owner) = _custom_path(spec, table_spec, out)
    try:
        text = tables.render_file(root, name, built, context, owner)
    except (templates.TemplateFileError, tables.TemplateRefused) as exc:
        raise SpecError(f"{spec.source}: tables.{table_spec.name}.template: {exc}") from None
    return {path: text}


def _custom_path(spec: SweepSpec, table_spec: TableSpec, out: Path) -> tuple[Path, tuple[Path, str, int]]:
    """Where a table's custom template is written (in `out`), and the template (templates.user_template);
    SpecError when the spec's template cannot be used."""
    from orchestrator.sweep import templates

    assert table_spec.template is not None
    try:
        template = templates.user_template(spec.source, table_spec.template)
    except templates.TemplateFileError as exc:
        raise SpecError(f"{spec.source}: tables.{table_spec.name}.template: {exc}") from None
    stem = Path(template[1]).name
    return out / f"{table_spec.name}.{stem.removesuffix('.j2').removesuffix('.jinja')}", template


def _usable(joined: pd.DataFrame, spec: SweepSpec) -> tuple[int, list[run_states.Problem]]:
    """Completed runs with a usable value of some table metric, and completed runs without one that
    the reader did not already name (the metric missing from their metrics.json)."""
    import pandas as pd

    from orchestrator.results.labels import metric_column

    columns = list(dict.fromkeys(metric_column(m) for table in spec.tables for m in table.metrics))
    present = [c for c in columns if c in joined.columns]
    done = joined[joined["done"]]
    values = done[present].apply(pd.to_numeric, errors="coerce") if present else pd.DataFrame(index=done.index)
    usable = values.notna().any(axis=1) if present else pd.Series(False, index=done.index)
    problems = []
    already = done["problem"].notna() if "problem" in done.columns else pd.Series(False, index=done.index)
    unnamed = ~usable & ~already
    for (_, row), (_, row_values) in zip(done[unnamed].iterrows(), values[unnamed].iterrows(), strict=True):
        missing = ", ".join(c for c in present if pd.isna(row_values[c])) or "any table metric"
        problems.append(
            run_states.Problem(str(row["run_id"]), str(row["name"]), f"completed without a usable {missing}")
        )
    return int(usable.sum()), problems
