"""The one reader of run folders: files -> records and DataFrames. Nothing else opens a run folder.

Reads only the files each run folder describes itself with (trainers/rundir.py names them):
config.yaml, status.json, metrics.json, history.csv and the CSV tables beside metrics.json.
Never imports the trainer.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.results import folders as folders_of
from orchestrator.sweep import bounded, store, yamlio
from orchestrator.sweep.plan import RunSpec
from trainers import contract, rundir
from trainers.contract import (
    BROKEN,
    META_COLUMNS,
    UNKNOWN,
    RunStatus,
    State,
    clean_metrics,
    flatten,
)

if TYPE_CHECKING:
    import pandas as pd


class _FastLoader(yaml.CSafeLoader):
    """LibYAML's safe loader with yamlio's YAML 1.2 float rule (`1e-4` is a float): about 8x faster
    than the pure-Python parser, which was 96% of `collect` on 10,000 runs."""


# The very resolver table of yamlio's loader (sweep/ owns the number rules; this only swaps the parser).
_FastLoader.yaml_implicit_resolvers = yamlio._Loader.yaml_implicit_resolvers

__all__ = ["BROKEN", "META_COLUMNS", "UNKNOWN", "clean_metrics", "flatten"]  # the contract's, read here


@dataclass(frozen=True)
class Problem:
    """Why one run is left out of the numbers (or a value of it is)."""

    run_id: str
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.run_id} {self.name}: {self.reason}"


@dataclass(frozen=True)
class RunRecord:
    """A planned run joined with what its folder says."""

    run: RunSpec
    path: Path
    state: State
    status: RunStatus
    problem: str | None = None
    """Why the status could not be used (unreadable status.json, unknown state): the run counts as
    not started, so `submit` launches it again."""


def inspect(runs: list[RunSpec], root: Path, check_results: bool = True) -> list[RunRecord]:
    """Read every planned run's status.json; never raises. Missing folders are State.MISSING, and so
    are unreadable status files and unknown states ("unknown, resubmittable"), with a `problem`.
    With `check_results`, so is a completed run whose metrics.json is missing, unreadable, another
    run's or without a valid test score: it needs running again."""
    records = []
    folders = folders_of.run_folders(root, runs)
    for run in runs:
        path = folders[run.run_id]
        status, problem = read_status(path)
        state = status.known_state
        if state is State.COMPLETED and check_results:
            broken = _broken_result(path, run)
            if broken is not None:  # a completed run without usable metrics is not done: run it again
                state, problem = State.MISSING, f"completed, but {broken} (submit runs it again)"
        records.append(RunRecord(run, path, state, status, problem))
    return records


def _broken_result(path: Path, run: RunSpec) -> str | None:
    """Why a completed run's metrics.json cannot be used (missing, unreadable, another run's, a
    score that is not one, no test score at all), or None."""
    kind = _folder_kind(path)
    if kind is not None:
        return f"its folder is {kind}"
    metrics, problem = read_object(path / rundir.METRICS)
    if problem is not None or metrics is None:
        return problem or f"no {rundir.METRICS}"
    return contract.result_problem(metrics, (path.name, run.run_id))


def problems_of(records: list[RunRecord]) -> list[Problem]:
    """The problems `inspect` found, one per run."""
    return [Problem(r.run.run_id, r.run.name, r.problem) for r in records if r.problem]


def read_status(path: Path) -> tuple[RunStatus, str | None]:
    """A run folder's status.json through the contract and what is wrong with it (state missing and
    None when there is none yet; unreadable: state missing and the reason)."""
    status, problem = read_object(path / rundir.STATUS)
    if problem is not None:
        return RunStatus(), problem
    return contract.parse_status(status)


def read_object(path: Path, limit: int | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object in `path` and a problem text; (None, None) when the file does not exist.
    Bounded (bounded.read_bytes: regular files only, a size limit by name); a key written twice, an
    integer of more than 20 digits or invalid JSON is a problem, never a traceback."""
    try:
        return bounded.read_json_object(path, limit), None
    except bounded.Unreadable as exc:
        return None, str(exc)


def read_config(path: Path) -> dict[str, Any] | None:
    """A run folder's config.yaml (metadata + trainer config), or None when missing or unreadable."""
    config, _ = _parse_config(path)
    return config


def _parse_config(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """config.yaml parsed with LibYAML (yamlio's number rules), and a problem text. Bounded: a size
    limit, no aliases (bounded.check_yaml_budget), LibYAML's own nesting limit."""
    try:
        text = bounded.read_text(path / rundir.CONFIG)
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
    return data, None


def _check_config(path: Path, run_id: str, recorded: str) -> str | None:
    """A planned run's config.yaml without parsing it (its metadata comes from the plan, whose run id
    is the config's hash): present, UTF-8, starts with its run id (or `recorded`, the id its folder
    is named by), complete (ends with a newline)."""
    try:
        text = bounded.read_text(path / rundir.CONFIG)
    except bounded.Unreadable as exc:
        return str(exc)
    if text is None:
        return f"no {rundir.CONFIG}"
    ids = (run_id, recorded)
    if not any(text.startswith(f"run_id: {i}\n") for i in ids) or not text.endswith("\n"):
        config, problem = _parse_config(path)  # the parser names the line when it is invalid YAML
        if problem is not None:
            return problem
        if config is None or str(config.get("run_id")) not in ids:
            return f"{rundir.CONFIG}: records run id {config.get('run_id') if config else None!r}, not {run_id!r}"
    return None


def read_run(path: Path, run: RunSpec | None) -> tuple[dict[str, Any], list[str]]:
    """One run folder as a flat row and the problems found; never raises.

    `run` is the planned run of this folder (None: a folder the plan no longer has, read from its
    config.yaml). Unreadable values are left out of the row and named in the problems.
    """
    kind = _folder_kind(path)
    if kind is not None:
        return {"run_id": path.name, "state": BROKEN}, [kind]
    problems: list[str] = []
    row: dict[str, Any] = {"run_id": path.name}
    config: dict[str, Any] | None
    if run is not None:
        # A folder named under an older id rule records that id until it is run again.
        config_problem = _check_config(path, run.run_id, path.name)
        config = {**run.metadata(), "trainer": {"model": {"pretrained_path": _pretrained(run)}}}
    else:
        config, config_problem = _parse_config(path)
    if config_problem is not None:
        problems.append(config_problem)
    if config is None:
        return {**row, "state": BROKEN}, problems
    row.update({key: config.get(key) for key in META_COLUMNS[1:6]})
    row["pretrained_path"] = _dig(config, "trainer", "model", "pretrained_path")
    axes = config.get("axes")
    row.update({f"axis.{k}": v for k, v in (axes.items() if isinstance(axes, dict) else [])})
    status, status_problem = read_status(path)
    problems += [status_problem] if status_problem else []
    state = UNKNOWN if status_problem else status.state
    row.update(state=BROKEN if config_problem else state)
    row.update(started_at=status.started_at, finished_at=status.finished_at)
    values, metric_problems = read_metrics(path, run)
    if not values and row["state"] == State.COMPLETED.value and not metric_problems:
        metric_problems.append(f"completed without {rundir.METRICS}")
    row.update(values)
    return row, problems + metric_problems


def _folder_kind(path: Path) -> str | None:
    """Why a run-folder entry is not a run folder (None: it is a plain folder). A symlinked run folder
    is refused: it would count another run's (or anyone's) files as this run's."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "not readable"
    if stat.S_ISLNK(mode):
        return "a symbolic link, not a run folder"
    return None if stat.S_ISDIR(mode) else "not a folder"


def read_metrics(path: Path, run: RunSpec | None) -> tuple[dict[str, Any], list[str]]:
    """A run's metrics.json as flat validated values ({} when absent) and its problems: unreadable,
    written by another run (its `run_id`), values that are not what they claim to be."""
    metrics, problem = read_object(path / rundir.METRICS)
    if problem is not None:
        return {}, [problem]
    if metrics is None:
        return {}, []
    return contract.metric_values(metrics, (path.name, run.run_id if run is not None else None))


def _dig(data: dict[str, Any], *keys: str) -> Any:
    """data[k1][k2]... or None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def _pretrained(run: RunSpec) -> str | None:
    path = getattr(run.config.model, "pretrained_path", None)
    return None if path is None else str(path)


RACY_NS = 2_000_000_000
"""A file hashed less than this after its last change is hashed again next time: a second write
within one tick of the file system's clock (and of the same size, into a reused inode) would keep
its stat (git's "racy clean" entries, the same rule)."""


def signature(path: str, cached: Any = None) -> list[Any]:
    """What a cached row of this run folder depends on: per file of its three, [mtime ns, size,
    content hash, inode, ctime ns, hashed at ns]. The content hash (blake2b of the bytes) catches a
    rewrite that keeps size and mtime, which a stat-only key took for the old file. It is computed
    again only when the file's stat differs from `cached` (the index's signature of the folder) or
    the file had changed just before it was hashed (RACY_NS): any write or `touch -d` moves the
    ctime, which no one can set back, and a replaced file has another inode. A file that is not a
    bounded regular file is its reason."""
    previous = cached if isinstance(cached, list) and len(cached) == 3 else [None, None, None]
    out: list[Any] = []
    for name, before in zip((rundir.CONFIG, rundir.STATUS, rundir.METRICS), previous, strict=True):
        file = os.path.join(path, name)
        out.append(before if _unchanged(file, before) else _hashed_file(Path(file)))
    return out


def _unchanged(file: str, before: Any) -> bool:
    """Whether `file` is a regular file within its size limit whose stat is `before`'s, hashed
    RACY_NS or more after its last change (its digest then still holds)."""
    if not (isinstance(before, list) and len(before) == 6 and all(isinstance(v, int) for v in before[3:])):
        return False
    try:
        info = os.lstat(file)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size > bounded.LIMITS.get(
        os.path.basename(file), bounded.DEFAULT_LIMIT
    ):
        return False
    same = before[:2] == [info.st_mtime_ns, info.st_size] and before[3:5] == [info.st_ino, info.st_ctime_ns]
    return same and isinstance(before[2], str) and before[5] - info.st_ctime_ns >= RACY_NS


def _hashed_file(file: Path) -> Any:
    """[mtime ns, size, blake2b, inode, ctime ns, now ns] of a bounded regular file, None when it
    does not exist, the reason when it is something else."""
    now = time.time_ns()
    try:
        data = bounded.read_bytes(file)
        info = os.lstat(file) if data is not None else None
    except (bounded.Unreadable, OSError) as exc:
        return str(exc)
    if data is None or info is None:
        return None
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    return [info.st_mtime_ns, info.st_size, digest, info.st_ino, info.st_ctime_ns, now]


def _json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when missing or not a readable JSON object."""
    return read_object(path)[0]


INDEX_VERSION = 3


@functools.lru_cache(maxsize=1)
def _reader_version() -> str:
    """The index's validity: its format and this module's source (rows read by other rules are stale)."""
    source = Path(__file__).read_bytes() + Path(bounded.__file__).read_bytes() + Path(contract.__file__).read_bytes()
    return f"{INDEX_VERSION}-{hashlib.sha256(source).hexdigest()[:16]}"


@dataclass
class Collected:
    """A sweep's run folders read: one row per folder or never-started planned run, and the problems."""

    frame: pd.DataFrame
    problems: list[Problem]
    read_runs: int = 0
    """Run folders read from their files this time (the others came from the index)."""


@dataclass
class _Index:
    """Cached rows, columnar: `columns` names the values of every entry's row (the JSON stays small
    and parses fast). entries: folder name -> [signature, row values, problems]."""

    columns: list[str]
    entries: dict[str, list[Any]]


def read_sweep(root: Path, planned: list[RunSpec], index_path: Path | None = None) -> Collected:
    """Every folder under `root/runs` (planned or not) plus planned runs never started; never raises.

    With `index_path`, rows are cached there per run folder and re-read only when a file of the
    folder changed (size or modification time), so a second `collect` reads only what changed.
    """
    folders = folders_of.run_folders(root, planned)
    by_id = {folders[run.run_id].name: run for run in planned}  # by folder name
    index = _load_index(index_path) if index_path is not None else _Index([], {})
    runs_dir = str(root / "runs")
    names = sorted(n for n in _listdir(runs_dir) if not n.startswith("."))  # skip atomic-write temporaries
    columns = list(index.columns)
    known = set(columns)
    entries: dict[str, list[Any]] = {}
    fresh: dict[str, dict[str, Any]] = {}
    rehashed = 0
    for name in names:
        path = os.path.join(runs_dir, name)
        cached = index.entries.get(name)
        sig = [name in by_id, signature(path, _cached_signature(cached))]
        if cached is not None and _content_key(cached[0]) == _content_key(sig):
            rehashed += cached[0] != sig  # the same bytes hashed again (RACY_NS): keep when that was
            entries[name] = [sig, cached[1], cached[2]]
            continue
        row, found = read_run(Path(path), by_id.get(name))
        fresh[name] = row
        entries[name] = [sig, None, found]
        columns += [key for key in row if key not in known]
        known.update(row)
    for name, row in fresh.items():
        entries[name][1] = [row.get(c) for c in columns]
    if index_path is not None and (fresh or rehashed or len(entries) != len(index.entries)):
        _save_index(index_path, _Index(columns, entries))
    frame = _frame(root, planned, columns, entries, by_id)
    problems = [
        Problem(name, str(frame.at[name, "name"]) if isinstance(frame.at[name, "name"], str) else "?", reason)
        for name, entry in entries.items()
        for reason in entry[2]
    ]
    return Collected(frame.reset_index(drop=True), problems, len(fresh))


def _content_key(sig: Any) -> Any:
    """A folder's signature without the times its files were hashed at: equal keys, equal bytes."""
    if not (isinstance(sig, list) and len(sig) == 2 and isinstance(sig[1], list)):
        return sig
    return [sig[0], [f[:5] if isinstance(f, list) else f for f in sig[1]]]


def _cached_signature(entry: Any) -> Any:
    """The files' signature an index entry was read with (None when the entry has no such shape)."""
    if isinstance(entry, list) and entry and isinstance(entry[0], list) and len(entry[0]) == 2:
        return entry[0][1]
    return None


def collect_frame(root: Path, planned: list[RunSpec]) -> pd.DataFrame:
    """The sweep's runs as a DataFrame (META_COLUMNS first, then `axis.*` and metric columns)."""
    return read_sweep(root, planned).frame


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _frame(
    root: Path, planned: list[RunSpec], columns: list[str], entries: dict[str, list[Any]], by_id: dict[str, RunSpec]
) -> pd.DataFrame:
    """Rows of the folders (values padded to `columns`), then planned runs never started; indexed by run id."""
    import pandas as pd

    width = len(columns)
    values = [entry[1] + [None] * (width - len(entry[1])) for entry in entries.values()]
    frame = pd.DataFrame(values, columns=columns, index=list(entries))
    frame["run_id"] = [by_id[name].run_id if name in by_id else name for name in entries]
    frame["in_plan"] = [name in by_id for name in entries]
    frame["path"] = [str(root / "runs" / name) for name in entries]
    frame["problem"] = ["; ".join(entry[2]) or None for entry in entries.values()]
    found = {by_id[name].run_id for name in entries if name in by_id}
    never = [run for run in planned if run.run_id not in found]
    if never:
        rows = [{**run.metadata(), "state": "missing", "in_plan": True} for run in never]
        extra = pd.DataFrame(rows, index=[run.run_id for run in never])
        extra["path"] = [str(store.run_path(root, run.run_id)) for run in never]
        frame = pd.concat([frame, extra]) if len(frame) else extra
    if frame.empty:
        return pd.DataFrame(columns=list(META_COLUMNS))
    first = [c for c in META_COLUMNS if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def _load_index(path: Path) -> _Index:
    """The cached rows of a sweep (empty when absent, of another version or unreadable: all is read
    again). Validated as it is read: an entry whose shape or values break the reader's own rules
    (an edited index put 402.58% top-1 in a table) is dropped, and that folder is read again."""
    try:
        data = bounded.read_json_object(path, bounded.INDEX_LIMIT)
    except bounded.Unreadable:
        return _Index([], {})
    if not data or data.get("version") != _reader_version():
        return _Index([], {})
    columns, entries = data.get("columns"), data.get("entries")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) or not isinstance(entries, dict):
        return _Index([], {})
    if len(set(columns)) != len(columns):
        return _Index([], {})
    checks = [
        (
            i,
            c,
            *((-sys.float_info.max, sys.float_info.max) if c in _TIMES else contract.float_bounds(c)),
            c not in _TIMES and contract.typed_reason(c, "text") is None,  # text is valid in this column
        )
        for i, c in enumerate(columns)
        if c in _TIMES or ("." in c and not c.startswith("axis."))
    ]
    return _Index(columns, {name: entry for name, entry in entries.items() if _valid_entry(entry, columns, checks)})


_SCALARS = frozenset({str, int, float, bool, type(None)})
"""The types of a cached value (the index is JSON: its values are of these exact types or others)."""


def _valid_entry(entry: Any, columns: list[str], checks: list[tuple[int, str, float, float, bool]]) -> bool:
    """An index entry the reader could have written: [signature, scalar values, problem texts], every
    metric value typed as clean_metrics types it."""
    if not isinstance(entry, list) or len(entry) != 3:
        return False
    _, values, problems = entry
    if not isinstance(values, list) or len(values) > len(columns):
        return False
    if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
        return False
    if not set(map(type, values)) <= _SCALARS:
        return False
    width = len(values)
    for i, column, low, high, text_ok in checks:
        value = values[i] if i < width else None
        if value is None or (type(value) is float and low <= value <= high) or (text_ok and type(value) is str):
            continue
        if not _cached_ok(column, value):
            return False
    return True


_TIMES = ("started_at", "finished_at")


def _cached_ok(column: str, value: Any) -> bool:
    if column in _TIMES:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return contract.typed_reason(column, value) is None


def _save_index(path: Path, index: _Index) -> None:
    data = {"version": _reader_version(), "columns": index.columns, "entries": index.entries}
    # A read-only results folder: collect still works, only slower next time.
    with contextlib.suppress(OSError):
        rundir.write_text(path, json.dumps(data, separators=(",", ":")))


def status_of(path: Path) -> RunStatus:
    """A run folder's status.json (state missing when there is none or it is unreadable)."""
    return read_status(path)[0]


def metrics_of(path: Path) -> contract.Metrics:
    """A run folder's metrics.json as the contract's typed Metrics (values that do not validate
    left out; empty when missing, unreadable or another run's)."""
    values, _ = read_metrics(path, None) if _folder_kind(path) is None else ({}, [])
    return contract.metrics_model(values)


def result_line(path: Path) -> str:
    """`: test top-1 98.05%, 12.3 s` from a finished run's metrics.json (empty if unreadable)."""
    metrics = metrics_of(path)
    top1 = metrics.test.top1 if metrics.test is not None else None
    wall_s = metrics.timing.wall_s if metrics.timing is not None else None
    parts = ([f"test top-1 {100 * top1:.2f}%"] if top1 is not None else []) + (
        [f"{wall_s:.1f} s"] if wall_s is not None else []
    )
    return f": {', '.join(parts)}" if parts else ""


def epochs_done(path: Path) -> int:
    """Finished epochs of a run: the rows of its history.csv (0 before the first)."""
    try:
        data = bounded.read_bytes(path / rundir.HISTORY)
    except bounded.Unreadable:
        return 0
    return max(0, len(data.splitlines()) - 1) if data is not None else 0


# ---------------------------------------------------------------------------- tables a run writes

# Name fragments of the CSV tables a run writes beside metrics.json (trainers/metrics.py).
CONFUSION = "confusion"  # confusion_matrix.csv, confusion_matrix_super.csv, per_label_confusion.csv
PER_CLASS = ("per_class", "per_label")


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
    data = _json_object(path / rundir.SPLIT)
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
    for file in _csv_files(path):
        if fragment in file.name:
            found[file.stem] = file
    # The test split when the run also wrote validation tables.
    test = {k: v for k, v in found.items() if "val" not in k.split("_")}
    return test or found


def _csv_files(path: Path, depth: int = 3, most: int = 1000) -> list[Path]:
    """The CSV files of a run folder (and its subfolders `depth` deep, checkpoints aside), sorted;
    never a symlinked folder (rglob followed none either), at most `most` entries looked at per folder."""
    found: list[Path] = []
    try:
        with os.scandir(path) as entries:
            listed = [entry for _, entry in zip(range(most), entries, strict=False)]
    except OSError:
        return []
    for entry in listed:
        if entry.is_dir(follow_symlinks=False) and depth > 0 and entry.name != rundir.CHECKPOINTS:
            found += _csv_files(Path(entry.path), depth - 1, most)
        elif entry.name.endswith(".csv") and entry.is_file(follow_symlinks=False):
            found.append(Path(entry.path))
    return sorted(found)


def _level_order(item: tuple[str, Any]) -> tuple[bool, str]:
    """Tables of the super level before the sub level, then by name."""
    return ("super" not in item[0], item[0])


def _read_csv(path: Path) -> pd.DataFrame | None:
    """A CSV file as a frame; None when missing, empty or unreadable (a figure is skipped, never a crash)."""
    import pandas as pd

    try:
        data = bounded.read_bytes(path)
        frame = pd.read_csv(io.BytesIO(data)) if data else None
    except (bounded.Unreadable, OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, MemoryError):
        return None
    if frame is None:
        return None
    return None if frame.empty else frame


@dataclass(frozen=True)
class Throughput:
    """What a finished (smoke) run measured: training speed and the size of its full train split."""

    images_per_s: float
    """Training images per second of its last epoch, all processes together."""
    device: str
    processes: int
    train_images: int | None
    """The train split before any `max_samples` cap (None when the run did not record it)."""


def throughput(path: Path) -> Throughput | None:
    """The training throughput a run folder recorded, or None when it has none (or it is unreadable)."""
    try:
        rows = bounded.read_csv_rows(path / rundir.HISTORY)
    except bounded.Unreadable:
        return None  # an over-long field, a FIFO, a 1 GB file: no measurement, never a traceback
    speed = contract.history_speed(rows[-1]) if rows else None
    if speed is None:
        return None
    provenance = metrics_of(path).provenance or contract.Provenance()
    split = _json_object(path / rundir.SPLIT) or {}
    train = _dig(split, "info", "uncapped_sizes", "train")
    counted = isinstance(train, int) and not isinstance(train, bool) and 0 <= train <= contract.MAX_VALUE
    device, processes = provenance.device, provenance.num_processes
    return Throughput(speed, str(device or "?")[:200], processes or 1, train if counted else None)
