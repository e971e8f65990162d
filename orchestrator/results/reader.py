"""The one reader of run folders: files -> records and DataFrames. Nothing else opens a run folder.

Reads only the files each run folder describes itself with (trainers/rundir.py names them):
config.yaml, status.json, metrics.json, history.csv and the CSV tables beside metrics.json.
Never imports the trainer.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.results import folders as folders_of
from orchestrator.sweep import store, yamlio
from orchestrator.sweep.plan import RunSpec
from trainers import rundir
from trainers.rundir import State

if TYPE_CHECKING:
    import pandas as pd


class _FastLoader(yaml.CSafeLoader):
    """LibYAML's safe loader with yamlio's YAML 1.2 float rule (`1e-4` is a float): about 8x faster
    than the pure-Python parser, which was 96% of `collect` on 10,000 runs."""


# The very resolver table of yamlio's loader (sweep/ owns the number rules; this only swaps the parser).
_FastLoader.yaml_implicit_resolvers = yamlio._Loader.yaml_implicit_resolvers

META_COLUMNS = ("run_id", "name", "ablation", "backbone", "dataset", "seed", "state", "in_plan", "path")
KNOWN_STATES = frozenset(state.value for state in State)
UNKNOWN = "unknown"
"""State of a run whose status.json is unreadable or names a state this version does not know."""
BROKEN = "broken"
"""State of a run-folder entry that cannot be read as a run (a file, no readable config.yaml)."""
# Metrics that are fractions: a value outside [0, 1] is a broken value, not a score.
_FRACTIONS = ("top1", "top5", "f1", "precision", "recall", "exact_match", "accuracy")
_CHECKED_SECTIONS = ("test", "val", "complexity")


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
    status: dict[str, Any]
    problem: str | None = None
    """Why the status could not be used (unreadable status.json, unknown state): the run counts as
    not started, so `submit` launches it again."""


def inspect(runs: list[RunSpec], root: Path) -> list[RunRecord]:
    """Read every planned run's status.json; never raises. Missing folders are State.MISSING, and so
    are unreadable status files and unknown states ("unknown, resubmittable"), with a `problem`."""
    records = []
    folders = folders_of.run_folders(root, runs)
    for run in runs:
        path = folders[run.run_id]
        status, problem = read_status(path)
        state_name = status.get("state", State.MISSING.value)
        state = State(state_name) if state_name in KNOWN_STATES else State.MISSING
        records.append(RunRecord(run, path, state, status, problem))
    return records


def problems_of(records: list[RunRecord]) -> list[Problem]:
    """The problems `inspect` found, one per run."""
    return [Problem(r.run.run_id, r.run.name, r.problem) for r in records if r.problem]


def read_status(path: Path) -> tuple[dict[str, Any], str | None]:
    """A run folder's status.json and what is wrong with it ({} and None when there is none yet)."""
    status, problem = read_object(path / rundir.STATUS)
    if problem is not None:
        return {}, problem
    state = (status or {}).get("state", State.MISSING.value)
    if state not in KNOWN_STATES:
        return {**(status or {}), "state": UNKNOWN}, (
            f"{rundir.STATUS}: unknown state {state!r} (treated as unknown: submit runs it again)"
        )
    return status or {}, None


def read_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object in `path` and a problem text; (None, None) when the file does not exist."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None, None
    except IsADirectoryError:
        return None, f"{path.name} is a folder"
    except UnicodeDecodeError as exc:
        return None, f"{path.name}: not UTF-8 text (byte {exc.start})"
    except json.JSONDecodeError as exc:
        return None, f"{path.name}: truncated or invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"{path.name}: unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(data, dict):
        return None, f"{path.name}: a JSON {type(data).__name__}, not an object"
    return data, None


def read_config(path: Path) -> dict[str, Any] | None:
    """A run folder's config.yaml (metadata + trainer config), or None when missing or unreadable."""
    config, _ = _parse_config(path)
    return config


def _parse_config(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """config.yaml parsed with LibYAML (yamlio's number rules), and a problem text."""
    try:
        text = (path / rundir.CONFIG).read_bytes().decode("utf-8")
        data = yaml.load(text, Loader=_FastLoader)
    except FileNotFoundError:
        return None, f"no {rundir.CONFIG}"
    except UnicodeDecodeError as exc:
        return None, f"{rundir.CONFIG}: not UTF-8 text (byte {exc.start})"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        return None, f"{rundir.CONFIG}: invalid YAML{where}"
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"{rundir.CONFIG}: unreadable ({type(exc).__name__})"
    if not isinstance(data, dict):
        return None, f"{rundir.CONFIG}: not a mapping"
    return data, None


def _check_config(path: Path, run_id: str, recorded: str) -> str | None:
    """A planned run's config.yaml without parsing it (its metadata comes from the plan, whose run id
    is the config's hash): present, UTF-8, starts with its run id (or `recorded`, the id its folder
    is named by), complete (ends with a newline)."""
    try:
        text = (path / rundir.CONFIG).read_bytes().decode("utf-8")
    except FileNotFoundError:
        return f"no {rundir.CONFIG}"
    except UnicodeDecodeError as exc:
        return f"{rundir.CONFIG}: not UTF-8 text (byte {exc.start})"
    except OSError as exc:
        return f"{rundir.CONFIG}: unreadable ({type(exc).__name__})"
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
    if not path.is_dir():
        return {"run_id": path.name, "state": BROKEN}, ["not a folder"]
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
    state = UNKNOWN if status_problem else status.get("state", State.MISSING.value)
    row.update(state=BROKEN if config_problem else state)
    row.update(started_at=_number(status.get("started_at")), finished_at=_number(status.get("finished_at")))
    metrics, metrics_problem = read_object(path / rundir.METRICS)
    problems += [metrics_problem] if metrics_problem else []
    if metrics is None and row["state"] == State.COMPLETED.value and metrics_problem is None:
        problems.append(f"completed without {rundir.METRICS}")
    values, value_problems = clean_metrics(flatten(metrics or {}))
    row.update(values)
    return row, problems + value_problems


def clean_metrics(flat: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Metric values that are scores: finite numbers, fractions within [0, 1]; others dropped and named."""
    clean: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in flat.items():
        section = key.split(".", 1)[0]
        described = section == "complexity" and (isinstance(value, str | bool) or value is None)
        if section not in _CHECKED_SECTIONS or described:
            clean[key] = value  # complexity also says how it was counted (counter, convention): text
            continue
        reason = _bad_value(key, value)
        if reason is None:
            clean[key] = float(value)
        else:
            problems.append(f"{rundir.METRICS}: {key} = {_shown(value)} {reason}")
    return clean, problems


def _bad_value(key: str, value: Any) -> str | None:
    """Why a metric value is not a score (None: it is one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "is not a number"
    if not math.isfinite(value):
        return "is not finite"
    last = key.rsplit(".", 1)[-1]
    fraction = key.split(".", 1)[0] != "complexity" and any(f in last for f in _FRACTIONS)
    if fraction and not 0.0 <= value <= 1.0:
        return "is outside [0, 1]"
    if not fraction and value < 0:
        return "is negative"
    return None


def _shown(value: Any, limit: int = 40) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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


def signature(path: str) -> list[Any]:
    """What a cached row of this run folder depends on: (mtime ns, size) of its three files."""
    out: list[Any] = []
    for name in (rundir.CONFIG, rundir.STATUS, rundir.METRICS):
        try:
            stat = os.stat(os.path.join(path, name))
        except OSError:
            out.append(None)
            continue
        out.append([stat.st_mtime_ns, stat.st_size])
    return out


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
    return read_object(path)[0]


INDEX_VERSION = 2


@functools.lru_cache(maxsize=1)
def _reader_version() -> str:
    """The index's validity: its format and this module's source (rows read by other rules are stale)."""
    source = Path(__file__).read_bytes()
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
    for name in names:
        path = os.path.join(runs_dir, name)
        sig = [name in by_id, signature(path)]
        cached = index.entries.get(name)
        if cached is not None and cached[0] == sig:
            entries[name] = cached
            continue
        row, found = read_run(Path(path), by_id.get(name))
        fresh[name] = row
        entries[name] = [sig, None, found]
        columns += [key for key in row if key not in known]
        known.update(row)
    for name, row in fresh.items():
        entries[name][1] = [row.get(c) for c in columns]
    if index_path is not None and (fresh or len(entries) != len(index.entries)):
        _save_index(index_path, _Index(columns, entries))
    frame = _frame(root, planned, columns, entries, by_id)
    problems = [
        Problem(name, str(frame.at[name, "name"]) if isinstance(frame.at[name, "name"], str) else "?", reason)
        for name, entry in entries.items()
        for reason in entry[2]
    ]
    return Collected(frame.reset_index(drop=True), problems, len(fresh))


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
    """The cached rows of a sweep (empty when absent, of another version or unreadable: all is read again)."""
    data, _ = read_object(path)
    if not data or data.get("version") != _reader_version():
        return _Index([], {})
    columns, entries = data.get("columns"), data.get("entries")
    if not isinstance(columns, list) or not isinstance(entries, dict):
        return _Index([], {})
    return _Index(columns, entries)


def _save_index(path: Path, index: _Index) -> None:
    data = {"version": _reader_version(), "columns": index.columns, "entries": index.entries}
    # A read-only results folder: collect still works, only slower next time.
    with contextlib.suppress(OSError):
        rundir.write_text(path, json.dumps(data, separators=(",", ":")))


def status_of(path: Path) -> dict[str, Any]:
    """A run folder's status.json ({} when there is none or it is unreadable)."""
    return read_status(path)[0]


def result_line(path: Path) -> str:
    """`: test top-1 98.05%, 12.3 s` from a finished run's metrics.json (empty if unreadable)."""
    metrics = _json_object(path / rundir.METRICS) or {}
    top1 = _dig(metrics, "test", "top1")
    wall_s = _dig(metrics, "timing", "wall_s")
    parts = ([f"test top-1 {100 * top1:.2f}%"] if _bad_value("test.top1", top1) is None else []) + (
        [f"{wall_s:.1f} s"] if _number(wall_s) is not None else []
    )
    return f": {', '.join(parts)}" if parts else ""


def epochs_done(path: Path) -> int:
    """Finished epochs of a run: the rows of its history.csv (0 before the first)."""
    try:
        return max(0, len((path / rundir.HISTORY).read_bytes().splitlines()) - 1)
    except OSError:
        return 0


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
    import csv

    try:
        with (path / rundir.HISTORY).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        speed = float(rows[-1]["train_images_per_s"])
    except (OSError, ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        return None
    if not speed > 0 or not math.isfinite(speed):
        return None
    metrics = _json_object(path / rundir.METRICS) or {}
    split = _json_object(path / rundir.SPLIT) or {}
    train = _dig(split, "info", "uncapped_sizes", "train")
    processes = _number(_dig(metrics, "provenance", "num_processes")) or 1
    device = _dig(metrics, "provenance", "device")
    return Throughput(speed, str(device or "?"), int(processes), int(train) if _number(train) is not None else None)
