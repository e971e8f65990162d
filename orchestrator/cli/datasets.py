"""`orchestrate datasets list | describe`: the registered datasets, and the analysis of one
(class counts and percentages per split, imbalance ratio, image file-size statistics per
class) printed and written as CSV, Markdown and a bar chart PNG.

    orchestrate datasets describe cub200 --root /data/CUB_200_2011
    orchestrate datasets describe site:cub200 --site sites/mycluster.yaml
    orchestrate datasets describe '{name: digits, task: hierarchical}' split_seed=1
    orchestrate datasets describe sweeps/ablation_cub.yaml      # every dataset of a sweep

Heavy imports (pandas, matplotlib, the dataset index) happen inside the functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from orchestrator import textsafe
from orchestrator.cli import jsonout, jsonout_datasets, terminal
from orchestrator.cli.datasets_chart import bar_chart, readable
from orchestrator.cli.jsonout_datasets import DatasetEntry
from orchestrator.results.outputs import digest
from orchestrator.results.render import markdown_escape, slug
from orchestrator.store import placement
from orchestrator.sweep import bounded, site, yamlio
from orchestrator.sweep.errors import SpecError, describe_error
from trainers.config import DataConfig, DatasetConfig

if TYPE_CHECKING:
    import pandas as pd


DEFAULT_OUT = Path("results/datasets")


def parse_dataset(text: str, overrides: Sequence[str], site_file: str | None) -> DatasetConfig:
    """A DatasetConfig from a name, a YAML mapping or `site:NAME`, plus `key=value` fields."""
    raw: Any
    if text.startswith(site.PREFIX):
        path = Path(site_file).expanduser() if site_file else site.site_path({}, Path.cwd())
        if path is None:
            raise SpecError(f"{text}: needs a site file (--site FILE or ${site.ENV_VAR})")
        try:
            loaded = site.load_site(path)
        except site.SiteError as exc:
            raise SpecError(str(exc)) from None
        name = text.removeprefix(site.PREFIX)
        if name not in loaded.datasets:
            raise SpecError(f"{text}: not in datasets of {path} (known: {', '.join(loaded.datasets) or 'none'})")
        raw = site.dataset_entry(loaded, name)
    else:
        try:
            raw = yamlio.loads(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{text}: invalid YAML ({str(exc).splitlines()[0]})") from None
        raw = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(raw, dict):
        raise SpecError(f"{text}: expected a dataset name or mapping")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SpecError(f"{item}: expected key=value (a dataset field)")
        try:
            raw[key.strip()] = yamlio.loads(value)
        except yaml.YAMLError as exc:
            raise SpecError(f"{item}: invalid YAML value ({yamlio.reason(exc)})") from None
    try:
        return DatasetConfig.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"dataset: {describe_error(exc, DatasetConfig)}") from None


def sweep_datasets(path: str, overrides: Sequence[str]) -> list[DatasetConfig]:
    """The distinct datasets of a sweep's runs, in plan order."""
    from orchestrator.sweep.plan import plan
    from orchestrator.sweep.spec import load_spec

    seen: dict[str, DatasetConfig] = {}
    for run in plan(load_spec(path, overrides)):
        ds = run.config.data.dataset
        seen.setdefault(json.dumps(ds.model_dump(mode="json"), sort_keys=True), ds)
    return list(seen.values())


def registered() -> list[DatasetEntry]:
    """Registered datasets: name, label structures (first: default), default files, where they come from."""
    from trainers.datasets.check import IN_MEMORY_TASKS
    from trainers.datasets.index import layouts

    entries = [
        DatasetEntry(name=name, tasks=list(found.tasks), files=dict(found.files), source="files")
        for name, found in sorted(layouts().items())
    ]
    entries += [
        DatasetEntry(name=name, tasks=list(tasks), files={}, source="scikit-learn")
        for name, tasks in IN_MEMORY_TASKS.items()
    ]
    return [*entries, DatasetEntry(name="combined", tasks=["single"], files={}, source="combined")]


def run_list(console: Console, as_json: bool = False) -> int:
    """Registered dataset names with their label structures and default files (`as_json`: one object)."""
    if as_json:
        return jsonout.emit(lambda: (jsonout_datasets.DatasetsListOut(datasets=registered()), 0))
    table = terminal.table("dataset", "tasks (first: default)", "files (override with layout:)")
    for entry in registered():
        if entry.source == "files":
            files = ", ".join(f"{k}={v}" for k, v in entry.files.items())
        elif entry.source == "scikit-learn":
            files = "(bundled with scikit-learn)"
        else:
            files = textsafe.rich("parts: [dataset, ...] (labels offset in order)")
        table.add_row(textsafe.rich(entry.name), ", ".join(entry.tasks), files)
    console.print(table)
    return 0


def run_describe(
    target: str,
    overrides: Sequence[str],
    root: str | None,
    site_file: str | None,
    out: str | None,
    console: Console,
    as_json: bool = False,
) -> int:
    """Describe one dataset (or every dataset of a sweep file) and write the report files
    (`as_json`: one object on stdout, the tables on stderr)."""
    if as_json:
        return jsonout.emit(
            lambda: (
                jsonout_datasets.DatasetsDescribeOut(
                    datasets=_describe(target, overrides, root, site_file, out, console)
                ),
                0,
            )
        )
    _describe(target, overrides, root, site_file, out, console)
    return 0


def _describe(
    target: str, overrides: Sequence[str], root: str | None, site_file: str | None, out: str | None, console: Console
) -> list[jsonout_datasets.DatasetDescription]:
    if target.endswith((".yaml", ".yml")) and Path(target).is_file():
        datasets = sweep_datasets(target, overrides)
    else:
        ds = parse_dataset(target, overrides, site_file)
        datasets = [ds.model_copy(update={"root": root}) if root else ds]
    folders = [
        Path(out) if out and len(datasets) == 1 else Path(out or DEFAULT_OUT) / slug(ds.display_name) for ds in datasets
    ]
    _check_distinct(datasets, folders)
    planned = []
    for ds, folder in zip(datasets, folders, strict=True):
        report = _analyse(ds, console)
        files = render_report(report, ds)
        planned.append((ds, report, folder, files))
    recorded = [check_report(folder, files) for _, _, folder, files in planned]  # every folder before any write
    described = []
    for (ds, report, folder, files), known in zip(planned, recorded, strict=True):
        written = _save_report(folder, files, known)
        console.print(f"[green]written:[/] {', '.join(textsafe.rich(p) for p in written)}")
        described.append(jsonout_datasets.dataset_description(ds, report, written))
    return described


def _check_distinct(datasets: list[DatasetConfig], folders: list[Path]) -> None:
    """SpecError when two reports would share one folder, or one lies inside a dataset (its chart joins the images)."""
    seen: dict[Path, DatasetConfig] = {}
    for ds, folder in zip(datasets, folders, strict=True):
        placement.check_outside_data(folder, datasets, "report folder (--out)")
        first = seen.setdefault(folder, ds)
        if first is not ds:
            raise SpecError(
                f"datasets {first.display_name!r} and {ds.display_name!r} both describe into {folder} "
                "(their names give one folder name); give one a `label` of its own"
            )


def describe_one(ds: DatasetConfig, folder: Path, console: Console) -> list[Path]:
    """Print the report of one dataset and write it under `folder`."""
    written = write_report(_analyse(ds, console), ds, folder)
    console.print(f"[green]written:[/] {', '.join(textsafe.rich(p) for p in written)}")
    return written


def _analyse(ds: DatasetConfig, console: Console) -> Any:
    """The report of one dataset (trainers.datasets.report), printed as tables."""
    from trainers.datasets.report import describe

    try:
        report = describe(DataConfig(dataset=ds))
    except (FileNotFoundError, ValueError) as exc:
        raise SpecError(str(exc)) from None
    view = report.view
    sizes = ", ".join(f"{s} {len(view.targets[s])}" for s in ("train", "val", "test"))
    name = textsafe.rich(f"{ds.display_name}")
    console.print(f"[bold]{name}[/] ({textsafe.rich(ds.name)}, {view.task}): {len(view.class_names)} classes; {sizes}")
    split = json.dumps(view.info.get("policy", view.info), sort_keys=True)
    console.print(textsafe.terminal(f"  split: {split}"), markup=False)
    console.print(_rich(report.counts, "class counts and percentages per split", pct=True))
    console.print(_rich(report.imbalance, "imbalance (largest / smallest non-empty class)"))
    if report.sizes is not None:
        console.print(_rich(report.sizes, "image file sizes (bytes) per class"))
    else:
        console.print("  file sizes: none (images are generated in memory)")
    return report


REPORT_FILES = ("class_counts.csv", "imbalance.csv", "file_sizes.csv", "report.md", "class_counts.png")
MANIFEST = ".describe-written.json"
"""describe's record in its --out folder: each file of REPORT_FILES it wrote, with the hash of its
bytes. A file of those names is replaced only when the record lists it with its current content,
or when it already holds the very bytes about to be written (nothing is lost: a folder described
before the record existed); anything else there is the user's and refused before any write."""


def write_report(report: Any, ds: DatasetConfig, folder: Path) -> list[Path]:
    """class_counts.csv, imbalance.csv, file_sizes.csv, report.md and class_counts.png: all checked
    (`check_report`), then each written atomically."""
    files = render_report(report, ds)
    return _save_report(folder, files, check_report(folder, files))


def render_report(report: Any, ds: DatasetConfig) -> dict[str, bytes]:
    """The bytes of each report file, by name, in REPORT_FILES order (no file_sizes.csv for a
    dataset generated in memory)."""
    files = {}
    tables = {"class_counts": report.counts, "imbalance": report.imbalance, "file_sizes": report.sizes}
    for name, frame in tables.items():
        if frame is not None:
            files[f"{name}.csv"] = frame.to_csv(index=False).encode("utf-8", "backslashreplace")
    heading = f"# Dataset {markdown_escape(ds.display_name)} ({markdown_escape(ds.name)})"
    lines = [heading, "", f"Task: {report.view.task}.", ""]
    lines += [f"Split policy: `{json.dumps(report.view.info.get('policy', {}), sort_keys=True)}`", ""]
    for title, frame in (
        ("Class counts and percentages per split", report.counts),
        ("Imbalance", report.imbalance),
        ("Image file sizes (bytes) per class", report.sizes),
    ):
        if frame is not None:
            lines += [f"## {title}", "", _markdown(frame), ""]
    lines += ["![class counts](class_counts.png)", ""]
    files["report.md"] = "\n".join(lines).encode("utf-8", "backslashreplace")
    files["class_counts.png"] = bar_chart(report.counts, ds.display_name)
    return files


def check_report(folder: Path, files: dict[str, bytes]) -> dict[str, str]:
    """SpecError, before anything is written, when `folder` is no folder, or a file of REPORT_FILES
    there is a link, a folder or a FIFO, or one of `files` there is a file describe did not write
    (see MANIFEST). The record of what describe wrote there (name -> hash)."""
    if os.path.lexists(folder) and not (folder.is_dir() and not folder.is_symlink()):
        raise SpecError(f"--out {folder}: not a folder (the report's files go in a folder)")
    for name in REPORT_FILES:
        path = folder / name
        if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
            raise SpecError(f"{path}: not a plain file; not overwritten (move it aside)")
    known = _load_manifest(folder)
    for name, data in files.items():
        if not _ours(folder / name, data, known.get(name)):
            raise SpecError(
                f"{folder / name}: exists and was not written by datasets describe (or was edited since); "
                "not overwritten (choose another --out or move it aside)"
            )
    return known


def _load_manifest(folder: Path) -> dict[str, str]:
    path = folder / MANIFEST
    try:
        data = bounded.read_json_object(path)
    except bounded.Unreadable as exc:
        raise SpecError(f"{path}: {exc}; describe's record of what it wrote is unreadable (move it aside)") from None
    if data is None:
        return {}
    files = data.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise SpecError(f"{path}: not describe's record of what it wrote (move it aside)")
    return {name: files[name] for name in REPORT_FILES if name in files}


def _read(path: Path) -> bytes | None:
    """The bytes of the regular file `path`; None when absent; Unreadable when anything else."""
    return bounded.read_bytes(path, bounded.INDEX_LIMIT)


def _ours(path: Path, data: bytes, recorded: str | None) -> bool:
    """Whether `path` may be replaced by `data`: absent, recorded with its current content, or `data` already."""
    try:
        current = _read(path)
    except bounded.Unreadable:
        return False
    return current is None or current == data or (recorded is not None and digest(current) == recorded)


def _save_report(folder: Path, files: dict[str, bytes], known: dict[str, str]) -> list[Path]:
    """Write the checked `files` atomically, remove describe's own report files not written this
    time (a file_sizes.csv of an earlier dataset), then the record."""
    from trainers import rundir

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files.items():
        with rundir.atomic_open(folder / name) as handle:  # a temp name of its own, never a planted link
            handle.write(data)
        written.append(folder / name)
    for name in sorted(set(known) - set(files)):
        try:
            current = _read(folder / name)
        except bounded.Unreadable:
            continue
        if current is not None and digest(current) == known[name]:
            (folder / name).unlink()
    record = {"version": 1, "files": {name: digest(data) for name, data in files.items()}}
    rundir.write_text(folder / MANIFEST, json.dumps(record, indent=1) + "\n")
    return written


def _rich(frame: pd.DataFrame, title: str, pct: bool = False) -> Table:
    table = terminal.table(title=title, title_justify="left")
    for column in frame.columns:
        left = column in ("level", "class", "split")
        table.add_column(textsafe.rich(column), justify="left" if left else "right", overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(value, pct) for value in row))
    return table


def _cell(value: Any, pct: bool) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if pct or abs(value) >= 100 else f"{value:.3g}"
    return textsafe.rich(readable(value))  # class names come from the dataset's files (bytes, too)


def _markdown(frame: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs `tabulate`, not a dependency); class names escaped."""
    header = [markdown_escape(c) for c in frame.columns]
    rows = [
        [_cell(v, pct=True) if isinstance(v, float) else markdown_escape(v) for v in row]
        for row in frame.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
