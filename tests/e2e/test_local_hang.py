"""A local run that hangs is ended by the hang watchdog (launch/watchdog.py) as a SLURM job's is, with
the same record (status.json `failure: hang`, shown by `status`), and the worker goes on with the next
run. Until now only `slurm.timeout_min` (60 min unless set) ended it: the watchdog ran under SLURM
only. Real processes: `orchestrate submit --executor local`, its warm worker stopped (SIGSTOP) in the
middle of a run, as a deadlock would leave it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from config_helpers import FAST_RUNS
from deadline import deadline

from orchestrator import store
from orchestrator.launch.failures import Failure
from orchestrator.launch.status import sweep_status
from orchestrator.launch.worker import LOG_ERR
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec
from trainers import rundir

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# The first run trains for ever (until it is stopped), the second one epoch. Tiny hang limits: 5 s
# without a step beat (the trainer beats every 2 s while it steps), 20 s in start/eval/checkpoint.
OVERRIDES = [
    *FAST_RUNS,
    "modifiers.forever={epochs: 100000}",
    "ablations={Forever: [forever], Baseline: []}",
    "retry.hang_floor_s=5",
    "retry.hang_slow_phase_s=20",
]


def _until(predicate: Callable[[], object], seconds: int) -> object:
    """Poll files another process writes until `predicate` holds; Hung past `seconds` (the sleep is a
    polling period of those files, not a stand-in for an event this process could wait on)."""
    with deadline(seconds):
        while not (value := predicate()):
            time.sleep(0.2)
        return value


def _running_pid(run_dir: Path) -> int | None:
    status = rundir.read_json(run_dir / rundir.STATUS) or {}
    return status["pid"] if status.get("state") == "running" and isinstance(status.get("pid"), int) else None


def _in_step_phase(run_dir: Path) -> bool:
    try:
        return (run_dir / "heartbeat").read_text() == "step"
    except OSError:
        return False


def test_a_hung_local_run_is_ended_by_the_watchdog_and_the_next_run_trains(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    sweep = write_spec()
    spec = load_spec(sweep, OVERRIDES)
    runs = plan(spec)
    hung, after = (store.run_path(spec.output_path, run.run_id) for run in runs)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "cli.log"
    with log.open("wb") as handle:
        cli = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "submit", str(sweep), *OVERRIDES, "--executor", "local"],
            cwd=tmp_path,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        worker = int(_until(lambda: _running_pid(hung), 300))  # type: ignore[call-overload]
        # Its watchdog watches from its first line on; the heartbeat says the trainer is stepping.
        _until(lambda: "watchdog: watching pid" in (hung / rundir.LOGS / LOG_ERR).read_text(), 60)
        _until(lambda: _in_step_phase(hung), 60)
        os.kill(worker, signal.SIGSTOP)  # a stopped trainer beats no more, and cannot silence its watchdog
        cli.wait(timeout=300)  # the hang is found in 5 s (20 s if it stopped in an eval), then run 2 trains
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    output = log.read_text()
    first = rundir.read_json(hung / rundir.STATUS) or {}
    assert first["state"] == "failed" and first["failure"] == "hang", output
    assert first["failure_reason"].startswith("no progress for"), first
    assert first["attempts"][-1]["failure"] == "hang"
    second = rundir.read_json(after / rundir.STATUS) or {}
    assert second["state"] == "completed", output
    assert second["pid"] != worker, "a new worker trained the next run"
    assert f"failed {runs[0].name}: no progress for" in output
    rows = sweep_status(runs, spec.output_path).runs
    assert [row.state for row in rows] == ["failed", "completed"]
    assert rows[0].verdict is not None and rows[0].verdict.failure is Failure.HANG
    assert rows[0].detail.startswith("no progress for")
