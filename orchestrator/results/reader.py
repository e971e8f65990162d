"""Run folders -> rows: one flat row per run folder (plan metadata, state, metric columns through
trainers.contract) and the sweep's DataFrame, with the incremental index (results.index).

Reads only the files each run folder describes itself with (trainers/rundir.py names them);
run states are the store's (orchestrator.store.run_states). Never imports the trainer.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator import store, textsafe
from orchestrator.results import folder_reads, index_file
from orchestrator.results import index as index_of
from orchestrator.results.outputs import escaped
from orchestrator.results.run_files import dig
from orchestrator.store import run_ids
from orchestrator.store.run_states import Problem, folder_kind, read_metrics, read_status
from orchestrator.sweep import bounded, forked, gcpause, yamlio
from orchestrator.sweep.plan import RunSpec
from trainers import rundir
from trainers.contract import BROKEN, META_COLUMNS, UNKNOWN, RunStatus, State, clean_metrics, flatten

if TYPE_CHECKING:
    import pandas as pd


class _FastLoader(yaml.CSafeLoader):
    """LibYAML's safe loader with yamlio's YAML 1.2 float rule (`1e-4` is a float): about 8x faster
    than the pure-Python parser, which was 96% of `collect` on 10,000 runs."""


# The very resolver table of yamlio's loader (sweep/ owns the number rules; this only swaps the parser).
_FastLoader.yaml_implicit_resolvers = yamlio._Loader.yaml_implicit_resolvers


__all__ = [
    "BROKEN",
    "META_COLUMNS",
    "UNKNOWN",
    "Problem",
    "State",
    "clean_metrics",
    "flatten",
]  # read here, defined there


def read_config(path: Path) -> dict[str, Any] | None:
    """A run folder's config.yaml (metadata + trainer config), or None when missing or unreadable."""
    config, _ = _parse_config(path)
    return config


def _parse_config(path: Path, preread: bounded.Preread | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """config.yaml parsed with LibYAML (yamlio's number rules), and a problem text. Bounded: a size
    limit, no aliases (bounded.check_yaml_budget), LibYAML's own nesting limit."""
    try:
        text = bounded.read_text(path / rundir.CONFIG, preread=preread)
        if text is None:
            return None, f"no {rundir.CONFIG}"
        bounded.check_yaml_budget(text, rundir.CONFIG, _FastLoader)
        data = yaml.load(text, Loader=_FastLoader)
    except bounded.Unreadable as exc:
        return None, str(exc)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        return None, f"{rundir.CONFIG}: invalid YAML{where}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return None, f"{rundir.CONFIG}: unreadable ({type(exc).__name__})"
    if not isinstance(data, dict):
        return None, f"{rundir.CONFIG}: not a mapping"
    odd = _not_json(data)
    if odd is not None:  # the row and the index hold plain JSON values (a date there stopped collect)
        return None, f"{rundir.CONFIG}: {odd}"
    return data, None


_JSON_SCALARS = (str, int, float, bool, type(None))
"""Python's types of JSON's scalars (bool is an int); json.dumps takes them as keys too."""


def _not_json(data: dict[str, Any]) -> str | None:
    """Where a parsed config.yaml holds a value that is no JSON value (a YAML date, `!!binary`,
    `!!set`, `!!timestamp`: yamlio writes none of them), or None. A walk with a stack, not
    recursion: LibYAML nests 1,000 levels deep."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, _JSON_SCALARS):
                    return f"key {str(key)[:40]!r} of {where[:200] or 'the top level'} is a YAML {type(key).__name__}"
                stack.append((f"{where}.{key}" if where else str(key), item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
        elif not isinstance(value, _JSON_SCALARS):
            return f"{where[:200]} is a YAML {type(value).__name__}, not a JSON value (text, number, list or mapping)"
    return None


def _check_config(path: Path, run_id: str, recorded: str, preread: bounded.Preread | None) -> str | None:
    """A planned run's config.yaml without parsing it (its metadata comes from the plan, whose run id
    is the config's hash): present, UTF-8, starts with its run id (or `recorded`, the id its folder
    is named by), complete (ends with a newline)."""
    try:
        text = bounded.read_text(path / rundir.CONFIG, preread=preread)
    except bounded.Unreadable as exc:
        return str(exc)
    if text is None:
        return f"no {rundir.CONFIG}"
    ids = (run_id, recorded)
    if not any(text.startswith(f"run_id: {i}\n") for i in ids) or not text.endswith("\n"):
        config, problem = _parse_config(path, preread)  # the parser names the line when it is invalid YAML
        if problem is not None:
            return problem
        if config is None or str(config.get("run_id")) not in ids:
            return f"{rundir.CONFIG}: records run id {config.get('run_id') if config else None!r}, not {run_id!r}"
    return None


def read_run(
    path: Path, run: RunSpec | None, preread: bounded.Preread | None = None
) -> tuple[dict[str, Any], list[str]]:
    """One run folder as a flat row and the problems found; never raises.

    `run` is the planned run of this folder (None: a folder the plan no longer has, read from its
    config.yaml). Unreadable values are left out of the row and named in the problems. `preread`:
    the bytes of its files already read (by name), parsed instead of reading them again.
    """
    kind = folder_kind(path)
    if kind is not None:
        return {"run_id": path.name, "state": BROKEN}, [kind]
    problems: list[str] = []
    row: dict[str, Any] = {"run_id": path.name}
    facts: dict[str, Any] | None
    if run is not None:
        # A folder named under an older id rule records that id until it is run again.
        config_problem = _check_config(path, run.run_id, path.name, preread)
        facts = plan_facts(run)
    else:
        config, config_problem = _parse_config(path, preread)
        facts = None if config is None else _recorded_facts(config)
    if config_problem is not None:
        problems.append(config_problem)
    if facts is None:
        return {**row, "state": BROKEN}, problems
    row.update(facts)
    status, status_problem = read_status(path, preread)
    problems += [status_problem] if status_problem else []
    state = UNKNOWN if status_problem else status.state
    row.update(state=BROKEN if config_problem else state)
    row.update(started_at=status.started_at, finished_at=status.finished_at)
    accum = retried_accum(status)
    if accum is not None:  # a column only in sweeps that have such a run (runs.csv stays as it was)
        row[RETRY_ACCUM] = accum
    values, metric_problems = read_metrics(path, run, preread)
    if not values and row["state"] == State.COMPLETED.value and not metric_problems:
        metric_problems.append(f"completed without {rundir.METRICS}")
    row.update(values)
    return _shown_row(row), problems + metric_problems


def plan_facts(run: RunSpec) -> dict[str, Any]:
    """A planned folder's row values that come from the plan, not from the folder: name, ablation,
    backbone, dataset, seed, checkpoint and axes (read_run's row order)."""
    metadata = run.metadata()
    facts = {key: metadata[key] for key in META_COLUMNS[1:6]}
    return {**facts, "pretrained_path": _pretrained(run), **{f"axis.{k}": v for k, v in run.axes.items()}}


def _recorded_facts(config: dict[str, Any]) -> dict[str, Any]:
    """plan_facts of a folder the plan no longer has, from the config.yaml it recorded."""
    facts = {key: config.get(key) for key in META_COLUMNS[1:6]}
    facts["pretrained_path"] = dig(config, "trainer", "model", "pretrained_path")
    axes = config.get("axes")
    return {**facts, **{f"axis.{k}": v for k, v in (axes.items() if isinstance(axes, dict) else [])}}


def _shown_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row with control, bidi and zero-width characters of its texts (a device name, an axis
    value, a key) shown as `\\x1b`: runs.csv and the tables are read in terminals and spreadsheets,
    where an ANSI sequence from a run file would run. Only rows read from files pay (the index keeps them)."""
    texts = itertools.compress(row.values(), map(isinstance, row.values(), itertools.repeat(str)))
    if "".join(itertools.chain(row, texts)).isprintable():  # C speed: a row of 140 columns is clean as a whole
        return row
    shown = textsafe.printable
    return {shown(key): shown(value) if isinstance(value, str) else value for key, value in row.items()}


RETRY_ACCUM = "retry_grad_accum_factor"
"""Column: the factor a CUDA out-of-memory retry multiplied the run's gradient accumulation by (None: 1)."""


def retried_accum(status: RunStatus) -> int | None:
    """The latest attempt's grad_accum_factor when a CUDA-OOM retry changed it (tables note those runs)."""
    factor = status.attempts[-1].resources.grad_accum_factor if status.attempts else 1
    return factor if factor > 1 else None


def _pretrained(run: RunSpec) -> str | None:
    path = getattr(run.config.model, "pretrained_path", None)
    return None if path is None else str(path)


@dataclass
class Collected:
    """A sweep's run folders read: one row per folder or never-started planned run, and the problems."""

    frame: pd.DataFrame
    problems: list[Problem]
    read_runs: int = 0
    """Run folders read from their files this time (the others came from the index)."""
    index_written: Callable[[], None] = lambda: None
    """Waits until the index is written (read_sweep with `wait=False` returns before that)."""
    rows_from: Saves = field(default_factory=lambda: Saves(None, None, frozenset(), 0))
    """Which frame rows are those of the index save read (results.runs_csv_cache reuses their lines)."""


@dataclass(frozen=True)
class Saves:
    """The frame's first `folders` rows are the index's folders; the rows not at `reread` are those of
    the index save `loaded` (None: no index, or one without a save token), and `saved` names the save
    this read makes (the same as `loaded` when it writes nothing; None when there is no index file)."""

    loaded: str | None
    saved: str | None
    reread: frozenset[int]
    folders: int


def read_sweep(root: Path, planned: list[RunSpec], index_path: Path | None = None, wait: bool = True) -> Collected:
    """Every folder under `root/runs` (planned or not) plus planned runs never started; never raises.

    With `index_path`, rows are cached there per run folder and re-read only when a file of the
    folder changed (size or modification time), so a second `collect` reads only what changed.
    The index is written by a forked worker at 2,000 folders and more; without `wait` this returns
    before it is written, and the caller calls `index_written()` (collect builds its tables meanwhile).
    """
    with gcpause.paused_gc():  # millions of acyclic objects: rows, the index's JSON
        collected = _read_sweep(root, planned, index_path)
    if wait:
        collected.index_written()
    return collected


def _read_sweep(root: Path, planned: list[RunSpec], index_path: Path | None) -> Collected:
    folders = run_ids.run_folder_names(root, planned)
    by_id = {folders[run.run_id]: run for run in planned}  # by folder name
    runs_dir = str(root / "runs")
    listed = sorted(n for n in _listdir(runs_dir) if not n.startswith("."))  # skip atomic-write temporaries
    names = [n for n in listed if n.isascii() or _utf8(n)]
    odd = [Problem(escaped(n), "?", NOT_UTF8) for n in listed if not _utf8(n)] if len(names) < len(listed) else []
    seen = _stats_ahead(runs_dir, names, index_path)
    index = index_file.load_index(index_path) if index_path is not None else index_of.Index([])
    rows = index_of.aligned(index, names)
    stats = seen()
    jobs: list[folder_reads.Job] = [
        (name, rows.entry(i))  # a folder whose files all keep their indexed stat is not opened
        for i, name in enumerate(names)
        if not index_of.unchanged(f"{runs_dir}/{name}", rows.signatures[i], name in by_id, stats[i])
    ]
    position = {name: i for i, name in enumerate(names)} if jobs else {}
    rehashed = 0
    reread: list[int] = []
    for batch in folder_reads.read_folders(runs_dir, jobs, by_id, read_run):
        fresh, moved = folder_reads.file_batch(rows, batch, position)
        reread += fresh
        rehashed += moved
    saved: Callable[[], None] = lambda: None  # noqa: E731
    changed = [position[name] for name, _ in jobs]  # the index's change file holds only these
    saves = Saves(rows.state, rows.state if index_path is not None else None, frozenset(reread), len(names))
    if index_path is not None and (reread or rehashed or names != index.names):
        # Written by a forked worker while this process builds the frame (3 s of JSON at 100,000 runs).
        saves = Saves(rows.state, index_file.new_state(), saves.reread, saves.folders)
        save = functools.partial(index_file.save_index, index_path, rows, changed, saves.saved)
        saved = forked.later(save, folder_reads.worker_count(len(names)))
    frame = _frame(root, planned, rows, by_id, saves.reread)
    problems = odd + [
        Problem(name, str(frame.at[name, "name"]) if isinstance(frame.at[name, "name"], str) else "?", reason)
        for name, texts in zip(names, rows.problems, strict=True)
        for reason in texts
    ]
    return Collected(frame.reset_index(drop=True), problems, len(reread), saved, saves)


def _stats_ahead(
    runs_dir: str, names: list[str], index_path: Path | None
) -> Callable[[], Sequence[index_of.FolderStats | None]]:
    """The folders' files' lstat, taken by a forked worker while this process parses the index (at
    PARALLEL_FROM folders and more, with an index to compare them with); else None for each, and
    `unchanged` takes them itself."""
    workers = folder_reads.worker_count(len(names))
    if index_path is None or workers < 2 or not index_path.is_file():
        unseen: list[index_of.FolderStats | None] = [None] * len(names)
        return lambda: unseen
    return forked.later(functools.partial(index_of.folder_stats, runs_dir, names), workers)


def collect_frame(root: Path, planned: list[RunSpec]) -> pd.DataFrame:
    """The sweep's runs as a DataFrame (META_COLUMNS first, then `axis.*` and metric columns)."""
    return read_sweep(root, planned).frame


NOT_UTF8 = "folder name is not UTF-8: left out of runs.csv and the tables (rename it)"
"""The problem of a folder under runs/ whose name os.listdir could decode only with lone surrogates:
no run id of ours is such a name, and no output file (runs.csv, the report) can hold it as it is."""


def _utf8(name: str) -> bool:
    """Whether a name from os.listdir is text (not bytes that are no UTF-8, decoded as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _plan_facts(rows: index_of.Index, by_id: dict[str, RunSpec], fresh: frozenset[int]) -> None:
    """Planned folders' plan facts as today's plan has them, where the row has them (read_run's
    values): the index keeps them as they were read, and a spec that relabels a row keeps its run
    ids, so runs.csv kept the old names while the tables showed the new ones. Rows at `fresh`
    positions were just read with today's plan (1 s of a cold collect at 100,000 runs, redone)."""
    if "name" not in rows.columns:
        return
    named = rows.values[rows.columns.index("name")]
    facts = [
        (i, plan_facts(by_id[n]))
        for i, n in enumerate(rows.names)
        if n in by_id and named[i] is not None and i not in fresh
    ]
    # An axis the plan no longer has is None in those rows, as a fresh read leaves it.
    axes = [c for c in rows.columns if c.startswith("axis.")]
    columns = dict.fromkeys([key for _, fact in facts for key in fact] + axes)
    for column in columns:
        values = rows.column(column)
        for i, fact in facts:
            values[i] = fact.get(column)


def _valued_columns(rows: index_of.Index) -> dict[str, list[Any]]:
    """The rows' columns, less each metric, axis or retry column that no row has a value in.

    By values, not by the keys the files had: a cached read keeps every column it ever saw (a metric
    of runs since archived, or of a metrics.json since rewritten without it) and a cold read has only
    today's; both drop the empty ones, so they give the same runs.csv. The row's own columns (state,
    times, the plan's facts) stay whatever they hold."""
    return {
        column: values
        for column, values in zip(rows.columns, rows.values, strict=True)
        if not ("." in column or column == RETRY_ACCUM) or any(value is not None for value in values)
    }


def _frame(
    root: Path, planned: list[RunSpec], rows: index_of.Index, by_id: dict[str, RunSpec], fresh: frozenset[int]
) -> pd.DataFrame:
    """Rows of the folders, then planned runs never started; indexed by run id (rows at `fresh`
    positions read just now)."""
    import pandas as pd

    names = rows.names
    _plan_facts(rows, by_id, fresh)
    frame = pd.DataFrame(_valued_columns(rows), index=names)
    frame["run_id"] = [by_id[name].run_id if name in by_id else textsafe.printable(name) for name in names]
    frame["in_plan"] = [name in by_id for name in names]
    runs_dir = str(root / "runs")
    # os.path.join's text (names have no "/"), control characters shown
    frame["path"] = [textsafe.printable(f"{runs_dir}/{name}") for name in names]
    frame["problem"] = ["; ".join(texts) or None for texts in rows.problems]
    found = {by_id[name].run_id for name in names if name in by_id}
    never = [run for run in planned if run.run_id not in found]
    if never:
        missing = [{**run.metadata(), "state": "missing", "in_plan": True} for run in never]
        extra = pd.DataFrame(missing, index=[run.run_id for run in never])
        extra["path"] = [str(store.run_path(root, run.run_id)) for run in never]
        frame = pd.concat([frame, extra]) if len(frame) else extra
    if frame.empty:
        return pd.DataFrame(columns=list(META_COLUMNS))
    first = [c for c in META_COLUMNS if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]
