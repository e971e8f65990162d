"""Warm local workers: one import for many runs, a failed or dead run never takes the others down,
and a run in a warm worker ends exactly as it does in a fresh process."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from config_helpers import FAST_RUNS

from orchestrator import launch, store
from orchestrator.launch.worker import LOG_ERR, LOG_OUT, WarmWorker
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec
from trainers import rundir
from trainers.rundir import State

pytestmark = pytest.mark.slow

FAST = FAST_RUNS


class Job:
    """A picklable stand-in for TrainJob: prints, then does what it is told."""

    def __init__(self, action: str, marker: Path) -> None:
        self.action, self.marker = action, marker

    def __call__(self) -> None:
        print(f"job {self.action} in pid {os.getpid()}")
        self.marker.write_text(str(os.getpid()))
        if self.action == "raise":
            raise RuntimeError("boom from the run")
        if self.action == "die":
            os._exit(3)
        if self.action in ("child", "hang with child"):
            # A process of its own, as a DataLoader worker is: a daemonic worker may not start one.
            child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(600,))
            child.start()
            self.marker.with_suffix(".child").write_text(str(child.pid))
        if self.action == "affinity":
            self.marker.with_suffix(".cpus").write_text(json.dumps(sorted(os.sched_getaffinity(0))))
        if self.action == "start method":
            self.marker.with_suffix(".method").write_text(multiprocessing.get_start_method())
        if self.action in ("hang", "hang with child"):
            threading.Event().wait()


def _finish(worker: WarmWorker, timeout_s: float | None = None) -> str | None:
    while (done := worker.poll(0.2, timeout_s)) is None:
        pass
    return done.error


def test_worker_survives_a_failing_run_and_logs_each_run_apart(tmp_path: Path) -> None:
    worker = WarmWorker()
    try:
        worker.submit(Job("raise", tmp_path / "a"), tmp_path / "a_logs")
        assert _finish(worker) == "RuntimeError: boom from the run"
        worker.submit(Job("ok", tmp_path / "b"), tmp_path / "b_logs")
        assert _finish(worker) is None
    finally:
        worker.close()
    # Same process for both runs: the imports were paid once.
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text()
    assert "job raise" in (tmp_path / "a_logs" / LOG_OUT).read_text()
    assert "job ok" not in (tmp_path / "a_logs" / LOG_OUT).read_text()
    assert "job ok" in (tmp_path / "b_logs" / LOG_OUT).read_text()
    failed_log = (tmp_path / "a_logs" / LOG_ERR).read_text()
    assert "Traceback (most recent call last)" in failed_log and "RuntimeError: boom from the run" in failed_log


def test_a_run_starts_processes_as_a_fresh_process_would(tmp_path: Path) -> None:
    """DataLoader workers start with the default start method: a run in a warm worker gets the
    platform's (as in a SLURM job), not the "spawn" that started the worker, which re-imported
    torch in every loader worker, one after another."""
    fresh = subprocess.run(
        [sys.executable, "-c", "import multiprocessing; print(multiprocessing.get_start_method())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    worker = WarmWorker()
    try:
        worker.submit(Job("start method", tmp_path / "a"), tmp_path / "a_logs")
        assert _finish(worker) is None
    finally:
        worker.close()
    assert (tmp_path / "a").with_suffix(".method").read_text() == fresh


def test_workers_sharing_the_machine_each_get_their_own_cpus(tmp_path: Path) -> None:
    """Two workers at once are pinned to disjoint shares of this process's CPUs (their runs size loader
    workers and torch threads from them); a lone worker keeps them all."""
    mine = sorted(os.sched_getaffinity(0))
    for count in (1, 2):
        jobs = [(Job("affinity", tmp_path / f"{count}-{i}"), tmp_path / f"{count}-{i}-logs") for i in range(count)]
        errors: dict[int, str | None] = {}
        launch.worker.run_pool(jobs, [{}] * count, None, errors.__setitem__)
        assert errors == dict.fromkeys(range(count))
        shares = [json.loads((tmp_path / f"{count}-{i}").with_suffix(".cpus").read_text()) for i in range(count)]
        if count == 1 or len(mine) == 1:
            assert all(share == mine if count == 1 else len(share) == 1 for share in shares)
        else:
            assert not set(shares[0]) & set(shares[1]) and set(shares[0]) | set(shares[1]) <= set(mine)
            assert all(shares)


def test_a_run_may_start_processes_and_none_outlives_its_worker(tmp_path: Path) -> None:
    """Children are allowed (DataLoader workers); at the time limit the hung run's child dies with
    its worker, as does a child an earlier run left behind; at close, the same."""
    worker = WarmWorker()
    try:
        worker.submit(Job("child", tmp_path / "a"), tmp_path / "logs")
        assert _finish(worker) is None
        worker.submit(Job("hang with child", tmp_path / "b"), tmp_path / "logs")
        while not (tmp_path / "b.child").exists():  # the hung run's child has started
            assert worker.poll(0.2) is None
        assert "timed out" in str(_finish(worker, timeout_s=2.0))
        for name in ("a", "b"):
            child = int((tmp_path / f"{name}.child").read_text())
            _wait_until(lambda pid=child: _gone(pid), 30, f"run {name}'s child to die with the timed-out worker")
        worker.submit(Job("child", tmp_path / "c"), tmp_path / "logs")  # in the replacement worker
        assert _finish(worker) is None
        leaked = int((tmp_path / "c.child").read_text())
        assert not _gone(leaked)
    finally:
        worker.close()
    _wait_until(lambda: _gone(leaked), 30, "the leaked child to die with its worker at close")


def _gone(pid: int) -> bool:
    """No such process, or only its exit status left (a zombie that init has not reaped yet)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(0.1)  # polling a process table, not standing in for an event


def test_a_dead_or_hung_worker_is_replaced(tmp_path: Path) -> None:
    worker = WarmWorker()
    try:
        worker.submit(Job("die", tmp_path / "a"), tmp_path / "logs")
        assert "died" in str(_finish(worker))
        worker.submit(Job("hang", tmp_path / "b"), tmp_path / "logs")
        assert "timed out" in str(_finish(worker, timeout_s=2.0))
        worker.submit(Job("ok", tmp_path / "c"), tmp_path / "logs")
        assert _finish(worker) is None
    finally:
        worker.close()
    pids = {(tmp_path / name).read_text() for name in ("a", "b", "c")}
    assert len(pids) == 3, "each failure replaced the worker process"


def test_runs_in_one_warm_worker_equal_fresh_process_runs(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    """Isolation: the second and third runs of a worker end bit for bit as when run alone."""
    spec = load_spec(write_spec(), FAST)
    runs = plan(spec)
    outcome = launch.submit(spec, runs, "local", workers=1)
    assert len(outcome.completed) == 3
    warm = {r.run_id: _scores(store.run_path(spec.output_path, r.run_id)) for r in runs}
    pids = {rundir.read_json(store.run_path(spec.output_path, r.run_id) / rundir.STATUS)["pid"] for r in runs}
    assert len(pids) == 1, "one warm worker ran the three runs"
    for run in runs[1:]:
        alone = load_spec(write_spec(filename="alone.yaml", output_dir=str(tmp_path / f"alone-{run.run_id}")), FAST)
        [same] = [r for r in plan(alone) if r.run_id == run.run_id]
        assert launch.submit(alone, [same], "local", workers=1).completed
        assert _scores(store.run_path(alone.output_path, same.run_id)) == warm[run.run_id]


def test_two_workers_share_the_runs(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(), FAST)
    runs = plan(spec)
    outcome = launch.submit(spec, runs, "local", workers=2)
    assert len(outcome.completed) == 3 and not outcome.failed
    statuses = [rundir.read_json(store.run_path(spec.output_path, r.run_id) / rundir.STATUS) for r in runs]
    assert all(s["state"] == State.COMPLETED.value for s in statuses)
    assert len({s["pid"] for s in statuses}) == 2
    assert all(Path(s["log_out"]).is_file() for s in statuses)


def _scores(path: Path) -> str:
    metrics = rundir.read_json(path / rundir.METRICS) or {}
    history = (path / rundir.HISTORY).read_text().splitlines()
    # Timing columns differ between any two runs; everything learned must not.
    header = history[0].split(",")
    keep = [i for i, name in enumerate(header) if name not in ("epoch_s", "train_images_per_s")]
    rows = [[row.split(",")[i] for i in keep] for row in history]
    return json.dumps({"test": metrics.get("test"), "val": metrics.get("val"), "history": rows}, sort_keys=True)
