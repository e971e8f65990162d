"""store.status_reads: a large sweep's run folders read on forked workers give the very records (and
the very remembered verdicts) that reading them one by one in this process gives, hostile folders
included, and this process then reads no status.json of a plain run folder itself."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from tables_fixture import fake_run, finished_sweep

from orchestrator import store
from orchestrator.store import run_states, verdicts
from orchestrator.sweep import forked
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec
from trainers import rundir
from trainers.rundir import State

SPEC = """
name: reads
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid: {{backbone: [resnet10t], dataset: [digits], seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}}
ablations: {{Baseline: []}}
"""


def _hostile(spec: SweepSpec, runs: list[RunSpec], elsewhere: Path) -> None:
    """Every kind of odd run folder `inspect` names, one per run (runs[0] and the last stay sound)."""
    folder = lambda i: store.run_path(spec.output_path, runs[i].run_id)  # noqa: E731
    (folder(1) / rundir.STATUS).write_text('{"state": "compl')  # unreadable: truncated
    (folder(2) / rundir.STATUS).unlink()
    (folder(2) / rundir.STATUS).symlink_to(folder(0) / rundir.STATUS)  # a link is not read
    shutil.move(folder(3), elsewhere)
    folder(3).symlink_to(elsewhere)  # a symlinked run folder
    (folder(4) / rundir.METRICS).unlink()  # completed without metrics.json
    another = {"run_id": runs[0].run_id, "test": {"top1": 0.9}}
    (folder(5) / rundir.METRICS).write_text(json.dumps(another))  # another run's metrics.json
    shutil.rmtree(folder(6))
    folder(6).write_text("user data\n")  # a file in place of a folder
    shutil.rmtree(folder(7))  # never ran
    status = json.loads((folder(8) / rundir.STATUS).read_text())
    (folder(8) / rundir.STATUS).write_text(json.dumps({**status, "state": "exploded"}))  # unknown state
    (folder(9) / rundir.STATUS).write_text(json.dumps({**status, "pid": 10**12}))  # completed, pid no pid
    (folder(10) / rundir.STATUS).write_text(json.dumps({**status, "state": "running"}))  # no check
    fake_run(spec, runs[11], 0.5)  # sound (finished_sweep's 0.90 + 0.01 * 11 is no top-1)


def _settle(path: Path) -> None:
    """Back-date every verdict's check past RACY_NS, so that the next call answers from the cache."""
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry[1][4] += verdicts.RACY_NS
    path.write_text(json.dumps(data))


def _entries(path: Path) -> dict[str, object]:
    """The remembered verdicts without their check times (the two calls run at other times)."""
    return {k: [e[0], e[1][:4], e[2]] for k, e in json.loads(path.read_text())["entries"].items()}


@pytest.fixture
def hostile(write_spec: Callable[..., Path], tmp_path: Path) -> tuple[SweepSpec, list[RunSpec]]:
    spec, runs = finished_sweep(write_spec(SPEC))
    _hostile(spec, runs, tmp_path / "elsewhere")
    return spec, runs


def test_workers_read_what_one_process_reads(
    hostile: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = hostile
    cache = spec.output_path / verdicts.FILE
    monkeypatch.setattr(run_states, "CHECKS_AHEAD_FROM", 2)  # 12 runs: read ahead with 2 workers
    here: list[str] = []
    original = run_states.read_status

    def counted(path: Path, preread: object = None) -> tuple[object, str | None]:
        here.append(path.name)  # in this process only: a worker's list is its own copy
        return original(path)

    monkeypatch.setattr(run_states, "read_status", counted)

    def inspected(workers: str, cached: dict[str, object] | None) -> tuple[list[run_states.RunRecord], object]:
        if cached is None:
            cache.unlink(missing_ok=True)
        else:
            cache.write_text(json.dumps(cached))
        monkeypatch.setenv(forked.WORKERS_ENV, workers)
        here.clear()
        return run_states.inspect(runs, spec.output_path), _entries(cache)

    serial, serial_cache = inspected("1", None)
    assert len(here) == len(runs) - 2, "one by one: every folder but the link and the file read here"
    pooled, pooled_cache = inspected("2", None)
    assert here == [], "read ahead: no status.json read here"
    assert pooled == serial and pooled_cache == serial_cache
    _settle(cache)
    settled = json.loads(cache.read_text())  # the same remembered verdicts for both: answered from them
    assert inspected("2", settled) == inspected("1", settled) == (serial, serial_cache)
    problems = {r.run.run_id: r.problem or "" for r in serial}
    states = [r.state for r in serial]
    assert states == [State.COMPLETED, *[State.MISSING] * 9, State.RUNNING, State.COMPLETED]
    assert "truncated" in problems[runs[1].run_id] and "symbolic link" in problems[runs[2].run_id]
    assert serial[3].foreign is not None and serial[6].foreign is not None
    assert "no metrics.json" in problems[runs[4].run_id] and runs[0].run_id in problems[runs[5].run_id]
    assert problems[runs[7].run_id] == "" and "unknown state" in problems[runs[8].run_id]
    assert "not a process id" in problems[runs[9].run_id]


def test_a_change_after_the_cache_is_checked_again_alike(
    hostile: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = hostile
    cache = spec.output_path / verdicts.FILE
    monkeypatch.setattr(run_states, "CHECKS_AHEAD_FROM", 2)
    run_states.inspect(runs, spec.output_path)
    _settle(cache)
    settled = cache.read_text()
    (store.run_path(spec.output_path, runs[0].run_id) / rundir.METRICS).write_text('{"test": {"top1": 0.9')

    def inspected(workers: str) -> list[tuple[State, str | None]]:
        cache.write_text(settled)
        monkeypatch.setenv(forked.WORKERS_ENV, workers)
        return [(r.state, r.problem) for r in run_states.inspect(runs, spec.output_path)]

    serial = inspected("1")
    assert inspected("2") == serial
    assert serial[0][0] is State.MISSING and "truncated" in (serial[0][1] or ""), "the broken rewrite is seen"
    assert serial[-1] == (State.COMPLETED, None), "the settled verdict still answers for the sound run"
