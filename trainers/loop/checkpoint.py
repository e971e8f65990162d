"""Checkpoint folders under <run_dir>/checkpoints/: `last` (full accelerate state, every
epoch and at mid-epoch step boundaries, for resume) and `best` (model weights of the best
validation epoch). Both hold the whole model as model.safetensors: accelerate.save_state
writes it into `last`, except for a DeepSpeed engine (DeepSpeed's own format), whose final
`last` gets it when training ends (save_last_weights).

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
"""The whole model's weights, one file (the name Accelerate and `load_checkpoint_in_model` expect)."""
WEIGHTS_ONLY = "weights_only"
"""trainer_state.json key of a `last` whose resume state was dropped (a completed run's cleanup)."""
# Files of `last` that only a resume reads once the folder holds WEIGHTS_FILE (accelerate.save_state's
# names; DeepSpeed's optimizer shards end in `optim_states.pt`). Without WEIGHTS_FILE those shards may
# hold the only whole weights (ZeRO-3's model_states.pt has placeholders): drop_resume_state keeps all.
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
    _fsync(final.parent)  # make the renames themselves durable


def _prepare_tmp(accelerator: Accelerator, ckpt_dir: Path, name: str) -> Path:
    # Same fixed name on every process, cleared of any leftover from a killed save.
    tmp = ckpt_dir / f"{name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    return tmp


@contextmanager
def _removed_on_failure(accelerator: Accelerator, tmp: Path) -> Iterator[None]:
    """Delete the half-written `tmp` (main process) when the save fails: a full disk (ENOSPC) failed the
    run, which is not retried, and left up to a whole model and its optimizer state in `<name>.tmp`,
    keeping the disk full for every other run on it. The previous folder stands, as it did."""
    try:
        yield
    except BaseException:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _finish(accelerator: Accelerator, tmp: Path, final: Path, state: dict[str, Any]) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        rundir.honour_umask(tmp)  # before the state file marks the folder complete
        _fsync_tree(tmp)  # likewise: the marker must not reach the disk before what it vouches for
        rundir.write_json(tmp / STATE_FILE, state)
        _publish(tmp, final)
    accelerator.wait_for_everyone()


def save_last(
    accelerator: Accelerator, ckpt_dir: Path, state: dict[str, Any], rank_state: dict[str, Any] | None = None
) -> None:
    """Save model, optimizer, scheduler, scaler and every process's RNG state as `last`, with
    `state` beside it and each process's `rank_state` (tensors kept bit for bit)."""
    tmp = _prepare_tmp(accelerator, ckpt_dir, LAST)
    with _removed_on_failure(accelerator, tmp):
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
    with _removed_on_failure(accelerator, tmp):
        weights = _whole_weights(accelerator, model)
        if weights is not None:
            tmp.mkdir(parents=True, exist_ok=True)
            save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        _finish(accelerator, tmp, ckpt_dir / BEST, state)


def _whole_weights(accelerator: Accelerator, model: nn.Module) -> dict[str, torch.Tensor] | None:
    """The whole model's weights on the main process, None on the others (a collective under ZeRO-3,
    which gathers the partitioned parameters: every process calls it)."""
    weights = distributed.state_dict(accelerator, model)  # None on the other ranks under ZeRO-3
    if not accelerator.is_main_process:
        return None
    # Own contiguous CPU copies: DeepSpeed on CPU gathers into views of one buffer, and
    # safetensors would drop such "shared" tensors instead of saving them.
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in weights.items()}


def save_last_weights(accelerator: Accelerator, model: nn.Module, ckpt_dir: Path) -> None:
    """Add the whole model's weights (WEIGHTS_FILE, as `best` holds them) to a DeepSpeed run's
    `last` once training ends, `model` being the one `last` saved; every process calls it.

    accelerate.save_state writes a DeepSpeed engine in DeepSpeed's own files, without WEIGHTS_FILE:
    eval/predict could not load `last`, and under ZeRO-3 the whole fp32 weights are only in the
    optimizer shards that drop_resume_state deletes. Other runs' `last` has the file already.
    """
    if not distributed.uses_deepspeed(accelerator):
        return
    weights = _whole_weights(accelerator, model)
    folder = find_complete(ckpt_dir, LAST) if weights is not None else None  # weights: main process only
    if weights is not None and folder is not None:
        # Whole or absent: a kill half-way leaves `last` as save_state wrote it (still resumable).
        tmp = folder / f".{WEIGHTS_FILE}.tmp"
        save_file(weights, str(tmp), metadata={"format": "pt"})
        os.chmod(tmp, rundir.file_mode())  # safetensors writes 0600 (see rundir.honour_umask)
        _fsync(tmp)
        os.replace(tmp, folder / WEIGHTS_FILE)
        _fsync(folder)
    accelerator.wait_for_everyone()


def _fsync_tree(folder: Path) -> None:
    """Make every file under `folder`, and the folders' entries, durable. accelerate.save_state,
    torch.save and safetensors only close their files: after a power loss or a node crash the
    published folder, its trainer_state.json durable, could hold empty or truncated weights and
    optimizer state (a folder rename does not flush the files inside, as a file rename may on ext4)."""
    folders = [folder]
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            continue
        if path.is_dir():
            folders.append(path)
        elif path.is_file():
            _fsync(path)
    for each in folders:
        _fsync(each)


def _fsync(path: Path) -> None:
    """Make a file's contents, or a folder's renames, durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    A `last` without WEIGHTS_FILE (a DeepSpeed run's, saved by an older trainer or killed before
    save_last_weights) is kept whole: under ZeRO-3 its optimizer shards hold the only whole weights.

    trainer_state.json is marked `weights_only` first, so a kill half-way leaves a folder that a
    rerun trains over from the start (see is_weights_only), never one it half-trusts.
    """
    folder = find_complete(ckpt_dir, LAST)
    if folder is None or not (folder / WEIGHTS_FILE).is_file():
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
