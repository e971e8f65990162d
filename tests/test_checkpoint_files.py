"""Checkpoint files on disk: their modes follow the umask (issue 21, part 7), and what the
`cleanup:` block drops from a finished run."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch import nn

from trainers import checkpoint


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
