"""The local executor as a careless researcher meets it on one workstation: a sweep whose SLURM jobs still
run is not trained a second time into the same folders, and where no squeue can say which still run, the
submit is refused unless the user says they are gone (`--slurm-jobs-gone`); runs a local worker cannot train (a GPU on a
machine without one, several processes) are refused in one line before anything is written; a run
failed by its preflight says why, not `SystemExit: 77`; more workers than GPUs is said up front.
squeue is a script on PATH (SLURM itself is not started by unit tests): it answers as squeue does to
`squeue -h -a --array -u USER -o %i|%T`, one `jobid_task|STATE` line per live task."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from config_helpers import FAST_RUNS
from rich.console import Console
from rich.progress import Progress

from orchestrator import launch, store
from orchestrator.cli.main import main
from orchestrator.launch import lock
from orchestrator.launch.local import _Reporter
from orchestrator.store import run_states
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir


def _console() -> Console:
    return Console(file=io.StringIO(), width=10_000, color_system=None)


def _text(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined]


def _path_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, squeue: str | None) -> None:
    """PATH holding only sbatch and (unless None) an squeue that prints `squeue` (printf: sh's own)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {"sbatch": "exit 1"}
    if squeue is not None:
        scripts["squeue"] = f"printf '{squeue}'"
    for name, body in scripts.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))  # alone: this machine may have SLURM's own commands


@pytest.fixture
def sent_to_slurm(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    """A sweep whose manifest says array 12345 took every run (task i: the i-th run)."""
    spec = load_spec(write_spec())
    runs = plan(spec)
    jobs = {run.run_id: f"12345_{index}" for index, run in enumerate(runs)}
    store.record_array(spec.output_path, store.read_manifest(spec.output_path), "12345", jobs, {})
    return spec, runs


def test_a_local_submit_leaves_alone_the_runs_slurm_still_runs(
    sent_to_slurm: tuple[SweepSpec, list[RunSpec]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Task 0 running, task 1 pending in the queue: a local submit trained both again, into the folders
    the SLURM jobs write (two trainers on one checkpoints/ and status.json)."""
    spec, runs = sent_to_slurm
    _path_with(tmp_path, monkeypatch, "12345_0|RUNNING\\n12345_1|PENDING\\n")
    console = _console()
    chosen = launch.launcher(spec, "local", console, workers=1)
    records = run_states.inspect(runs, spec.output_path)
    selection = launch.select(records, in_slurm=chosen.owned_elsewhere(spec.output_path, dry_run=True))
    assert [r.run.run_id for r in selection.todo] == [run.run_id for run in runs[2:]]
    chosen.launch(runs, dry_run=True)
    assert f"{len(runs) - 2} to run, 2 pending or running in SLURM" in _text(console)


def test_without_squeue_a_dry_run_of_a_sweep_with_slurm_jobs_warns_that_a_submit_refuses(
    sent_to_slurm: tuple[SweepSpec, list[RunSpec]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = sent_to_slurm
    _path_with(tmp_path, monkeypatch, None)
    console = _console()
    launch.launcher(spec, "local", console, workers=1).launch(runs, dry_run=True)
    warnings = [line for line in _text(console).splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "no squeue" in warnings[0] and "trained twice" in warnings[0]
    assert "a submit refuses" in warnings[0] and "--slurm-jobs-gone" in warnings[0]


def _sent_fast(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    """The FAST_RUNS sweep (the CLI plans it from the overrides), every run in SLURM array 12345."""
    spec = load_spec(write_spec(), FAST_RUNS)
    runs = plan(spec)
    jobs = {run.run_id: f"12345_{index}" for index, run in enumerate(runs)}
    store.record_array(spec.output_path, store.read_manifest(spec.output_path), "12345", jobs, {})
    return spec, runs


def test_without_squeue_a_local_submit_of_a_sweep_with_slurm_jobs_is_refused_before_anything_is_written(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A warning, then every run trained here while its SLURM job might still be queued to train it into
    the same folder: the check that could not run read as `none of them runs`."""
    spec, _ = _sent_fast(write_spec)
    _path_with(tmp_path, monkeypatch, None)
    before = sorted(p.name for p in spec.output_path.iterdir())
    manifest = (spec.output_path / store.MANIFEST_FILE).read_bytes()
    code = main(["submit", str(spec.source), *FAST_RUNS, "--executor", "local", "--skip-data-check"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {spec.output_path} has SLURM jobs (manifest.json) and this machine has no squeue")
    assert "trained twice" in err[0] and "a machine with squeue" in err[0] and "--slurm-jobs-gone" in err[0]
    after = sorted(p.name for p in spec.output_path.iterdir() if p.name != lock.LOCK_FILE)
    assert after == before and not (spec.output_path / "runs").exists()
    assert (spec.output_path / store.MANIFEST_FILE).read_bytes() == manifest


def test_slurm_jobs_gone_trains_the_runs_of_a_sweep_with_slurm_jobs_without_squeue(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user says the jobs have ended: every run is to run here, and the line says it was taken on trust."""
    spec, runs = _sent_fast(write_spec)
    _path_with(tmp_path, monkeypatch, None)
    argv = ["submit", str(spec.source), *FAST_RUNS, "--executor", "local", "--skip-data-check", "--dry-run"]
    assert main([*argv, "--slurm-jobs-gone"]) == 0
    out = capsys.readouterr().out
    assert f"--slurm-jobs-gone: {spec.output_path} has SLURM jobs (manifest.json), taken as ended" in out
    assert f"{len(runs)} to run" in out and "warning" not in out
    chosen = launch.launcher(spec, "local", _console(), workers=1, slurm_jobs_gone=True)
    assert chosen.owned_elsewhere(spec.output_path, dry_run=False) == set()


def test_slurm_jobs_gone_still_asks_squeue_where_there_is_one(
    sent_to_slurm: tuple[SweepSpec, list[RunSpec]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = sent_to_slurm
    _path_with(tmp_path, monkeypatch, "12345_0|RUNNING\\n")
    chosen = launch.launcher(spec, "local", _console(), workers=1, slurm_jobs_gone=True)
    assert chosen.owned_elsewhere(spec.output_path, dry_run=False) == {runs[0].run_id}


@pytest.mark.parametrize(
    ("override", "visible", "expected"),
    [
        ("defaults.distributed.gpus_per_node=1", "", r"shows no GPU \(CUDA_VISIBLE_DEVICES=''\)"),
        ("defaults.distributed.gpus_per_node=2", "0,1", "needs 2 processes; a local worker trains a run in one"),
    ],
)
def test_runs_a_local_worker_cannot_train_are_refused_before_anything_is_written(
    write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, override: str, visible: str, expected: str
) -> None:
    """Each such run failed at its preflight, one after another, each as `SystemExit: 77`."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    spec = load_spec(write_spec(), [*FAST_RUNS, override])
    for dry_run in (True, False):
        with pytest.raises(SpecError, match=expected):
            launch.submit(spec, plan(spec), "local", dry_run=dry_run, console=_console())
    assert not (spec.output_path / "runs").exists()


def test_a_run_failed_by_its_preflight_says_why(write_spec: Callable[..., Path]) -> None:
    """The preflight records a failure reason and no error: the line read `SystemExit: 77`."""
    spec = load_spec(write_spec())
    [record, *_] = run_states.inspect(plan(spec), store.sweep_root(spec))
    store.prepare(record.run, record.path)
    reason = "1 GPU(s) requested, CUDA sees none (CUDA_VISIBLE_DEVICES=unset)"
    rundir.record_node_fault(record.path, "preflight_fail", "vm", reason)
    rundir.update_status(record.path, rundir.State.FAILED)
    console = _console()
    progress = Progress(console=console)
    reporter = _Reporter(progress, progress.add_task("runs", total=1, detail=""))
    reporter.finished(record, "SystemExit: 77")
    assert reporter.outcome.failed[0][1] == reason
    assert f"failed {record.run.name}: {reason}" in _text(console)


def test_more_workers_than_gpus_is_said_before_anything_runs(
    write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    spec = load_spec(write_spec())
    assert "share" not in launch.launcher(spec, "local", _console(), workers=1).where()
    assert "so 3 workers share them" in launch.launcher(spec, "local", _console(), workers=3).where()
