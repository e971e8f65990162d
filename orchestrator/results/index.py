"""The incremental index of a sweep's rows (`tables/.index.json`): a row is read again only when a file
of its run folder changed, so a second `collect` of 10,000 runs reads only what changed. Validated as
it is read: an entry the reader could not have written is dropped and its folder read again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.sweep import bounded
from trainers import contract, rundir

RACY_NS = 2_000_000_000
"""A file hashed less than this after its last change is hashed again next time: a second write
within one tick of the file system's clock (and of the same size, into a reused inode) would keep
its stat (git's "racy clean" entries, the same rule)."""


def signature(path: str, cached: Any = None, keep: dict[str, Any] | None = None) -> list[Any]:
    """What a cached row of this run folder depends on: per file of its three, [mtime ns, size,
    content hash, inode, ctime ns, hashed at ns]. The content hash (blake2b of the bytes) catches a
    rewrite that keeps size and mtime, which a stat-only key took for the old file. It is computed
    again only when the file's stat differs from `cached` (the index's signature of the folder) or
    the file had changed just before it was hashed (RACY_NS): any write or `touch -d` moves the
    ctime, which no one can set back, and a replaced file has another inode. A file that is not a
    bounded regular file is its reason. With `keep`, what was read of each file hashed is kept there
    by name (bounded.Preread): the reader parses those very bytes instead of reading them again."""
    previous = cached if isinstance(cached, list) and len(cached) == 3 else [None, None, None]
    out: list[Any] = []
    for name, before in zip((rundir.CONFIG, rundir.STATUS, rundir.METRICS), previous, strict=True):
        file = os.path.join(path, name)
        out.append(before if _unchanged(file, before) else _hashed_file(Path(file), keep))
    return out


def unchanged(path: str, entry: Any, in_plan: bool) -> bool:
    """Whether an index entry still holds without reading a byte: the folder is as planned (or not)
    as then, and every file keeps its indexed stat (signature's first check, alone) or is still
    absent."""
    sig = entry[0] if isinstance(entry, list) and entry else None
    if not (isinstance(sig, list) and len(sig) == 2 and sig[0] is in_plan):
        return False
    files = sig[1]
    if not (isinstance(files, list) and len(files) == 3):
        return False
    for name, before in zip((rundir.CONFIG, rundir.STATUS, rundir.METRICS), files, strict=True):
        file = os.path.join(path, name)
        if not (_unchanged(file, before) or (before is None and not os.path.lexists(file))):
            return False
    return True


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


def _hashed_file(file: Path, keep: dict[str, Any] | None = None) -> Any:
    """[mtime ns, size, blake2b, inode, ctime ns, now ns] of a bounded regular file, None when it
    does not exist, the reason when it is something else (what was read kept in `keep`)."""
    now = time.time_ns()
    try:
        data, info = bounded.read_bytes_and_stat(file)  # the stat of the bytes read, not a later one
    except bounded.Unreadable as exc:
        if keep is not None:
            keep[file.name] = exc
        return str(exc)
    if keep is not None:
        keep[file.name] = data
    if data is None or info is None:
        return None
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    return [info.st_mtime_ns, info.st_size, digest, info.st_ino, info.st_ctime_ns, now]


INDEX_VERSION = 3


@functools.lru_cache(maxsize=1)
def reader_version() -> str:
    """The index's validity: its format and this module's source (rows read by other rules are stale)."""
    rules = (Path(__file__), Path(__file__).with_name("reader.py"), Path(bounded.__file__), Path(contract.__file__))
    source = b"".join(path.read_bytes() for path in rules)
    return f"{INDEX_VERSION}-{hashlib.sha256(source).hexdigest()[:16]}"


@dataclass
class Index:
    """Cached rows, columnar: `columns` names the values of every entry's row (the JSON stays small
    and parses fast). entries: folder name -> [signature, row values, problems]."""

    columns: list[str]
    entries: dict[str, list[Any]]


def content_key(sig: Any) -> Any:
    """A folder's signature without the times its files were hashed at: equal keys, equal bytes."""
    if not (isinstance(sig, list) and len(sig) == 2 and isinstance(sig[1], list)):
        return sig
    return [sig[0], [f[:5] if isinstance(f, list) else f for f in sig[1]]]


def cached_signature(entry: Any) -> Any:
    """The files' signature an index entry was read with (None when the entry has no such shape)."""
    if isinstance(entry, list) and entry and isinstance(entry[0], list) and len(entry[0]) == 2:
        return entry[0][1]
    return None


def load_index(path: Path) -> Index:
    """The cached rows of a sweep (empty when absent, of another version or unreadable: all is read
    again). Validated as it is read: an entry whose shape or values break the reader's own rules
    (an edited index put 402.58% top-1 in a table) is dropped, and that folder is read again.

    The index is this module's own file, so it is parsed without bounded's per-object hooks (a
    repeated key or a long integer in it changes nothing the checks below let through), and its
    values are checked a column at a time (a column of floats within its bounds at C speed; the
    exact per-value rule only in a column where that fails)."""
    try:
        raw = bounded.read_bytes(path, bounded.INDEX_LIMIT)
        data = json.loads(raw) if raw else None
    except (bounded.Unreadable, ValueError, RecursionError):
        return Index([], {})
    if not isinstance(data, dict) or data.get("version") != reader_version():
        return Index([], {})
    columns, entries = data.get("columns"), data.get("entries")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) or not isinstance(entries, dict):
        return Index([], {})
    if len(set(columns)) != len(columns):
        return Index([], {})
    shaped = {name: entry for name, entry in entries.items() if _shaped(entry, len(columns))}
    bad = _bad_values(columns, shaped)
    return Index(columns, {name: entry for name, entry in shaped.items() if name not in bad})


_SCALARS = frozenset({str, int, float, bool, type(None)})
"""The types of a cached value (the index is JSON: its values are of these exact types or others)."""
_FLOATS = frozenset({float, type(None)})
_TEXTS = frozenset({str, type(None)})


def _shaped(entry: Any, width: int) -> bool:
    """An index entry of the reader's shape: [signature, at most `width` scalar values, problem texts]."""
    if not isinstance(entry, list) or len(entry) != 3:
        return False
    _, values, problems = entry
    if not isinstance(values, list) or len(values) > width:
        return False
    if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
        return False
    return set(map(type, values)) <= _SCALARS


def _checks(columns: list[str]) -> list[tuple[int, str, float, float, bool]]:
    """(position, column, low, high, text valid) of every column whose values have a rule."""
    return [
        (
            i,
            c,
            *((-sys.float_info.max, sys.float_info.max) if c in _TIMES else contract.float_bounds(c)),
            c not in _TIMES and contract.typed_reason(c, "text") is None,  # text is valid in this column
        )
        for i, c in enumerate(columns)
        if c in _TIMES or ("." in c and not c.startswith("axis."))
    ]


def _bad_values(columns: list[str], entries: dict[str, list[Any]]) -> set[str]:
    """The entries holding a value that clean_metrics could not have stored in its column."""
    names = list(entries)
    width = len(columns)
    rows = [row if len(row) == width else row + [None] * (width - len(row)) for _, row, _ in entries.values()]
    by_column = list(zip(*rows, strict=True)) if rows else []
    bad: set[str] = set()
    for i, column, low, high, text_ok in _checks(columns):
        values = by_column[i] if by_column else ()
        kinds = set(map(type, values))
        if text_ok and kinds <= _TEXTS:
            continue
        if kinds <= _FLOATS:
            floats = [v for v in values if v is not None] if type(None) in kinds else values
            if not floats or (
                low <= min(floats) and max(floats) <= high and math.isfinite(sum(floats))
            ):  # NaN: sum is NaN
                continue
        for name, value in zip(names, values, strict=True):  # the exact rule, value by value
            if value is None or (type(value) is float and low <= value <= high) or (text_ok and type(value) is str):
                continue
            if not _cached_ok(column, value):
                bad.add(name)
    return bad


_TIMES = ("started_at", "finished_at")


def _cached_ok(column: str, value: Any) -> bool:
    if column in _TIMES:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return contract.typed_reason(column, value) is None


def save_index(path: Path, index: Index) -> None:
    data = {"version": reader_version(), "columns": index.columns, "entries": index.entries}
    # A read-only results folder: collect still works, only slower next time.
    with contextlib.suppress(OSError):
        rundir.write_text(path, json.dumps(data, separators=(",", ":")))
