"""`status --smoke` and `cancel --smoke`: the smoke runs `submit --smoke` started (their own ids, in
<output>/smoke), which `status` could not show and `cancel` could not reach."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_json_output import run_cli, run_json

from orchestrator import store
from orchestrator.cli.main import main
from orchestrator.launch import slurm as slurm_launch
from orchestrator.launch import slurmcli
from orchestrator.sweep.plan import RunSpec, plan, smoke_plan
from orchestrator.sweep.spec import load_spec
from trainers import rundir
from trainers.rundir import State


def _finish(root: Path, run: RunSpec) -> None:
    path = store.run_path(root, run.run_id)
    store.prepare(run, path)
    rundir.write_json(path / rundir.METRICS, {"run_id": run.run_id, "test": {"top1": 0.9}})
    rundir.update_status(path, State.COMPLETED)


def test_status_smoke_shows_the_smoke_runs(write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec()
    spec = load_spec(path)
    runs = plan(spec)
    smoke = smoke_plan(runs)
    for run in smoke[:2]:
        _finish(store.sweep_root(spec, smoke=True), run)
    _finish(store.sweep_root(spec), runs[0])
    code, human, _ = run_cli(capsys, "status", str(path), "--smoke")
    assert code == 0 and "tiny (smoke): 6 runs: 2 completed, 4 not submitted" in human, human
    obj, _ = run_json(capsys, "status", str(path), "--smoke")
    assert obj["counts"] == {"completed": 2, "not submitted": 4}
    assert [r["run_id"] for r in obj["runs"]] == [run.run_id for run in smoke]
    _, human, _ = run_cli(capsys, "status", str(path))
    assert "tiny: 6 runs: 1 completed, 5 not submitted" in human, human


def test_cancel_smoke_cancels_the_smoke_arrays(
    write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Our part alone (the dev cluster's cancel is tested in tests/cluster): which folder's jobs."""
    spec = load_spec(write_spec())
    asked: list[Any] = []
    monkeypatch.setattr(slurmcli, "available", lambda: True)
    monkeypatch.setattr(slurm_launch, "runs_in_slurm", lambda root: asked.append(root) or ({}, {"41_0": "r"}))
    monkeypatch.setattr(slurmcli, "cancel", lambda arrays: asked.append(sorted(arrays)))
    assert main(["cancel", str(spec.source), "--smoke"]) == 0
    assert asked == [store.sweep_root(spec, smoke=True), ["41"]]
    assert "tiny (smoke): cancelled 1 pending/running jobs in 1 array(s)" in capsys.readouterr().out


def test_adaptive_smoke_runs_are_the_first_rounds_everywhere(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """After the real rounds moved on, `collect --smoke` planned smoke variants of every scheduled
    seed (shown missing), while `submit --smoke` runs the first round's: status, collect and the
    dry run now agree."""
    from tables_fixture import fake_run

    from orchestrator.results import adaptive

    path = write_spec()
    path.write_text(path.read_text().replace("  seed: [0, 1]\n", ""))
    seeds = "seeds={initial: 3, max: 7, step: 2, stop: {excludes_zero: true}, futility: 0}"
    spec = load_spec(path, [seeds])
    runs, root = plan(spec), spec.output_path
    for run in adaptive.scheduled(spec, runs, root):
        fake_run(spec, run, 0.80 + 0.001 * run.seed)
    assert adaptive.advance(spec, runs, root) is not None
    assert len(adaptive.scheduled(spec, runs, root)) > 9  # the second round is scheduled
    first_round = smoke_plan([run for run in runs if run.seed < 3])
    for run in first_round:
        _finish(store.sweep_root(spec, smoke=True), run)
    dry, _ = run_json(capsys, "submit", str(path), seeds, "--smoke", "--dry-run", "--executor", "local")
    status, _ = run_json(capsys, "status", str(path), seeds, "--smoke")
    collected, _ = run_json(capsys, "collect", str(path), seeds, "--smoke", "--no-report")
    ids = sorted(run.run_id for run in first_round)
    assert sorted(r["run_id"] for r in dry["to_run"]) == ids  # --smoke always runs them again
    assert sorted(r["run_id"] for r in status["runs"]) == ids
    assert collected["sweeps"][0]["counts"] == {"completed": len(ids)}  # nothing planned that smoke never runs
