"""Review of the run folder's durability and of resume's trust in checkpoints/last, without training:
a tiny nn.Linear under a CPU Accelerator saves and loads the real accelerate state (the trainer's
use of it: tests/training/test_resume_steps.py)."""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch import nn

from trainers import rundir
from trainers.loop import checkpoint, resume
from trainers.loop.resume import CheckpointUnreadable, Progress
from trainers.runtime import heartbeat


@pytest.fixture
def accelerator() -> Iterator[Accelerator]:
    """A CPU accelerator with a trained nn.Linear and its Adam optimizer prepared."""
    accel = Accelerator(cpu=True)
    try:
        model = nn.Linear(4, 2)
        optimizer = torch.optim.Adam(model.parameters())
        model, optimizer = accel.prepare(model, optimizer)
        model(torch.ones(1, 4)).sum().backward()
        optimizer.step()
        yield accel
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def _save(accel: Accelerator, ckpt_dir: Path, step_in_epoch: int) -> None:
    """checkpoints/last after epoch 1 (step_in_epoch 0) or `step_in_epoch` micro-batches into epoch 2."""
    progress = Progress(epochs_done=1, step_in_epoch=step_in_epoch)
    rank_state = {"totals": torch.zeros(3)} if step_in_epoch else None
    checkpoint.save_last(accel, ckpt_dir, progress.as_dict(), rank_state)


def _resume(accel: Accelerator, ckpt_dir: Path) -> tuple[Progress, resume.MidEpoch | None]:
    # resume() reads only these two of the run's Parts.
    return resume.resume(SimpleNamespace(ckpt_dir=ckpt_dir, accelerator=accel))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- resume's trust


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_mid_epoch_resume_refuses_a_lost_rng_state(tmp_path: Path, accelerator: Accelerator, damage: str) -> None:
    """accelerate.load_state only logs a random_states file it cannot load: the resumed epoch
    (which does not reseed mid-way) silently trained with other dropout and augmentation."""
    _save(accelerator, tmp_path, step_in_epoch=3)
    rng_file = tmp_path / checkpoint.LAST / "random_states_0.pkl"
    if damage == "truncated":
        rng_file.write_bytes(rng_file.read_bytes()[:10])
    else:
        rng_file.unlink()
    with pytest.raises(CheckpointUnreadable, match="last cannot be resumed from"):
        _resume(accelerator, tmp_path)


def test_mid_epoch_resume_restores_the_rng_state(tmp_path: Path, accelerator: Accelerator) -> None:
    """The check reads the file only: the saved states are what the loop gets back."""
    torch.manual_seed(7)
    random.seed(7)
    _save(accelerator, tmp_path, step_in_epoch=3)
    expected = (torch.rand(1).item(), random.random())
    torch.manual_seed(99)
    random.seed(99)
    progress, mid = _resume(accelerator, tmp_path)
    assert (progress.epochs_done, progress.step_in_epoch) == (1, 3)
    assert mid is not None
    resume.set_rng_states(mid.rng)
    assert (torch.rand(1).item(), random.random()) == expected


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.bin"])
def test_truncated_state_is_refused_naming_the_folder(tmp_path: Path, accelerator: Accelerator, name: str) -> None:
    """A torn file in a `last` marked complete (a disk that filled, a node that lost power) was a raw
    SafetensorError or PytorchStreamReader error: now one line that names the folder and the way out."""
    _save(accelerator, tmp_path, step_in_epoch=0)
    path = tmp_path / checkpoint.LAST / name
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointUnreadable) as caught:
        _resume(accelerator, tmp_path)
    assert str(tmp_path / checkpoint.LAST) in str(caught.value)
    assert "move" in str(caught.value)
    assert (tmp_path / checkpoint.LAST / checkpoint.STATE_FILE).is_file(), "the evidence is left in place"


# ----------------------------------------------------------------------------- durability


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths os.fsync was called on, in order (the real fsync still runs)."""
    calls: list[str] = []
    real = os.fsync

    def spy(fd: Any) -> None:
        fileno = fd if isinstance(fd, int) else fd.fileno()
        calls.append(os.readlink(f"/proc/self/fd/{fileno}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


def test_checkpoint_files_reach_the_disk_before_their_completeness_marker(
    tmp_path: Path, accelerator: Accelerator, fsynced: list[str]
) -> None:
    """accelerate.save_state, torch.save and safetensors only close their files: the folder was
    published with a durable trainer_state.json over weights and optimizer state that a power loss
    could leave empty, and a resume then trusted."""
    _save(accelerator, tmp_path, step_in_epoch=3)
    last = tmp_path / checkpoint.LAST
    names = sorted(p.name for p in last.iterdir() if p.name != checkpoint.STATE_FILE)
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl", "rank_state_0.pt"} <= set(names)
    marker = next(i for i, path in enumerate(fsynced) if Path(path).name.startswith(f".{checkpoint.STATE_FILE}."))
    before = {Path(path).name for path in fsynced[:marker]}
    assert set(names) <= before, f"not fsynced before the marker: {set(names) - before}"


def test_atomic_write_makes_its_rename_durable(tmp_path: Path, fsynced: list[str]) -> None:
    """The rename of status.json or metrics.json lives in the run folder: without an fsync of the
    folder a node that loses power can come back with the previous file."""
    rundir.write_json(tmp_path / rundir.STATUS, {"state": "completed"})
    assert fsynced[-1] == str(tmp_path), fsynced


def _disk_full(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("which", [checkpoint.LAST, checkpoint.BEST])
def test_a_save_that_fills_the_disk_leaves_no_partial_copy(
    tmp_path: Path, accelerator: Accelerator, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    """ENOSPC half-way through a save fails the run (not retried): its partial `<name>.tmp`, up to a
    whole model and optimizer state, stayed and kept the disk full for every other run on it."""
    _save(accelerator, tmp_path, step_in_epoch=0)
    model = accelerator._models[0]
    checkpoint.save_best(accelerator, model, tmp_path, {"epoch": 1})
    real_save_state = accelerator.save_state

    def half_then_full(output_dir: str, **kwargs: Any) -> None:
        real_save_state(output_dir, **kwargs)  # the big files are there when the last one fails
        _disk_full()

    def part_then_full(weights: Any, path: str, **kwargs: Any) -> None:
        Path(path).write_bytes(b"part of the weights")
        _disk_full()

    monkeypatch.setattr(accelerator, "save_state", half_then_full)
    monkeypatch.setattr(checkpoint, "save_file", part_then_full)
    with pytest.raises(OSError, match="No space left"):
        if which == checkpoint.LAST:
            _save(accelerator, tmp_path, step_in_epoch=4)
        else:
            checkpoint.save_best(accelerator, model, tmp_path, {"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.BEST, checkpoint.LAST]
    assert checkpoint.read_state(tmp_path / checkpoint.LAST)["step_in_epoch"] == 0, "the previous `last` stands"
    assert checkpoint.read_state(tmp_path / checkpoint.BEST) == {"epoch": 1}


# ----------------------------------------------------------------------------- heartbeat


def test_heartbeat_comes_back_when_its_file_went_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Within a phase a beat only touched the file: once it was removed every beat failed until the
    next phase change, and the watchdog ended a long epoch of healthy steps as hung."""
    monkeypatch.setenv(heartbeat.ENV, "1")
    monkeypatch.setattr(heartbeat, "MIN_INTERVAL_S", 0.0)
    monkeypatch.setattr(heartbeat._Last, "path", None)
    monkeypatch.setattr(heartbeat._Last, "phase", "")
    monkeypatch.setattr(heartbeat._Last, "at", 0.0)
    heartbeat.beat(tmp_path, "step")
    (tmp_path / heartbeat.FILE).unlink()
    heartbeat.beat(tmp_path, "step")
    beat = heartbeat.read(tmp_path)
    assert beat is not None and beat[1] == "step"
