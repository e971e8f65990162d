"""The run folders `collect` reads again (new, or a file changed since the index): each hashed and
parsed from the same bytes (results.index.signature, reader.read_run), on every core the process
may use when there are many. Reading 100,000 folders is pure per-folder Python work (open, JSON,
the contract's checks) that shares nothing, so N processes take about 1/N of the time; a few
changed folders are read in this process (a pool costs more than it saves below PARALLEL_FROM).

Workers are forked after the plan is made, so the planned runs reach them without being pickled;
only folder names go out and plain rows come back, in order: the rows, columns and index are the
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


def read_folders(runs_dir: str, jobs: list[Job], by_name: dict[str, RunSpec], read_run: ReadRun) -> Iterator[Read]:
    """Every job's folder read, in the order of `jobs`."""
    task = functools.partial(_read_job, runs_dir, by_name, read_run)
    return iter(forked.ForkedMap(task, jobs, worker_count(len(jobs)), CHUNK))


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


def _read_job(runs_dir: str, by_name: dict[str, RunSpec], read_run: ReadRun, job: Job) -> Read:
    name, cached = job
    return read_one(runs_dir, name, cached, by_name.get(name), read_run)
