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
    (an edited index put 402.58% top-1 in a table) is dropped, and that folder is read again."""
    try:
        data = bounded.read_json_object(path, bounded.INDEX_LIMIT)
    except bounded.Unreadable:
        return Index([], {})
    if not data or data.get("version") != reader_version():
        return Index([], {})
    columns, entries = data.get("columns"), data.get("entries")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) or not isinstance(entries, dict):
        return Index([], {})
    if len(set(columns)) != len(columns):
        return Index([], {})
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
    return Index(columns, {name: entry for name, entry in entries.items() if _valid_entry(entry, columns, checks)})


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


def save_index(path: Path, index: Index) -> None:
    data = {"version": reader_version(), "columns": index.columns, "entries": index.entries}
    # A read-only results folder: collect still works, only slower next time.
    with contextlib.suppress(OSError):
        rundir.write_text(path, json.dumps(data, separators=(",", ":")))
