"""One epoch: train (the rest of it, when it resumes mid-way), validate, select, save, log.

Everything random in epoch e derives from (seed, e): the data order (per rank), each image's
augmentation from (seed, e, image index), dropout from a per-rank stream reseeded at the epoch
start. A resumed epoch skips the consumed samples in the sampler and restores the RNG state at
its first micro-batch, so a run killed at any step boundary ends as an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from accelerate.utils import set_seed

from trainers.data.loaders import epoch_seed
from trainers.loop.build import Parts, beat, micro_batches_per_epoch, model_input
from trainers.loop.evaluate import evaluate
from trainers.loop.history import write_history
from trainers.loop.metrics import lookup
from trainers.loop.resume import MidEpoch, Progress, save_best, save_last, set_rng_states, stop_decision
from trainers.model import regimes
from trainers.model.losses import HierarchicalLoss
from trainers.model.tasks import TaskSpec
from trainers.runtime import faults
from trainers.runtime.distributed import uses_deepspeed

TRAIN_COLUMNS = {
    "hierarchical": ["train_super_loss", "train_sub_loss", "train_super.top1", "train_sub.top1"],
    "single": ["train_top1"],
}
"""The training columns of history.csv after train_loss, per task (multilabel: none)."""


@dataclass(frozen=True, kw_only=True)
class EpochResult:
    """What one process's pass over the training data gives back."""

    loss: float
    """Mean training loss of the whole epoch over all processes (without L2-SP)."""
    levels: dict[str, float]
    """The training columns (TRAIN_COLUMNS): per-level losses (hierarchical) and top-1 accuracies."""
    images: int
    """Images this process trained in this call (a resumed epoch: only the rest of it)."""
    seconds: float
    """Training time of this call, saving time left out."""


@dataclass(frozen=True, kw_only=True)
class Timing:
    """Training images and seconds of this process, summed over the epochs this call trained."""

    train_images: int = 0
    train_s: float = 0.0

    def plus(self, epoch: EpochResult) -> Timing:
        """These totals with one more epoch."""
        return Timing(train_images=self.train_images + epoch.images, train_s=self.train_s + epoch.seconds)


@dataclass(frozen=True, kw_only=True)
class LoopState:
    """What the epoch loop carries from one epoch to the next; `run_epoch` returns it anew."""

    progress: Progress
    history: tuple[dict[str, Any], ...]
    """history.csv's rows so far (those of earlier calls, read back on resume)."""
    timing: Timing = field(default_factory=Timing)


@dataclass
class Stopwatch:
    """Training seconds of one epoch; `pause`/`restart` around a mid-epoch save leave it out."""

    seconds: float = 0.0
    since: float = field(default_factory=time.perf_counter)

    def pause(self) -> None:
        """Add the time since the last (re)start."""
        self.seconds += time.perf_counter() - self.since

    def restart(self) -> None:
        """Count from now again."""
        self.since = time.perf_counter()


def start_epoch(parts: Parts, epoch: int, start: int) -> tuple[int, int]:
    """Select epoch `epoch`'s data order (less its first `start` micro-batches on every rank)
    and reseed; returns the epoch's whole length in micro-batches (max_steps_per_epoch
    applied) and the number of images skipped."""
    cfg, data, processes = parts.cfg, parts.data, parts.accelerator.num_processes
    if start == 0:
        # Reseed everything from (seed, epoch): a resumed run replays the same randomness.
        set_seed(epoch_seed(cfg.seed, epoch, stream=2 + parts.accelerator.process_index))
    data.start_train_pass()  # after the reseed, where a fresh loader iterator draws from it
    if hasattr(data.train, "set_epoch"):
        # Accelerate's loader re-sets the sampler epoch from its own pass counter on every
        # iteration, a counter that restarts at 0 in a resumed process: set it explicitly
        # (and before the sampler's skip, which a change of epoch resets).
        data.train.set_epoch(epoch)
    data.train_sampler.set_epoch(epoch, skip=0)
    micro_batches = micro_batches_per_epoch(cfg, data.train)
    # As build_data sized the loader; a global micro-batch is one per-device batch per rank.
    per_device = max(1, cfg.data.batch_size // (processes * cfg.distributed.grad_accum_steps))
    skipped = start * per_device * processes
    data.train_sampler.set_epoch(epoch, skip=skipped)
    return micro_batches, skipped


def train_one_epoch(parts: Parts, epoch: int, progress: Progress, mid: MidEpoch | None = None) -> EpochResult:
    """One pass over the training data (the rest of it from `progress.step_in_epoch`, for an epoch
    resumed mid-way with this rank's saved loop state `mid`)."""
    start = progress.step_in_epoch
    micro_batches, skipped = start_epoch(parts, epoch, start)
    regimes.set_train_mode(parts.model, parts.cfg)
    accum = parts.cfg.distributed.grad_accum_steps
    # DeepSpeed divides the loss by its accumulation steps itself and steps inside backward().
    deepspeed = uses_deepspeed(parts.accelerator)
    totals = _epoch_totals(parts, mid)
    watch = Stopwatch()
    parts.optimizer.zero_grad(set_to_none=True)
    beat(parts, "compile")  # the first micro-batches: loader workers start, torch.compile and autotuning run
    for index, (images, targets) in enumerate(parts.data.train, start=start):
        if index >= micro_batches:
            break
        faults.before_micro_batch(parts.run_dir, index)  # tests only (ORCH_FAULT_INJECT); nothing otherwise
        if mid is not None and index == start:
            # The RNG state saved at this boundary; creating the iterator drew from it since.
            set_rng_states(mid.rng)
        step_now = (index + 1) % accum == 0 or index + 1 == micro_batches
        divisor = loss_divisor(window_size(index, accum, micro_batches), accum, deepspeed)
        loss, outputs = _micro_batch(parts, images, targets, step_now, divisor)
        totals += _batch_sums(parts, loss, outputs, targets, totals)
        if parts.trackers is not None:
            parts.trackers.record(loss, step_now)
        beat(parts, "step")
        if step_now and index + 1 < micro_batches:
            step_boundary(parts, dataclasses.replace(progress, step_in_epoch=index + 1), totals, watch)
    parts.accelerator.sync_gradients = True
    return _finish_epoch(parts, totals, skipped, watch)


def window_size(index: int, accum: int, micro_batches: int) -> int:
    """Micro-batches in the accumulation window of micro-batch `index` (0-based) of an epoch of
    `micro_batches`: `accum`, except the epoch's last window when `accum` does not divide the epoch."""
    first = index - index % accum
    return min(accum, micro_batches - first)


def loss_divisor(window: int, accum: int, deepspeed: bool) -> float:
    """What a micro-batch's loss is divided by before backward, so that its window's gradient is
    the mean over the window's `window` micro-batches: the window's real size (dividing the short
    last window by `accum` would shrink the epoch's last step by window / accum). DeepSpeed divides
    by `accum` itself, so there it is window / accum (1 for a full window)."""
    return window / accum if deepspeed else float(window)


def _micro_batch(
    parts: Parts, images: torch.Tensor, targets: torch.Tensor, step_now: bool, divisor: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward of one micro-batch with its loss divided by `divisor` (`loss_divisor`),
    and the optimizer step when `step_now`; its (undivided) loss and outputs."""
    accelerator, model = parts.accelerator, parts.model
    deepspeed = uses_deepspeed(accelerator)
    if deepspeed:
        # Accelerate hands this to DeepSpeed as the accumulation boundary (and steps the
        # engine only there); left at its default True, every micro-batch would be a step.
        accelerator.sync_gradients = step_now
    # Gradients of the micro-batches in between stay local (no all-reduce) until the step.
    with nullcontext() if step_now or deepspeed else accelerator.no_sync(model):
        outputs = model(model_input(parts, images)).float()
        loss = parts.criterion(outputs, targets)
        objective = loss if parts.l2sp is None else loss + parts.l2sp()
        accelerator.backward(objective if divisor == 1.0 else objective / divisor)
    if step_now:
        if parts.cfg.optim.grad_clip_norm is not None:
            accelerator.clip_grad_norm_(model.parameters(), parts.cfg.optim.grad_clip_norm)
        parts.optimizer.step()
        parts.optimizer.zero_grad(set_to_none=True)
    return loss, outputs


def _batch_sums(
    parts: Parts, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor, totals: torch.Tensor
) -> torch.Tensor:
    """One micro-batch's contribution to the epoch's running sums (see `_epoch_totals`)."""
    # new_ones fills on the device; new_tensor(1.0) would copy from the host and wait for every
    # kernel queued so far: a stall of each micro-batch on a GPU (pytorch/pytorch#120996).
    batch = [loss.detach().float(), totals.new_ones(())]
    if parts.task.kind == "hierarchical":
        last = cast(HierarchicalLoss, parts.criterion).last_levels
        batch += [last["super"].float(), last["sub"].float()]
    batch += train_accuracies(parts.task, outputs.detach(), targets)
    return torch.stack(batch) * len(targets)


def step_boundary(parts: Parts, progress: Progress, totals: torch.Tensor, watch: Stopwatch) -> None:
    """Mid-epoch, after an optimizer step (`progress.step_in_epoch` micro-batches of epoch
    `progress.epochs_done` trained): save `last` if asked to, and stop if asked to."""
    epoch, done = progress.epochs_done, progress.step_in_epoch
    save, stop = stop_decision(parts, epoch, done)
    if not save:
        return
    why = parts.stop.why()
    watch.pause()  # training time, not saving time
    save_last(parts, progress, totals)
    watch.restart()
    parts.accelerator.print(f"saved the state at epoch {epoch + 1} micro-batch {done} ({why})")
    if stop:
        parts.stop.hand_over(f"epoch {epoch + 1} micro-batch {done}")


def _epoch_totals(parts: Parts, mid: MidEpoch | None) -> torch.Tensor:
    """The epoch's running sums: loss sum, image count, then (hierarchical) each level's loss sum,
    then the correct counts (single: top-1; hierarchical: per level; multilabel: none); those of
    the saved state when the epoch resumes mid-way."""
    width = {"hierarchical": 6, "single": 3}.get(parts.task.kind, 2)
    totals = torch.zeros(width, device=parts.accelerator.device)
    if mid is not None:
        saved = mid.totals.to(parts.accelerator.device)
        # A mid-epoch state saved before train accuracies were counted: their sums restart as NaN.
        totals = torch.cat([saved, saved.new_full((width - len(saved),), math.nan)]) if len(saved) < width else saved
    return totals


def _finish_epoch(parts: Parts, totals: torch.Tensor, skipped: int, watch: Stopwatch) -> EpochResult:
    """Sum the epoch's totals over processes into its mean loss and training columns."""
    loss_sum, images_seen, *sums = parts.accelerator.reduce(totals, reduction="sum").tolist()
    names = TRAIN_COLUMNS.get(parts.task.kind, [])
    levels = {
        name: value / images_seen if images_seen > 0 else math.nan for name, value in zip(names, sums, strict=True)
    }
    # tolist() waited for the device, so the time below covers the work, not only its queueing.
    watch.pause()
    return EpochResult(
        loss=loss_sum / images_seen if images_seen > 0 else math.nan,
        levels=levels,
        images=int(images_seen) - skipped,  # timing counts what this process trained
        seconds=watch.seconds,
    )


def train_accuracies(task: TaskSpec, outputs: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
    """Top-1 accuracy of one training batch: [single] or [super, sub] (hierarchical); [] for multilabel."""
    if task.kind == "single":
        return [(outputs.argmax(dim=1) == targets).float().mean()]
    if task.kind == "hierarchical":
        super_width = task.heads[0][1]
        super_scores, sub_scores = outputs[:, :super_width], outputs[:, super_width:]
        return [
            (super_scores.argmax(dim=1) == targets[:, 0]).float().mean(),
            (sub_scores.argmax(dim=1) == targets[:, 1]).float().mean(),
        ]
    return []


def history_row(epoch: int, trained: EpochResult, val: dict[str, Any], lr: float, extra: list[str]) -> dict[str, Any]:
    """One history.csv row: losses, the main validation metrics, lr."""
    row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": trained.loss, **trained.levels}
    for name in ("val_loss", "val_top1", "val_macro_f1", *extra):
        if not name.startswith("val_"):
            continue
        value = lookup(val, name.removeprefix("val_"))
        row[name] = math.nan if value is None else value
    row["lr"] = lr
    return row


def run_epoch(parts: Parts, epoch: int, state: LoopState, mid: MidEpoch | None = None) -> LoopState:
    """Train + validate one epoch, then save best (if improved), history and last, in that
    order, so `last` never points at a best or a history row that is not on disk yet."""
    started = time.perf_counter()
    lr = float(parts.optimizer.param_groups[0]["lr"])
    trained = train_one_epoch(parts, epoch, state.progress, mid)
    val = evaluate(parts, parts.data.val)
    parts.scheduler.step()
    progress = state.progress.after_epoch(epoch, parts.selection.value(val), parts.selection)
    if progress.best_epoch == epoch + 1:  # improved: only this epoch can make itself the best
        save_best(parts, epoch + 1, progress.best_value)
    row = history_row(epoch, trained, val, lr, parts.history_extra)
    row["epoch_s"] = round(time.perf_counter() - started, 3)
    row["train_images_per_s"] = round(trained.images / trained.seconds, 1) if trained.seconds > 0 else math.nan
    history = (*state.history, row)
    if parts.trackers is not None:
        parts.trackers.log_steps(epoch, lr)
        end = (epoch + 1) * parts.trackers.steps_per_epoch
        parts.trackers.log_metrics("val", val, end)
        parts.trackers.log_metrics("epoch", {k: v for k, v in row.items() if not k.startswith("val")}, end)
    if parts.accelerator.is_main_process:
        write_history(parts.run_dir, list(history), parts.history_extra)
    save_last(parts, progress)
    if parts.stop.answered:  # a save signal after the epoch's last step boundary: this save answered it
        parts.accelerator.print(f"saved the state at the end of epoch {epoch + 1} ({parts.stop.answered})")
    _report(parts, epoch, row, progress)
    return LoopState(progress=progress, history=history, timing=state.timing.plus(trained))


def _report(parts: Parts, epoch: int, row: dict[str, Any], progress: Progress) -> None:
    """The epoch's line on the console (rank 0)."""
    shown = {name: row[name] for name in ("val_loss", "val_top1", parts.selection.metric)}
    parts.accelerator.print(
        f"epoch {epoch + 1}/{parts.cfg.epochs} train_loss {row['train_loss']:.4f} "
        + " ".join(f"{name} {value:.4f}" for name, value in shown.items())
        + f" ({row['epoch_s']:.1f} s)"
        + (f"; no improvement for {progress.epochs_since_best} epochs: stopping" if progress.stopped_early else "")
    )
