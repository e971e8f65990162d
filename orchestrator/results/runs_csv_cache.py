"""runs.csv again with the lines of the rows that did not change: `<output>/.collect-runs-csv.json`.

Formatting the 1 million cells of 10,000 runs (runs_csv.csv_text) takes 0.3 s of CPU, and a second
collect that read 10 folders again waited for it after its tables were done. A row's line depends
only on its values and its columns' names, order and dtypes (runs_csv), and the frame's first rows
are the index's folders (reader.read_sweep): a row that was not read again holds the values of the
index save it was loaded from. So beside runs.csv this file records the save the frame's rows came
from (reader.Saves), the header and the columns' dtypes, the run ids, flags and paths of the folder
rows, the length of each folder row's line, and the digest of runs.csv's bytes. The next collect
takes a line from runs.csv when all of that still holds (runs.csv unedited, rows loaded from that
very save, the same columns, dtypes and folders) and the row was not read again; it formats the
others (the re-read rows and the planned runs never started). Anything that does not fit, or a file
that cannot be read, means the whole text is formatted: the same bytes, only slower
(tests/unit/results/test_runs_csv_cache.py). The file is trusted as the folder's other files are.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.results import runs_csv
from orchestrator.results.outputs import digest, utf8
from orchestrator.results.reader import Collected, Saves
from orchestrator.sweep import bounded
from trainers import rundir
from trainers.contract import META_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.results.outputs import Outputs

FILE = ".collect-runs-csv.json"
_IDENTITY = ("run_id", "in_plan", "path", *META_COLUMNS[1:6], "pretrained_path")
"""Folder-row columns that come from the plan and the sweep folder, not from the index save (axis.* too:
reader.plan_facts)."""


@functools.lru_cache(maxsize=1)
def rules_version() -> str:
    """The record's validity: the source of the line formatting and of this module."""
    source = Path(runs_csv.__file__).read_bytes() + Path(__file__).read_bytes()
    return hashlib.sha256(source).hexdigest()[:16]


def text(collected: Collected, root: Path, runs_path: Path) -> tuple[bytes, dict[str, Any] | None]:
    """runs.csv's bytes (runs_csv.csv_text of the frame read, as collect's outputs write text),
    reusing the lines of unchanged folder rows of `runs_path` where the record in `root` allows; and
    the record to save beside it (None: save none)."""
    frame, saves = collected.frame, collected.rows_from
    if frame.shape[1] < 2:
        return utf8(runs_csv.csv_text(frame)), None
    shape = _shape(frame, saves.folders)
    lines = _reused(frame, root / FILE, runs_path, saves, shape)
    if lines is None:
        lines = runs_csv.row_lines(frame, (0, saves.folders))
    rest = runs_csv.row_lines(frame, (saves.folders, len(frame)))
    whole = runs_csv.header_line(frame) + "".join(line + "\n" for line in itertools.chain(lines, rest))
    try:
        data = whole.encode("utf-8")
    except UnicodeEncodeError:  # a name that is no UTF-8, shown escaped: the lines' lengths differ, no record
        return utf8(whole), None
    if saves.saved is None:
        return data, None
    record = {
        "version": rules_version(),
        "state": saves.saved,
        "shape": shape,
        "lengths": [len(line) + 1 for line in lines],
        "digest": digest(data),
    }
    return data, record


def write(outputs: Outputs, root: Path, runs_path: Path, made: tuple[bytes, dict[str, Any] | None]) -> None:
    """runs.csv (text's bytes, through collect's outputs), then the record of it (or none: any older
    record removed)."""
    data, record = made
    outputs.write_bytes(runs_path, data)
    path = root / FILE
    try:
        if record is None:
            path.unlink(missing_ok=True)
        else:
            rundir.write_text(path, json.dumps(record, separators=(",", ":")))
    except OSError:
        pass  # a read-only folder: the next collect formats every line


def _reused(frame: pd.DataFrame, path: Path, runs_path: Path, saves: Saves, shape: str) -> list[str] | None:
    """The folder rows' lines, those not read again taken from runs.csv; None when the record does not fit."""
    record = _record(path)
    if record is None or saves.loaded is None or record.get("state") != saves.loaded or record.get("shape") != shape:
        return None
    lengths = record.get("lengths")
    if not (isinstance(lengths, list) and len(lengths) == saves.folders and set(map(type, lengths)) <= {int}):
        return None
    try:
        raw = bounded.read_bytes(runs_path, bounded.INDEX_LIMIT)
    except bounded.Unreadable:
        return None
    if raw is None or digest(raw) != record.get("digest"):
        return None
    old, header = raw.decode("utf-8", "replace"), runs_csv.header_line(frame)
    lines = _cut(old, header, lengths, frame.shape[1])
    if lines is None or not _aligned(lines, frame, saves):
        return None
    reread = sorted(saves.reread)
    fresh = runs_csv.row_lines(frame.take(reread), (0, len(reread)))  # a frame of those rows keeps the dtypes
    for i, line in zip(reread, fresh, strict=True):
        lines[i] = line
    return lines


def _cut(old: str, header: str, lengths: list[int], width: int) -> list[str] | None:
    """The old text's folder-row lines by the recorded lengths (None unless every line ends with a
    line break where its length says, and holds at least `width` cells: a length cannot be below it)."""
    if not old.startswith(header) or min(lengths, default=width) < width:
        return None
    ends = list(itertools.accumulate(lengths, initial=len(header)))
    if ends[-1] > len(old) or any(old[end - 1] != "\n" for end in ends[1:]):
        return None
    return [old[a : b - 1] for a, b in itertools.pairwise(ends)]


def _aligned(lines: list[str], frame: pd.DataFrame, saves: Saves) -> bool:
    """Whether each kept line starts with its row's run id cell (a record's lengths can be any)."""
    ids = runs_csv.row_lines(frame[["run_id", "in_plan"]].iloc[: saves.folders], (0, saves.folders))
    return all(line.startswith(cell[: cell.rindex(",") + 1]) for line, cell in zip(lines, ids, strict=True))


def _record(path: Path) -> dict[str, Any] | None:
    try:
        data = bounded.read_json_object(path)
    except bounded.Unreadable:
        return None
    return data if data is not None and data.get("version") == rules_version() else None


def _shape(frame: pd.DataFrame, folders: int) -> str:
    """What a folder row's line depends on besides its index values: the columns (names, order,
    dtypes) and the folder rows' run ids, plan flags, paths and plan facts."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([str(c) for c in frame.columns]).encode("utf-8", "surrogatepass"))
    digest.update(json.dumps([str(t) for t in frame.dtypes]).encode())
    for column in [*_IDENTITY, *(c for c in frame.columns if str(c).startswith("axis."))]:
        values = frame[column].iloc[:folders].tolist() if column in frame.columns else []
        digest.update(json.dumps([str(v) for v in values]).encode("utf-8", "surrogatepass"))
    return f"{folders}:{digest.hexdigest()}"
