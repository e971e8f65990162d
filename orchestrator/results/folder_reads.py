"""The run folders `collect` reads again (new, or a file changed since the index): each hashed and
parsed from the same bytes (results.index.signature, reader.read_run), on every core the process
may use when there are many. Reading 100,000 folders is pure per-folder Python work (open, JSON,
the contract's checks) that shares nothing, so N processes take about 1/N of the time; a few
changed folders are read in this process (a pool costs more than it saves below PARALLEL_FROM).

Workers are forked after the plan is made, so the planned runs reach them without being pickled;
only folder names go out and batches of rows come back by column (Batch), in order: the rows, columns and index are the
same as a serial read (tests/unit/results/test_folder_reads.py). A pool that cannot start or
breaks leaves the rest to this process. ORCHESTRATE_COLLECT_WORKERS sets the number (1: serial).
The pool is orchestrator.sweep.forked's (status checks metrics.json files with it too).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.results import index as index_of
from orchestrator.sweep import forked
from orchestrator.sweep.plan import RunSpec

PARALLEL_FROM = 2_000
"""Folders to read before a pool of workers is worth its start (about 0.1 s)."""
CHUNK = 250
"""Folders per task: small enough to spread the work evenly, large enough to keep pickling rare."""
WORKERS_ENV = forked.WORKERS_ENV


@dataclass(frozen=True)
class Read:
    """One folder read: its signature, its row (None: the same bytes as its index entry, which
    holds) and the problems found."""

    name: str
    signature: list[Any]
    row: dict[str, Any] | None
    problems: list[str]


Job = tuple[str, Any]
"""(folder name, its index entry or None)."""


ReadRun = Callable[[Path, "RunSpec | None", dict[str, Any]], tuple[dict[str, Any], list[str]]]
"""reader.read_run: a folder's row and problems from the bytes already read (passed in: the
reader imports this module)."""


@dataclass(frozen=True)
class Batch:
    """Consecutive jobs' folders read (a worker's task): names, signatures and problems per folder,
    the rows of those whose bytes were read, by column. A row of a real run has about 140 keys, each
    pickled again per row (3 KB a row, 40 us a row to pickle and unpickle, then 30 us to file it
    by column); by column, keys go once per batch and a run of positions is one slice assignment."""

    names: list[str]
    signatures: list[list[Any]]
    problems: list[list[str]]
    read: list[bool]
    """Per folder, whether its row was read (False: the same bytes as its index entry, which holds)."""
    columns: dict[str, list[Any]]
    """Per column, in the order rows first have it, one value per folder read (None: the row lacks it)."""


def read_folders(runs_dir: str, jobs: list[Job], by_name: dict[str, RunSpec], read_run: ReadRun) -> Iterator[Batch]:
    """Every job's folder read, in batches of CHUNK in the order of `jobs`."""
    task = functools.partial(_read_batch, runs_dir, by_name, read_run)
    batches = [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)]
    return iter(forked.ForkedMap(task, batches, worker_count(len(jobs)), 1))


def file_batch(rows: index_of.Index, batch: Batch, position: dict[str, int]) -> tuple[list[int], int]:
    """A batch's folders filed into `rows` (position: a folder name's row): the positions whose rows
    were read, and how many folders were hashed again to other signatures without a change of bytes."""
    fresh: list[int] = []
    moved = 0
    for name, signature, found, was_read in zip(batch.names, batch.signatures, batch.problems, batch.read, strict=True):
        i = position[name]
        if was_read:  # else the same bytes hashed again (RACY_NS): the row holds
            fresh.append(i)
            rows.problems[i] = found
        else:
            moved += rows.signatures[i] != signature
        rows.signatures[i] = signature
    rows.set_rows(fresh, batch.columns)
    return fresh, moved


def by_column(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as columns in the order rows first have them, None where a row lacks one. Rows of one
    sweep mostly have the same keys in the same order: then one zip in C, no loop per value."""
    if not rows:
        return {}
    keys = list(rows[0])
    if all(len(row) == len(keys) and list(row) == keys for row in rows):
        return dict(zip(keys, map(list, zip(*(row.values() for row in rows), strict=True)), strict=True))
    columns: dict[str, list[Any]] = {}
    for j, row in enumerate(rows):
        for key, value in row.items():
            column = columns.get(key)
            if column is None:
                column = columns[key] = [None] * len(rows)
            column[j] = value
    return columns


def worker_count(jobs: int) -> int:
    """Processes to read `jobs` folders with: 1 below PARALLEL_FROM, else the CPUs this process may
    use (at most forked.MAX_WORKERS), or ORCHESTRATE_COLLECT_WORKERS."""
    return forked.worker_count(jobs, PARALLEL_FROM)


def read_one(runs_dir: str, name: str, cached: Any, run: RunSpec | None, read_run: ReadRun) -> Read:
    """One folder: hashed (files whose stat still matches `cached` are not read), then read from
    those very bytes unless they are the bytes `cached` was read from."""
    path = os.path.join(runs_dir, name)
    preread: dict[str, Any] = {}
    sig = [run is not None, index_of.signature(path, index_of.cached_signature(cached), preread)]
    if cached is not None and index_of.content_key(cached[0]) == index_of.content_key(sig):
        return Read(name, sig, None, cached[2])
    row, problems = read_run(Path(path), run, preread)
    return Read(name, sig, row, problems)


def _read_batch(runs_dir: str, by_name: dict[str, RunSpec], read_run: ReadRun, jobs: list[Job]) -> Batch:
    reads = [read_one(runs_dir, name, cached, by_name.get(name), read_run) for name, cached in jobs]
    rows = [read.row for read in reads if read.row is not None]
    return Batch(
        names=[read.name for read in reads],
        signatures=[read.signature for read in reads],
        problems=[read.problems for read in reads],
        read=[read.row is not None for read in reads],
        columns=by_column(rows),
    )
