"""sweep.forked: a map on forked workers gives, in order, what the task gives in this process; a
pool that cannot start or breaks leaves the rest to this process; ORCHESTRATE_COLLECT_WORKERS rules."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from orchestrator.sweep import forked


def _square(job: int) -> tuple[int, int]:
    return job * job, os.getpid()


def test_results_come_in_order_from_forked_workers() -> None:
    jobs = list(range(50))
    got = list(forked.ForkedMap(_square, jobs, workers=2, chunk=3))
    assert [value for value, _ in got] == [j * j for j in jobs]
    assert os.getpid() not in {pid for _, pid in got}, "done by the workers"
    assert forked._TASKS == {}, "the task is dropped when the map is done"


def test_one_worker_or_no_jobs_runs_here() -> None:
    assert {pid for _, pid in forked.ForkedMap(_square, [1, 2, 3], workers=1)} == {os.getpid()}
    assert list(forked.ForkedMap(_square, [], workers=2)) == []


def test_a_pool_that_breaks_leaves_the_rest_here(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(chunks: Iterator[list[object]]) -> Iterator[list[object]]:
        yield next(chunks)
        raise OSError("fork: resource temporarily unavailable")

    monkeypatch.setattr(forked, "pooled", broken)
    got = list(forked.ForkedMap(_square, list(range(10)), workers=2, chunk=4))
    assert [value for value, _ in got] == [j * j for j in range(10)]
    assert [pid == os.getpid() for _, pid in got] == [False] * 4 + [True] * 6


def test_a_task_that_raises_raises_here() -> None:
    with pytest.raises(ZeroDivisionError):
        list(forked.ForkedMap(lambda job: 1 / job, [1, 0, 2], workers=2, chunk=1))


@pytest.mark.parametrize(("setting", "jobs", "expected"), [("1", 10**6, 1), ("3", 10, 3), ("64", 10, 8), ("2", 1, 1)])
def test_the_setting_decides_the_workers(
    monkeypatch: pytest.MonkeyPatch, setting: str, jobs: int, expected: int
) -> None:
    monkeypatch.setenv(forked.WORKERS_ENV, setting)
    assert forked.worker_count(jobs, parallel_from=1000) == expected


def test_unset_few_jobs_stay_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(forked.WORKERS_ENV, raising=False)
    assert forked.worker_count(999, parallel_from=1000) == 1
    assert forked.worker_count(1000, parallel_from=1000) == min(len(os.sched_getaffinity(0)), forked.MAX_WORKERS)


def test_later_runs_the_task_on_a_forked_worker_and_gives_its_result() -> None:
    here = os.getpid()
    assert forked.later(os.getpid, workers=2)() != here
    assert forked.later(os.getpid, workers=1)() == here
    with pytest.raises(ZeroDivisionError):
        forked.later(lambda: 1 / 0, workers=2)()
    assert forked._TASKS == {}


@pytest.mark.parametrize("workers", [1, 2])
def test_later_settles_once(workers: int) -> None:
    """Every call gives the first call's result or exception; the task runs once (collect calls a
    worker's result again in its cleanup, after the tables failed or succeeded)."""
    calls: list[int] = []

    def task() -> list[int]:
        calls.append(os.getpid())
        return [len(calls)]

    result = forked.later(task, workers=workers)
    first = result()
    assert result() == first == [1]
    assert len(calls) == (1 if workers == 1 else 0)  # a forked task's calls stay in its worker

    failing = forked.later(lambda: 1 / 0, workers=workers)
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            failing()
    assert forked._TASKS == {}
