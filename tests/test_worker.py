"""Warm local workers: one import for many runs, a failed or dead run never takes the others down,
and a run in a warm worker ends exactly as it does in a fresh process."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import launch
from orchestrator.launch.worker import LOG_OUT, WarmWorker
from orchestrator.sweep import store
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec
from trainers import rundir
from trainers.rundir import State

pytestmark = pytest.mark.slow

FAST = [
    "grid.backbone=[test_resnet]",
    "grid.seed=[0]",
    "defaults.data.dataset={name: digits, max_samples: 128}",
    "defaults.torch_threads=1",
]


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
        if self.action == "hang":
            import threading

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
