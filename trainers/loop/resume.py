"""What survives an interruption, and the saves and stops that make it survive.

`Progress` is saved as trainer_state.json in checkpoints/last at each epoch end and, mid-epoch, at
an optimizer-step boundary when a stop is requested (USR2) or `checkpoint_every_min` passed, with
each rank's running loss totals (`MidEpoch`). `resume` reads them back.
"""

from __future__ import annotations

import dataclasses
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils.constants import RNG_STATE_NAME
from safetensors import SafetensorError

from trainers.loop import checkpoint
from trainers.loop.build import Parts, beat
from trainers.loop.early_stopping import Selection
from trainers.runtime import distributed


@dataclass(frozen=True, kw_only=True)
class Progress:
    """Where the run stands between epochs (saved as trainer_state.json in checkpoints/last)."""

    epochs_done: int = 0
    best_epoch: int | None = None
    best_value: float | None = None
    epochs_since_best: int = 0
    stopped_early: bool = False
    step_in_epoch: int = 0
    """Micro-batches of epoch `epochs_done` already trained (a mid-epoch checkpoint; 0 at epoch ends)."""
    precision: str | None = None
    """Mixed precision the run trains in, as its first attempt resolved it (`precision: auto` depends
    on the node; a resume keeps this one: distributed.run_precision); None in older states."""
    attempt_precisions: list[str] = field(default_factory=list)
    """Each attempt's mixed precision, in order (attempts that saved no state are not in it)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Progress:
        """From trainer_state.json, including the v1 form (best_val_top1, no stopping state)."""
        state = dict(state)
        if "best_val_top1" in state:
            state.setdefault("best_value", state.pop("best_val_top1"))
        return cls(**{k: v for k, v in state.items() if k in cls.__dataclass_fields__})

    def started(self, precision: str) -> Progress:
        """The progress of an attempt that trains in `precision` (the run's, from its first attempt on)."""
        return dataclasses.replace(
            self, precision=self.precision or precision, attempt_precisions=[*self.attempt_precisions, precision]
        )

    def after_epoch(self, epoch: int, value: float | None, selection: Selection) -> Progress:
        """The progress once epoch `epoch` (0-based) validated at `value` of the selection metric
        (None: the run has no validation split; see `Selection.value`)."""
        done = dataclasses.replace(self, epochs_done=epoch + 1, step_in_epoch=0)
        if selection.improved(value, self.best_value):
            return dataclasses.replace(done, best_epoch=epoch + 1, best_value=value, epochs_since_best=0)
        since = self.epochs_since_best + 1
        patience = selection.patience
        done = dataclasses.replace(
            done, epochs_since_best=since, stopped_early=patience is not None and since >= patience
        )
        if self.best_epoch is None:
            # NaN from the first epoch on: keep this epoch as the model to test (a run needs a best
            # checkpoint), with no value, so that the first real value replaces it; patience counts.
            return dataclasses.replace(done, best_epoch=epoch + 1, best_value=None)
        return done


@dataclass(frozen=True, kw_only=True)
class MidEpoch:
    """This rank's loop state of a mid-epoch checkpoint, for the epoch that resumes there."""

    totals: torch.Tensor
    """The epoch's running sums so far (epoch._epoch_totals)."""
    rng: dict[str, Any]
    """The RNG states saved at the boundary (restored at the first micro-batch after it)."""


def resume(parts: Parts) -> tuple[Progress, MidEpoch | None]:
    """Load checkpoints/last when it exists: the progress to continue from and, when it was saved
    mid-epoch, this rank's loop state for that epoch."""
    folder = checkpoint.find_complete(parts.ckpt_dir, checkpoint.LAST)
    if folder is None:
        return Progress(), None
    accelerator = parts.accelerator
    if checkpoint.is_weights_only(folder):
        # A completed run, trimmed by `cleanup.drop_optimizer_state`, that is run again (its status or
        # metrics were lost): without optimizer and RNG state the only faithful rerun is from the start.
        accelerator.print(f"{folder} holds model weights only (a completed run's cleanup): training from the start")
        return Progress(), None
    progress = Progress.from_dict(checkpoint.read_state(folder))
    load_state(accelerator, folder, mid_epoch=progress.step_in_epoch > 0)
    mid = None
    if progress.step_in_epoch > 0:
        rank_state = checkpoint.read_rank_state(folder, accelerator.process_index)
        if rank_state is None:
            raise FileNotFoundError(f"{folder} is a mid-epoch checkpoint without this rank's loop state")
        mid = MidEpoch(totals=rank_state["totals"], rng=rng_states())
    where = f"the end of epoch {progress.epochs_done}"
    if progress.step_in_epoch:
        where = f"epoch {progress.epochs_done + 1} micro-batch {progress.step_in_epoch}"
    accelerator.print(f"resumed from {folder} at {where}")
    return progress, mid


_NOT_THE_CHECKPOINT: tuple[type[BaseException], ...] = tuple(
    kind
    for kind in (
        getattr(torch, "OutOfMemoryError", None),
        getattr(torch, "AcceleratorError", None),  # CUDA errors (torch 2.8+), a RuntimeError
        getattr(torch.distributed, "DistError", None),
    )
    if isinstance(kind, type)
)
"""Errors during a resume that are the node's, not the checkpoint's (getattr: torch >= 2.4 is allowed)."""


class CheckpointUnreadable(RuntimeError):
    """checkpoints/last is marked complete but cannot be resumed from (a file truncated or lost)."""


def load_state(accelerator: Accelerator, folder: Path, mid_epoch: bool) -> None:
    """Load model, optimizer, scheduler, scaler and this rank's RNG state from `folder`, or raise
    CheckpointUnreadable naming the folder. Accelerate only logs a missing or unreadable RNG file and
    goes on: a mid-epoch resume, whose epoch does not reseed, then silently trained with other dropout
    than the run it continues. An epoch-end resume reseeds at the epoch start: the file is not needed."""
    rng_file = folder / f"{RNG_STATE_NAME}_{accelerator.process_index}.pkl"
    try:
        accelerator.load_state(str(folder))
        if mid_epoch:
            # accelerate.save_state pickles Python's and numpy's states into it: weights_only cannot read it.
            torch.load(rng_file, map_location="cpu", weights_only=False)
    except _NOT_THE_CHECKPOINT:
        raise  # the node's memory, GPU or network, not the checkpoint (failure classification retries them)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError, SafetensorError) as exc:
        raise CheckpointUnreadable(
            f"{folder} cannot be resumed from ({type(exc).__name__}: {exc}); it is left as it is: "
            f"move {folder} away to train the run from the start"
        ) from exc


def rng_states() -> dict[str, Any]:
    """This process's RNG states (Python, numpy, torch CPU and CUDA)."""
    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state()}
    states["torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` captured."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


def save_last(parts: Parts, progress: Progress, totals: torch.Tensor | None = None) -> None:
    """checkpoints/last with the progress and, mid-epoch, this rank's running loss totals (collective)."""
    beat(parts, "checkpoint")
    rank_state = None if totals is None else {"totals": totals.detach().cpu()}
    checkpoint.save_last(parts.accelerator, parts.ckpt_dir, progress.as_dict(), rank_state)
    parts.stop.saved()
    parts.votes.saved()


def finish_last(parts: Parts) -> None:
    """Once training ends: the whole model's weights into a DeepSpeed run's `last`, which then holds
    them as any other run's does, for eval/predict and for the cleanup that keeps only them
    (checkpoint.save_last_weights; collective, a no-op without DeepSpeed)."""
    if distributed.uses_deepspeed(parts.accelerator):
        beat(parts, "checkpoint")
        checkpoint.save_last_weights(parts.accelerator, parts.model, parts.ckpt_dir)


def save_best(parts: Parts, epoch: int, value: float | None) -> None:
    """Save the model as `best`, with what eval/predict need to rebuild it (config, task)."""
    beat(parts, "checkpoint")
    state = {
        "epoch": epoch,
        "metric": parts.selection.metric,
        "value": value,
        "task": parts.task.as_dict(),
        "config": parts.cfg.model_dump(mode="json"),
    }
    checkpoint.save_best(parts.accelerator, parts.model, parts.ckpt_dir, state)


def stop_decision(parts: Parts, epoch: int, done: int) -> tuple[bool, bool]:
    """(save, stop) at a mid-epoch step boundary, agreed by all ranks (any rank's signal counts):
    under several processes, that of their vote one boundary earlier (trainers/runtime/votes.py)."""
    return parts.votes.at_boundary(*parts.stop.poll(epoch, done))


def stop_after_epoch(parts: Parts, progress: Progress) -> None:
    """A stop requested during validation or the epoch-end save: hand over now that `last`
    is saved (after the final epoch, the final evaluation's first batch does: stop_in_final_evaluation)."""
    if progress.epochs_done >= parts.cfg.epochs or progress.stopped_early:
        return
    _, stop = parts.votes.now(*parts.stop.poll(progress.epochs_done, 0))
    if stop:
        parts.accelerator.print(f"stopping on request after epoch {progress.epochs_done} (state saved)")
        parts.stop.hand_over(f"the end of epoch {progress.epochs_done}")


def stop_in_final_evaluation(parts: Parts, split: str, batch: int) -> None:
    """Before batch `batch` of the final evaluation of `split`: on a stop request (any rank's, agreed
    as at step boundaries), hand over. Nothing to save: training ended with `last` saved (and `best`;
    a regime that trains nothing has only `best`), so the requeued attempt trains no epoch and
    evaluates from them; metrics.json is written only once the evaluation is whole."""
    _, stop = parts.votes.at_boundary(False, parts.stop.poll_final(split, batch))
    if stop:
        parts.accelerator.print(f"stopping on request in the final evaluation ({split} batch {batch})")
        parts.stop.hand_over("the end of training (the next attempt resumes into the final evaluation)")
