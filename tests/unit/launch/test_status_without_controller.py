"""`status` when SLURM cannot be asked (squeue fails: no controller, or it hangs): every run's state from
its files, one warning line saying the queue is unknown, and exit code 1, never an error instead of the
runs. squeue's failure is faked by a script on PATH (SLURM itself is not started by unit tests)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tables_fixture import fake_run, finished_sweep

from orchestrator import store
from orchestrator.cli.main import main
from orchestrator.launch import slurmcli, status
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec
from trainers.rundir import State

NO_CONTROLLER = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"


@pytest.fixture
def no_controller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch and squeue on PATH, squeue failing as it does when slurmctld is down."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"squeue": f"echo '{NO_CONTROLLER}' >&2; exit 1", "sbatch": "exit 1"}.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


@pytest.fixture
def submitted(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    """A sweep whose manifest names a job array: four runs completed, two failed."""
    spec, runs = finished_sweep(write_spec())
    for run in runs[4:]:
        fake_run(spec, run, None, state=State.FAILED)
    jobs = {run.run_id: f"12345_{index}" for index, run in enumerate(runs)}
    store.record_array(spec.output_path, store.read_manifest(spec.output_path), "12345", jobs, {})
    return spec, runs


def test_sweep_status_keeps_the_runs_and_warns(no_controller: None, submitted: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = submitted
    current = status.sweep_status(runs, spec.output_path)
    assert current.queue_unknown
    assert current.counts == {"completed": 4, "failed": 2}
    assert [row.job_id for row in current.runs] == [f"12345_{i}" for i in range(len(runs))]
    assert current.warning is not None and NO_CONTROLLER in current.warning
    assert "pending or running in the queue is unknown" in current.warning


def test_status_command_prints_the_runs_and_exits_1(
    no_controller: None, submitted: tuple[SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, runs = submitted
    assert main(["status", str(spec.source)]) == 1
    captured = capsys.readouterr()
    assert "error" not in captured.err
    assert "6 runs: 4 completed, 2 failed" in captured.out
    assert all(run.run_id in captured.out for run in runs[4:])  # the failed runs' rows
    warnings = [line for line in captured.out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "SLURM could not be asked" in warnings[0]


def test_status_json_carries_the_warning_and_exits_1(
    no_controller: None, submitted: tuple[SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, runs = submitted
    assert main(["status", str(spec.source), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["runs_total"] == len(runs) and out["counts"] == {"completed": 4, "failed": 2}
    assert NO_CONTROLLER in out["warning"]


def test_a_hanging_squeue_is_the_same_warning(
    submitted: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = submitted

    def hangs(args: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(args, timeout_s)

    monkeypatch.setattr(slurmcli, "available", lambda: True)
    monkeypatch.setattr(slurmcli, "run", hangs)
    current = status.sweep_status(runs, spec.output_path)
    assert current.queue_unknown and current.counts == {"completed": 4, "failed": 2}
    assert current.warning is not None and "timed out after 60" in current.warning


def test_sacct_alone_failing_is_still_no_failure(
    submitted: tuple[SweepSpec, list[RunSpec]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """squeue answers (the queue is known), sacct does not: a warning, exit 0, as before."""
    bin_dir = tmp_path / "ok-bin"
    bin_dir.mkdir()
    for name, body in {"squeue": "exit 0", "sbatch": "exit 1", "sacct": "echo 'no accounting' >&2; exit 1"}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    spec, _ = submitted
    assert main(["status", str(spec.source)]) == 0
