"""Run folders: atomic writes, state bookkeeping, selection of what to (re)run."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import store
from orchestrator.launch import select
from orchestrator.results import reader
from orchestrator.store import run_states
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec
from trainers import rundir
from trainers.rundir import State


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    rundir.write_json(target, {"top1": 0.5})
    with pytest.raises(RuntimeError), rundir.atomic_open(target) as handle:
        handle.write(b'{"top1": 0.9')  # half a file, then the job dies
        raise RuntimeError("killed")
    assert rundir.read_json(target) == {"top1": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_status_history_and_timestamps(tmp_path: Path) -> None:
    rundir.update_status(tmp_path, State.RUNNING, pid=1)
    status = rundir.update_status(tmp_path, State.FAILED, error="boom")
    assert status.state == "failed" and status.error == "boom" and status.pid == 1
    assert [h.state for h in status.history] == ["running", "failed"]
    assert status.finished_at is not None and status.started_at is not None
    assert status.finished_at >= status.started_at
    again = rundir.update_status(tmp_path, State.RUNNING)
    assert "error" not in rundir.read_json(tmp_path / rundir.STATUS) and again.error is None
    assert rundir.read_state(tmp_path) is State.RUNNING


def test_select_skips_completed_and_live_runs(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = load_spec(write_spec())
    runs = plan(spec)
    root = store.sweep_root(spec)
    for run in runs:
        store.prepare(run, store.run_path(root, run.run_id))
    done, failed, live, stale = (store.run_path(root, r.run_id) for r in runs[:4])
    rundir.update_status(done, State.COMPLETED)
    rundir.write_json(done / rundir.METRICS, {"test": {"top1": 0.5}})  # completed without it: run again
    rundir.update_status(failed, State.FAILED, error="x")
    rundir.update_status(live, State.RUNNING, host=os.uname().nodename, pid=os.getpid())
    rundir.update_status(stale, State.RUNNING, host=os.uname().nodename, pid=2**22 + 12345)
    selection = select(run_states.inspect(runs, root))
    todo = {r.run.run_id for r in selection.todo}
    assert runs[0].run_id not in todo and runs[2].run_id not in todo
    assert {runs[1].run_id, runs[3].run_id, runs[4].run_id, runs[5].run_id} == todo
    assert selection.skipped == {"completed": 1, "running locally": 1}
    # --force redoes completed runs too, but never starts a second copy of a live one.
    forced = select(run_states.inspect(runs, root), force=True)
    assert {r.run.run_id for r in forced.todo} == {r.run_id for r in runs} - {runs[2].run_id}


def test_prepare_writes_config_with_metadata(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec())
    run = plan(spec)[2]
    path = store.run_path(store.sweep_root(spec), run.run_id)
    store.prepare(run, path)
    config = reader.read_config(path)
    assert config is not None
    assert config["name"] == run.name and config["ablation"] == "+ Aug"
    assert config["trainer"] == run.config.model_dump(mode="json")
    assert rundir.read_state(path) is State.PENDING


def test_archive_moves_instead_of_deleting(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "abc"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    moved = store.archive(run, tmp_path, "stamp")
    assert not run.exists() and (moved / "metrics.json").read_text() == "{}"


def test_select_never_duplicates_runs_live_in_slurm(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec())
    runs = plan(spec)
    root = store.sweep_root(spec)
    failed = store.run_path(root, runs[0].run_id)
    store.prepare(runs[0], failed)
    rundir.update_status(failed, State.FAILED, error="x")
    selection = select(run_states.inspect(runs, root), force=True, in_slurm={runs[0].run_id, runs[1].run_id})
    assert {r.run.run_id for r in selection.todo} == {r.run_id for r in runs[2:]}
    assert selection.skipped == {"pending or running in SLURM": 2}
