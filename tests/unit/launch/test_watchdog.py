"""The hang watchdog: its limits (pure) and, in real processes, a stopped trainer ended by it (no cluster)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.launch import watchdog
from orchestrator.launch.failures import Evidence, Failure, classify
from orchestrator.launch.watchdog import Limits, limit_s, stalled
from trainers import rundir
from trainers.rundir import State
from trainers.runtime import heartbeat

LIMITS = Limits(step_factor=10, floor_s=5, slow_phase_s=120)


def test_it_starts_as_a_module_without_runpy_warning() -> None:
    """The job starts it with `python -m`: the launch package must not import it first (runpy
    warned in every job log)."""
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "orchestrator.launch.watchdog", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "--run-dir" in done.stdout, done.stderr[-2000:]


def test_names_agree_with_the_trainer_side() -> None:
    assert (watchdog.HEARTBEAT_FILE, watchdog.HEARTBEAT_ENV) == (heartbeat.FILE, heartbeat.ENV)
    assert set(heartbeat.PHASES) - {"step"} == watchdog.SLOW_PHASES


def test_step_limit_is_k_times_the_typical_step_with_a_floor() -> None:
    assert limit_s("step", [], LIMITS) == 5  # no interval seen yet: the floor
    assert limit_s("step", [0.1, 0.2, 0.1], LIMITS) == 5  # fast steps: the floor
    assert limit_s("step", [2.0, 3.0, 50.0], LIMITS) == 30  # the median, not one slow step
    assert stalled(100.0, 90.0, "step", [0.5], LIMITS) == "no progress for 10 s in phase step (limit 5 s)"
    assert stalled(100.0, 96.0, "step", [0.5], LIMITS) is None


@pytest.mark.parametrize("phase", ["start", "compile", "eval", "checkpoint"])
def test_slow_phases_are_never_judged_by_the_step_time(phase: str) -> None:
    """No false kill while evaluating, checkpointing, compiling or starting: a long quiet spell there is fine."""
    assert stalled(100.0, 0.0, phase, [0.1] * 20, LIMITS) is None
    assert stalled(200.0, 0.0, phase, [0.1] * 20, LIMITS) is not None


def test_heartbeat_is_off_unless_a_watchdog_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(heartbeat.ENV, raising=False)
    heartbeat.beat(tmp_path, "step")
    assert not (tmp_path / heartbeat.FILE).exists()
    monkeypatch.setenv(heartbeat.ENV, "1")
    heartbeat.beat(tmp_path, "eval")
    heartbeat.beat(tmp_path, "eval", main=False)
    assert watchdog.read_beat(tmp_path) is not None and watchdog.read_beat(tmp_path)[1] == "eval"  # type: ignore[index]


def test_an_earlier_attempts_heartbeat_is_no_beat_of_this_one(tmp_path: Path) -> None:
    """A requeued job finds the heartbeat its previous attempt left (here 10 minutes old, phase step): this
    attempt's watchdog must wait for its own trainer's first beat (the `start` phase's limit from its own
    start), not judge the old one by the step limit. The dev-cluster hang test caught this."""
    (tmp_path / heartbeat.FILE).write_text("step")
    started = time.time()
    os.utime(tmp_path / heartbeat.FILE, (started - 600, started - 600))
    assert watchdog.read_beat(tmp_path, since=started) is None
    assert watchdog.read_beat(tmp_path) == (started - 600, "step"), "without a start, any beat counts"
    (tmp_path / heartbeat.FILE).write_text("step")  # this attempt's trainer beats
    assert watchdog.read_beat(tmp_path, since=started) is not None


_TRAINER = """
import os, signal, subprocess, sys, time
run_dir = sys.argv[1]
dog = subprocess.Popen([sys.executable, "-m", "orchestrator.launch.watchdog", "--run-dir", run_dir,
                        "--pid", str(os.getpid()), "--floor-s", "1", "--slow-phase-s", "30"],
                       stderr=subprocess.PIPE, text=True)
print(dog.stderr.readline(), end="", flush=True)  # it watches from now on: beats before would not count
for _ in range(4):
    with open(os.path.join(run_dir, "heartbeat"), "w") as f:
        f.write("step")
    time.sleep(0.3)
os.kill(os.getpid(), signal.SIGSTOP)  # a stopped trainer cannot beat, nor silence its watchdog
"""


@pytest.mark.slow
def test_a_stopped_trainer_is_ended_and_its_hang_recorded(tmp_path: Path) -> None:
    """Two real processes (about 3 s): the watchdog records the hang and kills the stopped trainer."""
    rundir.update_status(tmp_path, State.RUNNING, attempts=[{"job_id": "5_0", "host": "node1"}])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    trainer = subprocess.run(
        [sys.executable, "-c", _TRAINER, str(tmp_path)],
        env=env,
        timeout=120,
        check=False,
        capture_output=True,
        text=True,
    )
    assert trainer.returncode == -9
    assert trainer.stdout.startswith("watchdog: watching pid ") and "(at least 1 s), 30 s in start" in trainer.stdout
    status = rundir.read_json(tmp_path / rundir.STATUS)
    assert status is not None and status["failure"] == "hang" and "in phase step" in status["failure_reason"]
    assert status["attempts"][-1]["failure"] == "hang"
    verdict = classify(
        None, Evidence(state=status["state"], failure=status["failure"], reason=status["failure_reason"])
    )
    assert verdict is not None and verdict.failure is Failure.HANG and verdict.failure.infrastructure
