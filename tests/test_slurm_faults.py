"""Faults on the real dev cluster (2 nodes), one small sweep for several scenarios (CI time).

Injected through ORCH_FAULT_INJECT (trainers/faults.py), which the jobs inherit from this process's
environment: node2 fails every preflight; one run raises a CUDA out-of-memory error at its second
micro-batch (once); one run raises a user error. `submit --follow` (the launcher's follow loop)
retries by class until nothing is left. No mocks: sbatch, squeue, sacct and the trainer are real.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from rich.console import Console
from test_slurm import PROFILE, TRAIN_SPEC, cluster, write

from orchestrator import launch, store
from orchestrator.launch import slurmcli
from orchestrator.launch.status import sweep_status
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec
from trainers import faults, rundir

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
__all__ = ["cluster"]  # the module fixture: the dev cluster must be up

SPEC = TRAIN_SPEC + "retry: {{quarantine_after: 1}}\n"  # format() braces


def test_preflight_oom_and_user_error_each_handled_by_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """node2's preflight fails: its runs finish on node1, node2 is quarantined, no run fails for it; an
    injected CUDA OOM is retried with half the batch per device (same run id) and completes; a user
    error is tried once and shown with its message."""
    spec = load_spec(write(tmp_path, "faults", text=SPEC))
    runs = plan(spec)
    plain, oom, broken = runs
    monkeypatch.setenv(faults.ENV, f"preflight_fail@node2,oom@{oom.run_id}:1,user_error@{broken.run_id}:0")
    out = io.StringIO()
    chosen = launch.launcher(spec, "slurm", Console(file=out, width=200), PROFILE)
    follow = threading.Thread(target=chosen.follow, args=(runs, 2.0), daemon=True)
    follow.start()
    follow.join(timeout=600)
    if follow.is_alive():
        slurmcli.cancel(store.read_manifest(spec.output_path)["arrays"])
        pytest.fail(f"the follow loop did not end in 600 s:\n{out.getvalue()}")
    current = sweep_status(runs, spec.output_path, spec.retry.quarantine_after)
    rows = {row.run.run_id: row for row in current.runs}
    status = {
        run.run_id: rundir.read_json(store.run_path(spec.output_path, run.run_id) / rundir.STATUS) for run in runs
    }

    # Completed where they could, never on the failing node, each trained to the end once.
    for run in (plain, oom):
        assert rows[run.run_id].state == "completed", (rows[run.run_id], out.getvalue())
        assert status[run.run_id]["host"] == "node1"
        assert [h["state"] for h in status[run.run_id]["history"]].count("completed") == 1
    # The CUDA OOM: its next attempt asked for twice the accumulation, under the same run id.
    attempts = status[oom.run_id]["attempts"]
    assert any(a.get("failure") == "oom" for a in attempts), attempts
    assert attempts[-1]["resources"]["grad_accum_factor"] == 2
    # The user error: tried once, shown with its message, not retried.
    row = rows[broken.run_id]
    assert row.verdict is not None and row.verdict.failure.value == "user_error"
    assert "injected user error" in row.detail and row.attempts >= 1
    assert "not retried" in out.getvalue() and "injected user error" in out.getvalue()
    # Every preflight failure was node2's, and node2 is quarantined once it had one.
    preflight = [a for s in status.values() for a in s["attempts"] if a.get("failure") == "preflight_fail"]
    assert all(a["node"] == "node2" for a in preflight)
    if preflight:
        assert [q.node for q in current.quarantined] == ["node2"]
    assert current.counts["completed"] == 2 and current.failures == {"user_error": 1}
