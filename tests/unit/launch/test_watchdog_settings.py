"""Both executors give a run's job the same hang limits from the retry policy (they kept two copies of
the settings, which could drift apart); only the requeues in place differ: none locally."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from orchestrator.launch.local import local_attempt
from orchestrator.launch.slurm import SlurmLauncher
from orchestrator.store.run_states import inspect
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

LIMITS = ["retry.hang_floor_s=7", "retry.hang_slow_phase_s=70", "retry.hang_step_factor=3", "retry.hang_max_requeues=4"]


def test_slurm_and_local_jobs_get_the_policys_limits(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(), LIMITS)
    launcher = SlurmLauncher(spec, Console())
    record = inspect(plan(spec)[:1], spec.output_path)[0]
    on_slurm = launcher.attempt_of(record, launcher.config)["watchdog"]
    assert on_slurm == {"step_factor": 3.0, "floor_s": 7.0, "slow_phase_s": 70.0, "max_requeues": 4}
    assert local_attempt(spec.retry)["watchdog"] == {**on_slurm, "max_requeues": 0}


def test_without_the_watchdog_neither_gets_settings(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(), ["retry.watchdog=false"])
    launcher = SlurmLauncher(spec, Console())
    record = inspect(plan(spec)[:1], spec.output_path)[0]
    assert "watchdog" not in launcher.attempt_of(record, launcher.config)
    assert local_attempt(spec.retry) == {}
