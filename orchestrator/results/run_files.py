"""The tables a run writes beside metrics.json (per class, confusion matrices), its history.csv and
split.json, read for the report's figures, and the training throughput `cost` estimates from.
Tolerant: a file that cannot be read (a FIFO, a symlink, 3 GB, not UTF-8, not CSV) is never a
traceback, and never skipped without a word: it becomes a Problem naming the run and the reason, and
the figure is drawn from the other runs.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.store.run_states import Problem, metrics_of, read_object
from orchestrator.sweep import bounded
from trainers import contract, rundir
from trainers.contract import flatten

if TYPE_CHECKING:
    import pandas as pd

# Name fragments of the CSV tables a run writes beside metrics.json (trainers/loop/metrics.py).
CONFUSION = "confusion"  # confusion_matrix.csv, confusion_matrix_super.csv, per_label_confusion.csv


PER_CLASS = ("per_class", "per_label")
LEFT_OUT = "left out of the report's figures"
"""Said after a figure file's problem: collect lists it with the runs left out of the numbers."""


@dataclass(frozen=True)
class RunDir:
    """A run folder the report draws from, and who it is: its problems name the run."""

    seed: str
    path: Path
    run_id: str
    name: str


def histories(dirs: list[RunDir], problems: list[Problem]) -> pd.DataFrame:
    """history.csv of each run as one long frame with a `seed` column; unreadable ones added to `problems`."""
    import pandas as pd

    frames = []
    for run in dirs:
        frame = _read_csv(run.path / rundir.HISTORY, run, problems)
        if frame is None:
            continue
        if "epoch" not in frame.columns:
            problems.append(_problem(run, f"{rundir.HISTORY}: no epoch column"))
            continue
        frames.append(frame.assign(seed=run.seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["epoch", "seed"])


def confusions(dirs: list[RunDir], problems: list[Problem]) -> list[tuple[str, pd.DataFrame, int]]:
    """Confusion matrices by table name, summed over runs (class names as index and columns), with
    the number of runs summed; unreadable tables added to `problems`."""
    import pandas as pd

    sums: dict[str, pd.DataFrame] = {}
    counts: dict[str, int] = {}
    for run in dirs:
        for name, file in _tables_named(run.path, CONFUSION).items():
            frame = _read_table(file, run, problems)
            if frame is None:
                continue
            frame = frame.apply(pd.to_numeric, errors="coerce").fillna(0)
            sums[name] = sums[name].add(frame, fill_value=0) if name in sums else frame
            counts[name] = counts.get(name, 0) + 1
    # A cell neither run has (classes that differ between runs) is NaN after `add`: no image, 0.
    ordered = sorted(sums.items(), key=_level_order)
    return [(name, frame.fillna(0), counts[name]) for name, frame in ordered]


def per_class_f1(dirs: list[RunDir], problems: list[Problem]) -> list[tuple[str, pd.Series, int]]:
    """Per-class (or per-label) F1 by table name, mean over runs, in class order, with the number of
    runs averaged; unreadable tables added to `problems`."""
    import pandas as pd

    values: dict[str, list[pd.Series]] = {}
    for name, frame in _per_class_tables(dirs, problems):
        if "f1" in frame.columns:
            values.setdefault(name, []).append(pd.to_numeric(frame["f1"], errors="coerce"))
    ordered = sorted(values.items(), key=_level_order)
    return [(name, pd.concat(series, axis=1).mean(axis=1), len(series)) for name, series in ordered]


def class_support(dirs: list[RunDir], problems: list[Problem]) -> pd.Series | None:
    """Images per class of the test split: the `support` column of the first readable per-class
    table of the runs (unreadable ones before it added to `problems`)."""
    import pandas as pd

    for _, frame in _per_class_tables(dirs, problems):
        if "support" in frame.columns:
            return pd.to_numeric(frame["support"], errors="coerce").dropna().astype(int)
    return None


def split_facts(dirs: list[RunDir], problems: list[Problem]) -> dict[str, Any]:
    """The first readable split.json of the runs flattened to {"a.b": value} ({} when none has one);
    unreadable ones before it added to `problems`."""
    for run in dirs:
        data, problem = read_object(run.path / rundir.SPLIT)
        if problem is not None:
            problems.append(_problem(run, problem))
        elif data:
            return flatten(data, keep_lists=True)
    return {}


def _per_class_tables(dirs: list[RunDir], problems: list[Problem]) -> Iterator[tuple[str, pd.DataFrame]]:
    """(table name, frame indexed by class) of every non-empty per-class table of the runs."""
    for run in dirs:
        for fragment in PER_CLASS:
            for name, file in _tables_named(run.path, fragment).items():
                frame = None if CONFUSION in name else _read_table(file, run, problems)
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
    """The `.csv` entries of a run folder (and its subfolders `depth` deep, checkpoints aside), sorted;
    never into a symlinked folder, at most `most` entries looked at per folder. An entry that is no
    plain file (a FIFO, a symlink) is listed too: reading it names it as a problem."""
    found: list[Path] = []
    try:
        with os.scandir(path) as entries:
            listed = [entry for _, entry in zip(range(most), entries, strict=False)]
    except OSError:
        return []
    for entry in listed:
        if entry.is_dir(follow_symlinks=False):
            if depth > 0 and entry.name != rundir.CHECKPOINTS:
                found += _csv_files(Path(entry.path), depth - 1, most)
        elif entry.name.endswith(".csv"):
            found.append(Path(entry.path))
    return sorted(found)


def _level_order(item: tuple[str, Any]) -> tuple[bool, str]:
    """Tables of the super level before the sub level, then by name."""
    return ("super" not in item[0], item[0])


def _problem(run: RunDir, reason: str, file: Path | None = None) -> Problem:
    """A figure file's problem, by run; a file in a subfolder named by its path in the run folder."""
    if file is not None and file.parent != run.path and reason.startswith(file.name):
        reason = file.relative_to(run.path).as_posix() + reason[len(file.name) :]
    return Problem(run.run_id, run.name, f"{reason}; {LEFT_OUT}")


def _read_table(file: Path, run: RunDir, problems: list[Problem]) -> pd.DataFrame | None:
    """A per-class or confusion table indexed by its first column (the class); None when missing,
    without rows, or broken (then added to `problems`: a class listed twice could not be summed)."""
    frame = _read_csv(file, run, problems, names_first=True)
    if frame is None:
        return None
    frame = frame.set_index(frame.columns[0])
    if not frame.index.is_unique:
        twice = frame.index[frame.index.duplicated()][0]
        problems.append(_problem(run, f"{file.name}: class {str(twice)[:80]!r} listed twice", file))
        return None
    return frame


def _read_csv(file: Path, run: RunDir, problems: list[Problem], names_first: bool = False) -> pd.DataFrame | None:
    """A run's CSV file as a frame; None when missing or without rows, or when it cannot be read
    (then added to `problems`, by run and reason). `names_first`: the first column (class names) is
    read as text: pandas made class `1` a number in one run and text in a run that also has class
    `a`, and the two were not summed as one class."""
    frame, reason = _csv_frame(file, names_first)
    if reason is not None:
        problems.append(_problem(run, reason, file))
    return frame


def _csv_frame(file: Path, names_first: bool = False) -> tuple[pd.DataFrame | None, str | None]:
    """A CSV file as a frame (None when missing or without rows) and why it cannot be read. Bounded:
    no FIFO blocks it, no symlink to /dev/zero or 3 GB file is read (bounded.read_text)."""
    import pandas as pd

    try:
        text = bounded.read_text(file)
    except bounded.Unreadable as exc:
        return None, str(exc)
    if text is None:
        return None, None
    if not text.strip():  # the trainer writes its tables whole (atomically): never an empty one
        return None, f"{file.name}: empty"
    try:
        frame = pd.read_csv(io.StringIO(text), converters={0: str} if names_first else None)
    except (ValueError, MemoryError, OverflowError) as exc:  # pandas' ParserError is a ValueError
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:80]
        return None, f"{file.name}: invalid CSV ({detail})"
    return (None if frame.empty else frame), None


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
    train = dig(split, "info", "uncapped_sizes", "train")
    counted = isinstance(train, int) and not isinstance(train, bool) and 0 <= train <= contract.MAX_VALUE
    device, processes = provenance.device, provenance.num_processes
    return Throughput(speed, str(device or "?")[:200], processes or 1, train if counted else None)


def _json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when missing or not a readable JSON object."""
    return read_object(path)[0]


def dig(data: dict[str, Any], *keys: str) -> Any:
    """data[k1][k2]... or None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data
