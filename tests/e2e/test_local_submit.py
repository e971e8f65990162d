"""End to end on this machine: submit (local and debug executors), resubmit, smoke, collect."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from config_helpers import FAST_RUNS

from orchestrator import launch, store
from orchestrator.cli.main import main
from orchestrator.store import run_states
from orchestrator.sweep.plan import plan, smoke_plan
from orchestrator.sweep.spec import load_spec
from trainers import rundir
from trainers.rundir import State

pytestmark = pytest.mark.slow

FAST = FAST_RUNS


def test_local_submit_then_resubmit_trains_nothing(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(), FAST)
    runs = plan(spec)
    first = launch.submit(spec, runs, "local")
    assert len(first.completed) == 3 and first.failed == []
    metrics_files = [store.run_path(spec.output_path, r.run_id) / rundir.METRICS for r in runs]
    stamps = [path.stat().st_mtime_ns for path in metrics_files]
    second = launch.submit(spec, runs, "local")
    assert second.completed == [] and second.failed == []
    assert [path.stat().st_mtime_ns for path in metrics_files] == stamps, "a completed run was retrained"
    # A failed run is redone, the others are not.
    failed = store.run_path(spec.output_path, runs[1].run_id)
    rundir.update_status(failed, State.FAILED, error="simulated")
    third = launch.submit(spec, runs, "local")
    assert [r.run_id for r in third.completed] == [runs[1].run_id]
    assert main(["collect", str(spec.source), *FAST]) == 0
    table = (spec.output_path / "tables" / "table.md").read_text()
    assert "| Baseline |" in table and "(1/1 seeds)" not in table


def test_smoke_runs_go_aside_and_never_count(write_spec: Callable[..., Path]) -> None:
    # The loader as a user gets it (workers from the CPUs), not the fixture's num_workers: 0: the smoke
    # run must fail where loader workers would.
    spec = load_spec(write_spec(), [*FAST, "defaults.data.num_workers=null"])
    runs = plan(spec)
    outcome = launch.submit(spec, runs, "local", smoke=True)
    assert len(outcome.completed) == 3
    smoke_root = store.sweep_root(spec, smoke=True)
    for run in smoke_plan(runs):
        assert run.config.data.num_workers is None
        history = (store.run_path(smoke_root, run.run_id) / rundir.HISTORY).read_text().splitlines()
        assert len(history) == 2, "smoke runs train one short epoch"
    assert all(r.state is State.MISSING for r in run_states.inspect(runs, spec.output_path))
    assert main(["collect", str(spec.source), *FAST, "--smoke"]) == 0
    assert (smoke_root / "tables" / "table.md").exists()


def test_debug_executor_runs_in_process(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(), [*FAST, "ablations={Baseline: []}"])
    [run] = plan(spec)
    outcome = launch.submit(spec, [run], "debug")
    assert [r.run_id for r in outcome.completed] == [run.run_id]
    assert rundir.read_state(store.run_path(spec.output_path, run.run_id)) is State.COMPLETED
