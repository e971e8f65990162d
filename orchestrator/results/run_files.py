"""The tables a run writes beside metrics.json (per class, confusion matrices), its history.csv and
split.json, read for the report's figures, and the training throughput `cost` estimates from.
Tolerant: an unreadable file is skipped, never a traceback.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.store.run_states import metrics_of, read_object
from orchestrator.sweep import bounded
from trainers import contract, rundir
from trainers.contract import flatten

if TYPE_CHECKING:
    import pandas as pd

# Name fragments of the CSV tables a run writes beside metrics.json (trainers/loop/metrics.py).
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
