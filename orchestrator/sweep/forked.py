"""Per-item Python work that shares nothing (100,000 run folders read, checked or written out) on
every core the process may use: `ForkedMap(task, jobs, workers)` starts forked workers at once and
yields task(job) for every job, in the order of `jobs`, when iterated.

The workers are forked, so the task (and whatever it closes over: planned runs, a frame) reaches them
without being pickled; only the jobs go out and the results come back, in chunks. Starting at
construction lets the caller do other work while the workers run (`status` reads status.json files
while its workers check metrics.json files). A pool that cannot start or breaks leaves the jobs it
did not finish to this process: the results are the same either way (tests/unit/sweep/test_forked.py).
Used by results.folder_reads (collect's cold read, runs.csv) and store.run_states (status).
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, cast

J = TypeVar("J")
R = TypeVar("R")

MAX_WORKERS = 8
WORKERS_ENV = "ORCHESTRATE_COLLECT_WORKERS"
"""Processes for this work (1: all in this process); unset: the CPUs this process may use."""

_TASKS: dict[int, Callable[[Any], Any]] = {}
"""Each running map's task, set before its workers fork: they call their copy of it."""
_TOKENS = itertools.count()


def worker_count(jobs: int, parallel_from: int) -> int:
    """Processes to do `jobs` items with: 1 below `parallel_from`, else the CPUs this process may use
    (at most MAX_WORKERS), or ORCHESTRATE_COLLECT_WORKERS (1: serial) for 2 or more jobs."""
    setting = os.environ.get(WORKERS_ENV, "")
    if setting.strip().isdigit():
        return max(1, min(int(setting), MAX_WORKERS)) if jobs >= 2 else 1
    if jobs < parallel_from:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))


class ForkedMap(Generic[J, R]):
    """task(job) for every job, in order; on forked processes (started now) when `workers` is more
    than 1: that many, or one per chunk of jobs when there are fewer chunks."""

    def __init__(self, task: Callable[[J], R], jobs: list[J], workers: int, chunk: int = 250) -> None:
        self.task, self.jobs = task, jobs
        self.token = next(_TOKENS)
        self.pool: Any = None
        self.chunks: Iterator[list[R]] | None = None
        if workers > 1 and jobs:
            chunk = max(1, chunk)
            self._start(min(workers, -(-len(jobs) // chunk)), chunk)  # no more workers than chunks

    def _start(self, workers: int, chunk: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _TASKS[self.token] = self.task
        parts = [self.jobs[i : i + chunk] for i in range(0, len(self.jobs), chunk)]
        try:
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
            self.chunks = self.pool.map(functools.partial(_run_chunk, self.token), parts)
        except OSError:  # no process to fork (a process limit): all in this process
            self._close()

    def __iter__(self) -> Iterator[R]:
        from concurrent.futures.process import BrokenProcessPool

        done = 0
        try:
            for results in pooled(self.chunks) if self.chunks is not None else ():
                for result in results:
                    yield result
                    done += 1
        except (OSError, BrokenProcessPool):
            pass  # a killed worker, a pipe gone: the rest in this process
        finally:
            self._close()
        for job in self.jobs[done:]:
            yield self.task(job)

    def _close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.chunks = None
        _TASKS.pop(self.token, None)


def later(task: Callable[[], R], workers: int) -> Callable[[], R]:
    """task() started now on a forked worker when `workers` > 1 (this process goes on with other
    work: collect writes runs.csv and the index beside building its tables); its result (or its
    exception) when the returned function is called, the same on every call. With 1 worker,
    task() runs at the first call, here."""
    started = ForkedMap(lambda _: task(), [None], workers)
    settled: list[tuple[bool, Any]] = []  # (succeeded, value or exception), once settled

    def result() -> R:
        if not settled:
            try:
                (value,) = started  # the whole map, so that its worker is shut down
                settled.append((True, value))
            except Exception as exc:  # kept, and raised again on every call
                settled.append((False, exc))
        succeeded, value = settled[0]
        if not succeeded:
            raise value
        return cast(R, value)

    return result


def pooled(chunks: Iterator[list[R]]) -> Iterator[list[R]]:
    """The workers' results, a chunk at a time, in order (a seam for tests that break the pool)."""
    yield from chunks


def _run_chunk(token: int, jobs: list[Any]) -> list[Any]:
    """In a worker: one chunk of jobs through the task its parent set before the fork."""
    task = _TASKS[token]
    return [task(job) for job in jobs]
