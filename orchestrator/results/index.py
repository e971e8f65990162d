"""The incremental index of a sweep's rows: a row is read again only when a file of its run folder
changed, so a second `collect` of 10,000 runs reads only what changed. Here: the files' signatures
and the rows by column (Index); on disk, validated as it is read: results.index_file.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.sweep import bounded
from trainers import rundir

RACY_NS = 2_000_000_000
"""A file hashed less than this after its last change is hashed again next time: a second write
within one tick of the file system's clock (and of the same size, into a reused inode) would keep
its stat (git's "racy clean" entries, the same rule)."""

_FILES = tuple(
    (name, bounded.LIMITS.get(name, bounded.DEFAULT_LIMIT)) for name in (rundir.CONFIG, rundir.STATUS, rundir.METRICS)
)
"""The files a cached row depends on, with their read limits."""


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
    for (name, limit), before in zip(_FILES, previous, strict=True):
        file = os.path.join(path, name)
        out.append(before if _unchanged(file, before, limit) else _hashed_file(Path(file), keep))
    return out


Stat = tuple[int, int, int, int, int]
"""What `unchanged` compares of a file's lstat: mode, size, mtime ns, inode, ctime ns."""
FolderStats = tuple[Stat | None, ...]
"""A run folder's three files' Stat, in _FILES order (None: no lstat, e.g. the file is absent)."""


def unchanged(path: str, sig: Any, in_plan: bool, seen: FolderStats | None = None) -> bool:
    """Whether a folder's cached row still holds without reading a byte: the folder is as planned
    (or not) as then, and every file keeps its indexed stat (signature's first check, alone) or is
    still absent. `sig`: the index's [in plan, files' signatures] of the folder (None: none).
    `seen`: the files' lstat taken already (folder_stats), else taken here."""
    if not (isinstance(sig, list) and len(sig) == 2 and sig[0] is in_plan):
        return False
    files = sig[1]
    if not (isinstance(files, list) and len(files) == 3):
        return False
    if seen is not None:
        return all(
            _holds(info, before, limit) or (before is None and info is None)
            for (_, limit), before, info in zip(_FILES, files, seen, strict=True)
        )
    for (name, limit), before in zip(_FILES, files, strict=True):
        file = f"{path}/{name}"  # os.path.join's result for a folder path and a file name, at a third of its cost
        if not (_unchanged(file, before, limit) or (before is None and not os.path.lexists(file))):
            return False
    return True


def folder_stats(runs_dir: str, names: list[str]) -> list[FolderStats]:
    """Every folder's files' lstat, for `unchanged` to compare with the index once it is loaded (a
    forked worker takes them while collect parses the index: about 0.1 s each at 10,000 runs)."""
    out = []
    for name in names:
        stats: list[Stat | None] = []
        for file, _ in _FILES:
            try:
                info = os.lstat(f"{runs_dir}/{name}/{file}")
            except OSError:
                stats.append(None)
            else:
                stats.append(_stat_of(info))
        out.append(tuple(stats))
    return out


def _unchanged(file: str, before: Any, limit: int) -> bool:
    """Whether `file` is a regular file within its size `limit` whose stat is `before`'s, hashed
    RACY_NS or more after its last change (its digest then still holds). Run 30,000 times by a
    second collect of 10,000 runs: one lstat, then plain comparisons."""
    if type(before) is not list:  # not hashed (None: absent then): no lstat to take
        return False
    try:
        info = os.lstat(file)
    except OSError:
        return False
    return _holds(_stat_of(info), before, limit)


def _stat_of(info: os.stat_result) -> Stat:
    return info.st_mode, info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns


def _holds(info: Stat | None, before: Any, limit: int) -> bool:
    """Whether a file's lstat `info` is a bounded regular file's that keeps `before` (a file
    signature) and was hashed RACY_NS or more after its last change."""
    if info is None or type(before) is not list or len(before) != 6:
        return False
    if type(before[5]) is not int or type(before[2]) is not str:
        return False
    mode, size, mtime_ns, inode, ctime_ns = info
    return (
        stat.S_ISREG(mode)
        and size <= limit
        and before[0] == mtime_ns
        and before[1] == size
        and before[3] == inode
        and before[4] == ctime_ns
        and before[5] - ctime_ns >= RACY_NS
    )


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


@dataclass
class Index:
    """A sweep's cached rows, by column: position i of every list is run folder `names[i]`. On disk
    the columns stay columns (the JSON of 10,000 runs parses in a fraction of the time rows took)
    and the frame is built from them."""

    columns: list[str]
    names: list[str] = field(default_factory=list)
    values: list[list[Any]] = field(default_factory=list)
    """Per column, one value per folder."""
    signatures: list[Any] = field(default_factory=list)
    """Per folder, [in plan, its three files' signatures] (None: no cached row, read it again)."""
    problems: list[list[str]] = field(default_factory=list)
    """Per folder, the problems its read found."""
    generation: str | None = None
    """The index file's generation these rows were loaded from (None: none; the next save writes a
    whole file). A change file (index_file) holds only rows that differ from that file's."""
    in_changes: set[int] = field(default_factory=set)
    """Positions whose rows came from the change file over that generation."""
    width: int = 0
    """Columns when loaded (set_rows only appends: more columns now, the whole file is written)."""
    state: str | None = None
    """The token of the save these rows were loaded from (index file, or its change file over it):
    rows that are not read again are those of that save (results.runs_csv_cache reuses their lines)."""

    def __post_init__(self) -> None:
        self._known = set(self.columns)
        self.width = self.width or len(self.columns)

    def entry(self, i: int) -> list[Any] | None:
        """Folder i as folder_reads takes a cached entry: [signature, None, problems] (None: not cached)."""
        return None if self.signatures[i] is None else [self.signatures[i], None, self.problems[i]]

    def column(self, name: str) -> list[Any]:
        """The values of column `name`, one per folder (added, all None, when no row had it)."""
        self._add_columns([name])
        return self.values[self.columns.index(name)]

    def set_rows(self, positions: list[int], columns: dict[str, list[Any]]) -> None:
        """The values of the folders at `positions` (increasing) from rows just read, given by column
        (folder_reads.by_column): a column they lack is None there, a column no row had yet is added
        in their order. Consecutive positions (a cold read: every folder) are filled by slice, in C."""
        if not positions:
            return
        self._add_columns(columns)
        first, count = positions[0], len(positions)
        span = slice(first, first + count) if positions[-1] - first == count - 1 else None
        blank = [None] * count
        for column, values in zip(self.columns, self.values, strict=True):
            got = columns.get(column, blank)
            if span is not None:
                values[span] = got
            else:
                for i, value in zip(positions, got, strict=True):
                    values[i] = value

    def _add_columns(self, keys: Iterable[str]) -> None:
        """Columns for the keys not known yet, in their order, all None."""
        for key in keys:
            if key not in self._known:
                self.columns.append(key)
                self.values.append([None] * len(self.names))
                self._known.add(key)


def aligned(index: Index, names: list[str]) -> Index:
    """The index's rows for exactly `names`, in that order (copies; folders it lacks are not cached)."""
    if names == index.names:  # the usual case: the same folders as last time
        return Index(
            columns=list(index.columns),
            names=list(names),
            values=[list(values) for values in index.values],
            signatures=list(index.signatures),
            problems=list(index.problems),
            generation=index.generation,
            in_changes=set(index.in_changes),
            width=index.width,
            state=index.state,
        )
    where = {name: i for i, name in enumerate(index.names)}
    take = [where.get(name) for name in names]
    return Index(
        columns=list(index.columns),
        names=list(names),
        values=[[None if i is None else values[i] for i in take] for values in index.values],
        signatures=[None if i is None else index.signatures[i] for i in take],
        problems=[[] if i is None else index.problems[i] for i in take],
    )


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
