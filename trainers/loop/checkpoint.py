"""Checkpoint folders under <run_dir>/checkpoints/: `last` (full accelerate state, every
epoch and at mid-epoch step boundaries, for resume) and `best` (model weights of the best
validation epoch).

A folder is written under a temp name, finished with its small `trainer_state.json`
(the completeness marker), then swapped in by renames. A kill at any moment leaves
either the previous folder or the new one, never a half-written one that is trusted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn

from trainers import rundir
from trainers.runtime import distributed

LAST = "last"
BEST = "best"
STATE_FILE = "trainer_state.json"
RANK_STATE_FILE = "rank_state_{rank}.pt"
"""Per-process loop state of a mid-epoch `last` (the epoch's running loss totals)."""
WEIGHTS_FILE = "model.safetensors"
"""The best model's weights, one file (the name Accelerate and `load_checkpoint_in_model` expect)."""
WEIGHTS_ONLY = "weights_only"
"""trainer_state.json key of a `last` whose resume state was dropped (a completed run's cleanup)."""
# Files of `last` that only a resume reads (accelerate.save_state's names; DeepSpeed's optimizer
# shards end in `optim_states.pt`); the model's weights are never among them.
RESUME_ONLY_PREFIXES = ("optimizer", "scheduler", "scaler", "random_states", "sampler", "rank_state")
RESUME_ONLY_SUFFIX = "optim_states.pt"


def checkpoint_dir(run_dir: Path) -> Path:
    """The run's checkpoints folder."""
    return run_dir / rundir.CHECKPOINTS


def find_complete(ckpt_dir: Path, name: str) -> Path | None:
    """The finished folder `name`, or its previous version if a swap was interrupted."""
    for candidate in (ckpt_dir / name, ckpt_dir / f"{name}.old"):
        if (candidate / STATE_FILE).is_file():
            return candidate
    return None


def read_state(folder: Path) -> dict[str, Any]:
    """The trainer_state.json of a finished checkpoint folder."""
    state = rundir.read_json(folder / STATE_FILE)
    if state is None:
        raise FileNotFoundError(f"{folder / STATE_FILE} is missing")
    return state


def recorded_precision(ckpt_dir: Path) -> str | None:
    """The mixed precision the run's `last` checkpoint was trained in (resume.Progress.precision);
    None without one, for one saved before it was recorded, or for a weights-only `last` (that run
    trains afresh)."""
    folder = find_complete(ckpt_dir, LAST)
    if folder is None or is_weights_only(folder):
        return None
    precision = read_state(folder).get("precision")
    return precision if isinstance(precision, str) else None


def _publish(tmp: Path, final: Path) -> None:
    # rename() cannot replace a non-empty folder, hence the .old step; find_complete
    # falls back to .old if we die between the two renames.
    old = final.with_name(f"{final.name}.old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # make the renames themselves durable
    finally:
        os.close(fd)


def _prepare_tmp(accelerator: Accelerator, ckpt_dir: Path, name: str) -> Path:
    # Same fixed name on every process, cleared of any leftover from a killed save.
    tmp = ckpt_dir / f"{name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return tmp


def _finish(accelerator: Accelerator, tmp: Path, final: Path, state: dict[str, Any]) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        rundir.honour_umask(tmp)  # before the state file marks the folder complete
        rundir.write_json(tmp / STATE_FILE, state)
        _publish(tmp, final)
    accelerator.wait_for_everyone()


def save_last(
    accelerator: Accelerator, ckpt_dir: Path, state: dict[str, Any], rank_state: dict[str, Any] | None = None
) -> None:
    """Save model, optimizer, scheduler, scaler and every process's RNG state as `last`, with
    `state` beside it and each process's `rank_state` (tensors kept bit for bit)."""
    tmp = _prepare_tmp(accelerator, ckpt_dir, LAST)
    accelerator.save_state(str(tmp))
    if rank_state is not None:
        torch.save(rank_state, tmp / RANK_STATE_FILE.format(rank=accelerator.process_index))
    _finish(accelerator, tmp, ckpt_dir / LAST, state)


def read_rank_state(folder: Path, rank: int) -> dict[str, Any] | None:
    """This process's loop state saved with `last`, if that checkpoint has one."""
    path = folder / RANK_STATE_FILE.format(rank=rank)
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def save_best(accelerator: Accelerator, model: nn.Module, ckpt_dir: Path, state: dict[str, Any]) -> None:
    """Save the whole model's weights (safetensors) as `best`, with `state` beside them.

    Every process must call this: under ZeRO-3 the partitioned weights are gathered.
    """
    tmp = _prepare_tmp(accelerator, ckpt_dir, BEST)
    weights = distributed.state_dict(accelerator, model)  # collective under ZeRO-3; None on other ranks there
    if accelerator.is_main_process:
        tmp.mkdir(parents=True, exist_ok=True)
        # Own contiguous CPU copies: DeepSpeed on CPU gathers into views of one buffer, and
        # safetensors would drop such "shared" tensors instead of saving them.
        owned = {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in weights.items()}
        save_file(owned, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
    _finish(accelerator, tmp, ckpt_dir / BEST, state)


def load_best(accelerator: Accelerator, model: nn.Module, ckpt_dir: Path) -> dict[str, Any]:
    """Load the `best` weights into `model` on every process; returns that checkpoint's trainer state."""
    folder = find_complete(ckpt_dir, BEST)
    if folder is None:
        raise FileNotFoundError(f"no finished best checkpoint in {ckpt_dir}")
    weights = load_file(str(folder / WEIGHTS_FILE))
    target = distributed.unwrap(accelerator, model)
    with full_parameters(accelerator, target):
        target.load_state_dict(weights, strict=True)
    return read_state(folder)


@contextmanager
def full_parameters(accelerator: Accelerator, model: nn.Module) -> Iterator[None]:
    """Whole parameters inside the block, also under ZeRO-3 (which partitions them across ranks);
    what rank 0 writes into them is partitioned back on exit."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None or plugin.zero_stage != 3:
        yield
        return
    import deepspeed  # only installed with the deepspeed extra

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=0):
        yield


def drop_resume_state(ckpt_dir: Path) -> int:
    """Delete what only a resume reads from a completed run's `last` (optimizer, scheduler, scaler,
    RNG and loop state: about twice the model under Adam), keeping its model weights; bytes freed.

    trainer_state.json is marked `weights_only` first, so a kill half-way leaves a folder that a
    rerun trains over from the start (see is_weights_only), never one it half-trusts.
    """
    folder = find_complete(ckpt_dir, LAST)
    if folder is None:
        return 0
    state = read_state(folder)
    if not state.get(WEIGHTS_ONLY):
        rundir.write_json(folder / STATE_FILE, {**state, WEIGHTS_ONLY: True})
    freed = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (path.name.startswith(RESUME_ONLY_PREFIXES) or path.name.endswith(RESUME_ONLY_SUFFIX)):
            freed += path.stat().st_size
            path.unlink()
    return freed


def drop_all(ckpt_dir: Path) -> int:
    """Delete the whole checkpoints folder (a smoke run's); bytes freed."""
    if not ckpt_dir.is_dir():
        return 0
    freed = sum(p.stat().st_size for p in ckpt_dir.rglob("*") if p.is_file())
    shutil.rmtree(ckpt_dir)
    return freed


def is_weights_only(folder: Path) -> bool:
    """Whether a finished `last` had its resume state dropped (a rerun starts from scratch)."""
    return bool(read_state(folder).get(WEIGHTS_ONLY))
