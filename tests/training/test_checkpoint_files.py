"""Checkpoint files on disk: their modes follow the umask (issue 21, part 7), and what the
`cleanup:` block drops from a finished run."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from config_helpers import tiny_config
from torch import nn

from orchestrator.launch.base import cleanup_for
from orchestrator.launch.job import Cleanup, TrainJob
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SpecError, load_spec
from trainers import rundir
from trainers.loop import checkpoint
from trainers.rundir import State


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the test process's umask after a test sets its own."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def _save_both(ckpt_dir: Path) -> None:
    """checkpoints/last (model + optimizer + RNG) and checkpoints/best of a tiny model."""
    accelerator = Accelerator(cpu=True)
    try:
        model = nn.Linear(4, 2)
        optimizer = torch.optim.Adam(model.parameters())
        model, optimizer = accelerator.prepare(model, optimizer)
        model(torch.ones(1, 4)).sum().backward()
        optimizer.step()
        checkpoint.save_last(accelerator, ckpt_dir, {"epochs_done": 1})
        checkpoint.save_best(accelerator, model, ckpt_dir, {"epoch": 1})
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize(("mask", "expected"), [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_checkpoint_files_get_the_umask_mode(tmp_path: Path, umask: None, mask: int, expected: int) -> None:
    """safetensors writes 0600 through its own temp file whatever the umask: a group sharing a
    results folder could not read the weights. Every file of both folders gets 0666 less the umask."""
    os.umask(mask)
    _save_both(tmp_path / "checkpoints")
    files = [p for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"model.safetensors", "optimizer.bin", checkpoint.STATE_FILE}
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(expected)}, modes


# ------------------------------------------------------------------------------------- cleanup


def _names(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_drop_resume_state_keeps_the_weights(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints"
    _save_both(ckpt)
    best_before = _names(ckpt / checkpoint.BEST)
    weights = (ckpt / checkpoint.LAST / "model.safetensors").read_bytes()
    freed = checkpoint.drop_resume_state(ckpt)
    last = ckpt / checkpoint.LAST
    assert _names(last) == {"model.safetensors", checkpoint.STATE_FILE}, "optimizer, scheduler, RNG state gone"
    assert (last / "model.safetensors").read_bytes() == weights
    assert _names(ckpt / checkpoint.BEST) == best_before
    assert freed > len(weights), "Adam's two moments outweigh the weights"
    assert checkpoint.is_weights_only(last) and checkpoint.read_state(last)["epochs_done"] == 1
    assert checkpoint.drop_resume_state(ckpt) == 0, "a second cleanup is a no-op"


class _Fake:
    """Stands for trainers.run: saves real checkpoints, then completes or raises."""

    def __init__(self, fail: BaseException | None) -> None:
        self.fail = fail

    def __call__(self, cfg: object, run_dir: Path, metadata: object) -> dict[str, object]:
        _save_both(checkpoint.checkpoint_dir(run_dir))
        if self.fail is not None:
            raise self.fail
        return {}


@pytest.mark.parametrize(
    ("cleanup", "fail", "left"),
    [
        (Cleanup(drop_resume_state=True), None, {"last": {"model.safetensors"}, "best": {"model.safetensors"}}),
        (Cleanup(drop_resume_state=True), RuntimeError("boom"), {"last": {"model.safetensors", "optimizer.bin"}}),
        (Cleanup(drop_resume_state=True), SystemExit(0), {"last": {"model.safetensors", "optimizer.bin"}}),
        (Cleanup(), None, {"last": {"model.safetensors", "optimizer.bin"}}),
        (Cleanup(drop_checkpoints=True), None, None),
        (Cleanup(drop_checkpoints=True), RuntimeError("boom"), None),
    ],
    ids=["completed", "failed-keeps-resume", "preempted-keeps-resume", "keep-all", "smoke", "smoke-failed"],
)
def test_train_job_applies_cleanup_when_the_run_ends(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cleanup: Cleanup,
    fail: BaseException | None,
    left: dict[str, set[str]] | None,
) -> None:
    """Completed runs drop resume state; failed and preempted ones keep it (they resume from it);
    smoke runs keep no checkpoints at all."""
    import trainers

    monkeypatch.setattr(trainers, "run", _Fake(fail))
    run_dir = tmp_path / "runs" / "abc"
    job = TrainJob(run_dir, tiny_config().model_dump(mode="json"), {"run_id": "abc"}, cleanup)
    if fail is None:
        job()
    else:
        with pytest.raises(type(fail)):
            job()
    assert rundir.read_state(run_dir) is (State.COMPLETED if fail is None else State.FAILED)
    ckpt = checkpoint.checkpoint_dir(run_dir)
    if left is None:
        assert not ckpt.exists()
        return
    for name, files in left.items():
        assert files <= _names(ckpt / name), name
    if fail is None and cleanup.drop_resume_state:
        assert "optimizer.bin" not in _names(ckpt / checkpoint.LAST)


def test_cleanup_settings_are_not_part_of_the_run_id(write_spec: Callable[..., Path]) -> None:
    path = write_spec()
    default = [run.run_id for run in plan(load_spec(path))]
    changed = ["cleanup.drop_optimizer_state=false", "cleanup.smoke_checkpoints=true"]
    assert [run.run_id for run in plan(load_spec(path, changed))] == default
    spec = load_spec(path, changed)
    assert cleanup_for(spec, smoke=False) == Cleanup() and cleanup_for(spec, smoke=True) == Cleanup()
    spec = load_spec(path)
    assert cleanup_for(spec, smoke=False) == Cleanup(drop_resume_state=True)
    assert cleanup_for(spec, smoke=True) == Cleanup(drop_checkpoints=True)
    with pytest.raises(
        SpecError, match=r"cleanup.drop_optimizer_stat: unknown key \(did you mean 'drop_optimizer_state'"
    ):
        load_spec(path, ["cleanup.drop_optimizer_stat=false"])


@pytest.mark.slow
def test_cleaned_runs_still_eval_and_never_resume(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the CLI: a completed run keeps weights only in last/ and `eval` still scores it; a
    smoke run keeps no checkpoints; training into the cleaned folder again starts from scratch (no
    half resume without optimizer state) and ends where the first training did."""
    from config_helpers import FAST_RUNS

    from orchestrator import store
    from orchestrator.cli.main import main
    from orchestrator.sweep.plan import smoke_plan
    from trainers import run as train_run

    path = write_spec()
    overrides = [*FAST_RUNS, "ablations={Baseline: []}"]
    assert main(["submit", str(path), *overrides, "--executor", "local"]) == 0
    spec = load_spec(path, overrides)
    [planned] = plan(spec)
    run_dir = store.run_path(spec.output_path, planned.run_id)
    ckpt = checkpoint.checkpoint_dir(run_dir)
    assert _names(ckpt / checkpoint.LAST) == {"model.safetensors", checkpoint.STATE_FILE}
    assert "model.safetensors" in _names(ckpt / checkpoint.BEST)
    assert main(["eval", str(run_dir)]) == 0
    assert "test of digits" in capsys.readouterr().out
    first = rundir.read_json(run_dir / rundir.METRICS)
    again = train_run(planned.config, run_dir)
    assert first is not None and again["test"] == first["test"] and again["epochs_trained"] == first["epochs_trained"]
    assert "optimizer.bin" in _names(ckpt / checkpoint.LAST), "trained again, with a full last/"
    assert main(["submit", str(path), *overrides, "--executor", "local", "--smoke"]) == 0
    [smoke] = smoke_plan([planned])
    smoke_dir = store.run_path(store.sweep_root(spec, smoke=True), smoke.run_id)
    assert rundir.read_state(smoke_dir) is State.COMPLETED and not checkpoint.checkpoint_dir(smoke_dir).exists()
