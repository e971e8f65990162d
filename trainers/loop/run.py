"""The training loop of one run: build, (resume,) train and validate per epoch, then test
the best checkpoint (or the last epoch's model, `checkpoint_for_test: last`) and write
metrics.json and its tables.

Resume contract: everything random in epoch e derives from (seed, e): the data order
(per rank), each image's augmentation from (seed, e, image index), dropout from a per-rank
stream reseeded at the epoch start. `checkpoints/last` holds model, optimizer, scheduler,
scaler and every rank's RNG state, saved at each epoch end and, mid-epoch, at an
optimizer-step boundary when a stop is requested (USR2) or `checkpoint_every_min` passed,
with the micro-batches consumed so far and each rank's running loss totals. A resumed
epoch skips the consumed samples in the sampler and restores the RNG state at its first
micro-batch, so a run killed at any step boundary and restarted ends with exactly the
metrics and history of an uninterrupted run (on CPU; see docs/ for GPU kernels).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from trainers import contract, rules, rundir
from trainers.config import TrainConfig
from trainers.data.loaders import DataBundle, build_data, epoch_seed
from trainers.data.transforms import BatchNormalize, preprocessing_record, resolve_preprocessing, stats
from trainers.loop import checkpoint
from trainers.loop.early_stopping import Selection
from trainers.loop.history import read_history, write_history
from trainers.loop.metrics import Evaluation, evaluate_outputs, level_metrics, lookup, metric_names, table_csv
from trainers.loop.optim import build_optimizer, build_scheduler
from trainers.model import regimes
from trainers.model.build import build_model, check_pretrained_path, count_params
from trainers.model.complexity import complexity
from trainers.model.l2sp import L2SP
from trainers.model.losses import HierarchicalLoss, build_criterion, level_losses
from trainers.model.tasks import TaskSpec, task_of
from trainers.runtime import faults, heartbeat, memory, tracking
from trainers.runtime.distributed import (
    build_accelerator,
    deepspeed_config,
    layout,
    match_buffers,
    model_input_dtype,
    share_buffers,
    uses_deepspeed,
)
from trainers.runtime.preemption import StopRequest
from trainers.runtime.provenance import provenance

log = logging.getLogger(__name__)


# Hierarchical runs' extra history.csv columns: each level's loss (with the run's class weights,
# before w_super / w_sub) and accuracy; train accuracies are of the augmented training batches in
# train mode, as the reports' own loops count them.
TEST_TRAINING_GUARD = "ORCHESTRATE_TEST_FORBID_TRAINING"
"""Set by the test suite for its quick tests only (tests/conftest.py): training then refuses to start."""

HIERARCHICAL_HISTORY = [
    "train_super_loss",
    "train_sub_loss",
    "train_super.top1",
    "train_sub.top1",
    "val_super.loss",
    "val_sub.loss",
    "val_super.top1",
    "val_sub.top1",
]
SINGLE_HISTORY = ["train_top1"]


@dataclass
class Progress:
    """What survives an interruption (saved as trainer_state.json in checkpoints/last)."""

    epochs_done: int = 0
    best_epoch: int | None = None
    best_value: float | None = None
    epochs_since_best: int = 0
    stopped_early: bool = False
    step_in_epoch: int = 0
    """Micro-batches of epoch `epochs_done` already trained (a mid-epoch checkpoint; 0 at epoch ends)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Progress:
        """From trainer_state.json, including the v1 form (best_val_top1, no stopping state)."""
        state = dict(state)
        if "best_val_top1" in state:
            state.setdefault("best_value", state.pop("best_val_top1"))
        return cls(**{k: v for k, v in state.items() if k in cls.__dataclass_fields__})


@dataclass(kw_only=True)
class Run:
    """The prepared objects of one run."""

    cfg: TrainConfig
    run_dir: Path
    accelerator: Accelerator
    data: DataBundle
    task: TaskSpec
    model: nn.Module
    criterion: nn.Module
    optimizer: Optimizer
    scheduler: LRScheduler
    selection: Selection
    n_params: int
    n_trainable: int
    l2sp: L2SP | None = None
    input_dtype: torch.dtype | None = None
    """Cast images to this before the model (DeepSpeed runs bf16/fp16 models without autocast)."""
    normalize: BatchNormalize = field(default_factory=BatchNormalize)
    """uint8 loader batches -> normalised float, on the device."""
    train_images: int = 0
    train_s: float = 0.0
    eval_levels: dict[str, float] | None = None
    """Hierarchical: each level's loss over the split `predict` scored last."""
    train_levels: dict[str, float] = field(default_factory=dict)
    """The last epoch's training columns: per-level losses (hierarchical) and top-1 accuracies
    (train_top1, train_super.top1, train_sub.top1)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    clock: float = 0.0
    """perf_counter() since which training time is not yet in `train_s`."""
    stop: StopRequest = field(default_factory=StopRequest)
    resumed: dict[str, Any] | None = None
    """Loop state of a mid-epoch checkpoint (running totals, RNG states) until its epoch resumes."""
    tracking: tracking.Tracking | None = None
    """Experiment trackers (cfg.trackers); None when the run logs to none."""

    @property
    def ckpt_dir(self) -> Path:
        """checkpoints/ of this run."""
        return checkpoint.checkpoint_dir(self.run_dir)

    @property
    def history_extra(self) -> list[str]:
        """Task- and selection-specific history columns."""
        extra = {"hierarchical": HIERARCHICAL_HISTORY, "single": SINGLE_HISTORY}.get(self.task.kind, [])
        return [*extra, self.selection.metric]


def _start_process(
    cfg: TrainConfig, run_dir: Path, metadata: dict[str, Any] | None
) -> tuple[Accelerator, dict[str, Any]]:
    """Checks that fail before any data is read, the process's threads and allocator, the
    Accelerator (with its trackers) and the seed; the run's facts for the trackers."""
    check_pretrained_path(cfg.model)  # fail before any data is read
    rules.check_config(cfg)  # the pure-config rules `plan` checks too
    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    memory.tune_host_allocator()
    facts = tracking.run_facts(run_dir, metadata)
    accelerator = build_accelerator(cfg, tracking.build_trackers(cfg, run_dir, facts))
    if accelerator.device.type == "cuda":
        # Fixed input shapes (square resize, drop_last): autotuned convolution kernels pay off.
        torch.backends.cudnn.benchmark = True
    set_seed(cfg.seed)  # weight init of the heads (and backbone when from scratch)
    return accelerator, facts


def build_run(cfg: TrainConfig, run_dir: Path, metadata: dict[str, Any] | None = None) -> Run:
    """Accelerator, data, model, loss, optimizer and schedule, all prepared for the device(s);
    `metadata` (the plan's run id, name, sweep, ablation...) names and tags tracker runs."""
    accelerator, facts = _start_process(cfg, run_dir, metadata)
    # The checkpoint's own mean/std and resize filter (data.normalize/interpolation: checkpoint).
    cfg = cfg.model_copy(update={"data": resolve_preprocessing(cfg.data, cfg.model.backbone)})
    data = build_data(cfg.data, cfg.seed, accelerator.num_processes * cfg.distributed.grad_accum_steps)
    if accelerator.is_main_process:
        data.write_split(run_dir)  # which images each split holds, to check reproducibility later
    task = task_of(data.splits)
    selection = Selection.from_config(cfg.early_stopping, metric_names(task))
    model = build_model(cfg, task)
    regimes.apply_regime(model, cfg)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.compile:
        # In place (nn.Module.compile): parameter names, state dicts and checkpoints stay those
        # of the plain model, so eval/predict and resume read them as usual.
        model.compile()
    n_params = count_params(model)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    criterion = build_criterion(cfg.loss, task, data.splits.train.targets)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs)
    model, optimizer, data.train, data.val, data.test, scheduler = accelerator.prepare(
        model, optimizer, data.train, data.val, data.test, scheduler
    )
    criterion = criterion.to(accelerator.device)
    input_dtype = model_input_dtype(accelerator)
    if input_dtype is not None:
        match_buffers(accelerator.unwrap_model(model), input_dtype)
    engine_config = deepspeed_config(accelerator)
    if engine_config is not None and accelerator.is_main_process:
        rundir.write_json(run_dir / rundir.DEEPSPEED_CONFIG, engine_config)  # what ran, not only what was asked
    # Anchored now: after the pretrained weights are loaded, before a resume overwrites them.
    l2sp = L2SP(accelerator.unwrap_model(model), cfg.loss.l2sp) if cfg.loss.l2sp > 0 else None
    trackers = None
    if cfg.trackers:
        trackers = tracking.Tracking(accelerator, steps_per_epoch(cfg, data.train))
        trackers.start(cfg, run_dir, facts)
    return Run(
        cfg=cfg,
        run_dir=run_dir,
        accelerator=accelerator,
        data=data,
        task=task,
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        scheduler=scheduler,
        selection=selection,
        n_params=n_params,
        n_trainable=n_trainable,
        l2sp=l2sp,
        input_dtype=input_dtype,
        normalize=BatchNormalize(*stats(cfg.data)),
        tracking=trackers,
    )


def micro_batches_per_epoch(cfg: TrainConfig, train: DataLoader[Any]) -> int:
    """Training batches each process runs per epoch (max_steps_per_epoch caps them)."""
    micro = len(train)
    if cfg.max_steps_per_epoch is not None:
        micro = min(micro, cfg.max_steps_per_epoch * cfg.distributed.grad_accum_steps)
    return micro


def steps_per_epoch(cfg: TrainConfig, train: DataLoader[Any]) -> int:
    """Optimizer steps per epoch (a short last accumulation still steps)."""
    return math.ceil(micro_batches_per_epoch(cfg, train) / cfg.distributed.grad_accum_steps)


def resume(run: Run) -> Progress:
    """Load checkpoints/last when it exists; the progress to continue from."""
    folder = checkpoint.find_complete(run.ckpt_dir, checkpoint.LAST)
    if folder is None:
        return Progress()
    if checkpoint.is_weights_only(folder):
        # A completed run, trimmed by `cleanup.drop_optimizer_state`, that is run again (its status or
        # metrics were lost): without optimizer and RNG state the only faithful rerun is from the start.
        run.accelerator.print(f"{folder} holds model weights only (a completed run's cleanup): training from the start")
        return Progress()
    run.accelerator.load_state(str(folder))  # also every rank's RNG state
    progress = Progress.from_dict(checkpoint.read_state(folder))
    if progress.step_in_epoch > 0:
        rank_state = checkpoint.read_rank_state(folder, run.accelerator.process_index)
        if rank_state is None:
            raise FileNotFoundError(f"{folder} is a mid-epoch checkpoint without this rank's loop state")
        run.resumed = {"totals": rank_state["totals"], "rng": rng_states()}
    where = f"the end of epoch {progress.epochs_done}"
    if progress.step_in_epoch:
        where = f"epoch {progress.epochs_done + 1} micro-batch {progress.step_in_epoch}"
    run.accelerator.print(f"resumed from {folder} at {where}")
    return progress


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


def beat(run: Run, phase: str) -> None:
    """Progress for the hang watchdog (trainers/runtime/heartbeat.py; nothing unless a watchdog reads it)."""
    heartbeat.beat(run.run_dir, phase, run.accelerator.is_main_process)


def save_last(run: Run, progress: Progress, totals: torch.Tensor | None = None) -> None:
    """checkpoints/last with the progress and, mid-epoch, this rank's running loss totals (collective)."""
    beat(run, "checkpoint")
    rank_state = None if totals is None else {"totals": totals.detach().cpu()}
    checkpoint.save_last(run.accelerator, run.ckpt_dir, progress.as_dict(), rank_state)
    run.stop.saved()


def stop_decision(run: Run, epoch: int, done: int) -> tuple[bool, bool]:
    """(save, stop) at a step boundary, agreed by all ranks (any rank's signal counts)."""
    save, stop = run.stop.poll(epoch, done)
    if run.accelerator.num_processes > 1:
        flags = torch.tensor([float(save), float(stop)], device=run.accelerator.device)
        save, stop = (bool(flag > 0) for flag in run.accelerator.reduce(flags, reduction="sum").tolist())
    return save, stop


def step_boundary(run: Run, epoch: int, done: int, totals: torch.Tensor, progress: Progress) -> None:
    """Mid-epoch, after an optimizer step: save `last` if asked to, and stop if asked to."""
    save, stop = stop_decision(run, epoch, done)
    if not save:
        return
    run.train_s += time.perf_counter() - run.clock  # training time, not saving time
    progress.step_in_epoch = done
    save_last(run, progress, totals)
    progress.step_in_epoch = 0
    run.clock = time.perf_counter()
    run.accelerator.print(f"saved the state at epoch {epoch + 1} micro-batch {done}")
    if stop:
        run.stop.hand_over(f"epoch {epoch + 1} micro-batch {done}")


def start_epoch(run: Run, epoch: int, start: int) -> tuple[int, int]:
    """Select epoch `epoch`'s data order (less its first `start` micro-batches on every rank)
    and reseed; returns the epoch's whole length in micro-batches (max_steps_per_epoch
    applied) and the number of images skipped."""
    if start == 0:
        # Reseed everything from (seed, epoch): a resumed run replays the same randomness.
        set_seed(epoch_seed(run.cfg.seed, epoch, stream=2 + run.accelerator.process_index))
    if hasattr(run.data.train, "set_epoch"):
        # Accelerate's loader re-sets the sampler epoch from its own pass counter on every
        # iteration, a counter that restarts at 0 in a resumed process: set it explicitly
        # (and before the sampler's skip, which a change of epoch resets).
        run.data.train.set_epoch(epoch)
    run.data.train_sampler.set_epoch(epoch, skip=0)
    micro_batches = len(run.data.train)
    if run.cfg.max_steps_per_epoch is not None:
        micro_batches = min(micro_batches, run.cfg.max_steps_per_epoch * run.cfg.distributed.grad_accum_steps)
    processes = run.accelerator.num_processes
    # As build_data sized the loader; a global micro-batch is one per-device batch per rank.
    per_device = max(1, run.cfg.data.batch_size // (processes * run.cfg.distributed.grad_accum_steps))
    skipped = start * per_device * processes
    run.data.train_sampler.set_epoch(epoch, skip=skipped)
    return micro_batches, skipped


def train_one_epoch(run: Run, epoch: int, progress: Progress) -> float:
    """One pass over the training data (the rest of it, for an epoch resumed mid-way);
    returns the mean training loss of the whole epoch (without L2-SP)."""
    start, resumed, run.resumed = progress.step_in_epoch, run.resumed, None
    progress.step_in_epoch = 0  # the value of every later save but a mid-epoch one
    micro_batches, skipped = start_epoch(run, epoch, start)
    regimes.set_train_mode(run.model, run.cfg)
    accum = run.cfg.distributed.grad_accum_steps
    # DeepSpeed scales the loss by its accumulation steps itself and steps inside backward().
    deepspeed = uses_deepspeed(run.accelerator)
    levels = run.task.kind == "hierarchical"
    totals = _epoch_totals(run, resumed)
    run.clock = time.perf_counter()
    run.optimizer.zero_grad(set_to_none=True)
    beat(run, "compile")  # the first micro-batches: loader workers start, torch.compile and autotuning run
    for index, (images, targets) in enumerate(run.data.train, start=start):
        if index >= micro_batches:
            break
        faults.before_micro_batch(run.run_dir, index)  # tests only (ORCH_FAULT_INJECT); nothing otherwise
        if resumed is not None and index == start:
            # The RNG state saved at this boundary; creating the iterator drew from it since.
            set_rng_states(resumed["rng"])
        step_now = (index + 1) % accum == 0 or index + 1 == micro_batches
        if deepspeed:
            # Accelerate hands this to DeepSpeed as the accumulation boundary (and steps the
            # engine only there); left at its default True, every micro-batch would be a step.
            run.accelerator.sync_gradients = step_now
        # Gradients of the micro-batches in between stay local (no all-reduce) until the step.
        with nullcontext() if step_now or deepspeed else run.accelerator.no_sync(run.model):
            outputs = run.model(model_input(run, images)).float()
            loss = run.criterion(outputs, targets)
            objective = loss if run.l2sp is None else loss + run.l2sp()
            run.accelerator.backward(objective if deepspeed else objective / accum)
        if step_now:
            if run.cfg.optim.grad_clip_norm is not None:
                run.accelerator.clip_grad_norm_(run.model.parameters(), run.cfg.optim.grad_clip_norm)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        batch = [loss.detach().float(), totals.new_tensor(1.0)]
        if levels:
            last = cast(HierarchicalLoss, run.criterion).last_levels
            batch += [last["super"].float(), last["sub"].float()]
        batch += train_accuracies(run.task, outputs.detach(), targets)
        totals += torch.stack(batch) * len(targets)
        if run.tracking is not None:
            run.tracking.record(loss, step_now)
        beat(run, "step")
        if step_now and index + 1 < micro_batches:
            step_boundary(run, epoch, index + 1, totals, progress)
    run.accelerator.sync_gradients = True
    return _finish_epoch(run, totals, skipped)


def _epoch_totals(run: Run, resumed: dict[str, Any] | None) -> torch.Tensor:
    """The epoch's running sums: loss sum, image count, then (hierarchical) each level's loss sum,
    then the correct counts (single: top-1; hierarchical: per level; multilabel: none); those of
    the saved state when the epoch resumes mid-way."""
    width = {"hierarchical": 6, "single": 3}.get(run.task.kind, 2)
    totals = torch.zeros(width, device=run.accelerator.device)
    if resumed is not None:
        saved = resumed["totals"].to(run.accelerator.device)
        # A mid-epoch state saved before train accuracies were counted: their sums restart as NaN.
        totals = torch.cat([saved, saved.new_full((width - len(saved),), math.nan)]) if len(saved) < width else saved
    return totals


def _finish_epoch(run: Run, totals: torch.Tensor, skipped: int) -> float:
    """Sum the epoch's totals over processes into the train levels and timing; the mean loss."""
    loss_sum, images_seen, *sums = run.accelerator.reduce(totals, reduction="sum").tolist()
    names = {
        "hierarchical": ["train_super_loss", "train_sub_loss", "train_super.top1", "train_sub.top1"],
        "single": ["train_top1"],
    }.get(run.task.kind, [])
    run.train_levels = {
        name: value / images_seen if images_seen > 0 else math.nan for name, value in zip(names, sums, strict=True)
    }
    # tolist() waited for the device, so the time below covers the work, not only its queueing.
    run.train_s += time.perf_counter() - run.clock
    run.train_images += int(images_seen) - skipped  # timing counts what this process trained
    return loss_sum / images_seen if images_seen > 0 else math.nan


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


def model_input(run: Run, images: torch.Tensor) -> torch.Tensor:
    """Normalised images in the model's dtype (DeepSpeed half precision) and memory layout (channels_last)."""
    images = run.normalize(images)
    if run.input_dtype is not None:
        images = images.to(run.input_dtype)
    return images.contiguous(memory_format=torch.channels_last) if run.cfg.channels_last else images


@torch.no_grad()
def predict(run: Run, loader: DataLoader[Any]) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Outputs [n, task outputs], targets and mean loss (the training criterion) over a split;
    a hierarchical run's per-level losses are left in `run.eval_levels`."""
    share_buffers(run.accelerator, run.model)
    run.model.eval()
    all_outputs: list[torch.Tensor] = []
    all_targets: list[torch.Tensor] = []
    for images, targets in loader:
        # gather_for_metrics drops the samples padded in to even out the last batch.
        outputs, targets = run.accelerator.gather_for_metrics((run.model(model_input(run, images)), targets))
        all_outputs.append(outputs.float().cpu())
        all_targets.append(targets.cpu())
    if not all_outputs:
        return np.zeros((0, run.task.num_outputs)), np.zeros(0, dtype=np.int64), None
    outputs_t, targets_t = torch.cat(all_outputs), torch.cat(all_targets)
    criterion = copy.deepcopy(run.criterion).cpu()
    loss = float(criterion(outputs_t, targets_t))
    run.eval_levels = level_losses(criterion, outputs_t, targets_t)
    return outputs_t.numpy(), targets_t.numpy(), loss


def evaluate_split(run: Run, loader: DataLoader[Any]) -> Evaluation:
    """Metrics (and tables) of the current model on one split."""
    beat(run, "eval")
    run.eval_levels = None
    outputs, targets, loss = predict(run, loader)
    return evaluate_outputs(run.task, outputs, targets, loss, run.cfg.threshold, run.eval_levels)


@torch.no_grad()
def evaluate_raw(run: Run, loader: DataLoader[Any]) -> Evaluation:
    """class_map_scoring raw: the checkpoint's own argmax over all its classes, against each
    image's class mapped to the checkpoint's first index for it (report 001 scores ImageNet's
    1000-way predictions this way). Scalars only: a 1000 x 1000 confusion matrix is no table."""
    beat(run, "eval")
    net = run.accelerator.unwrap_model(run.model)
    first_index = net.output_map.index[:, 0].cpu()
    net.eval()
    outputs, targets = [], []
    for images, labels in loader:
        logits, labels = run.accelerator.gather_for_metrics((net.backbone(model_input(run, images)), labels))
        outputs.append(logits.float().cpu())
        targets.append(first_index[labels.cpu()])
    if not outputs:
        return Evaluation({"n_images": 0})
    logits_t, labels_t = torch.cat(outputs), torch.cat(targets)
    names = [str(i) for i in range(logits_t.shape[1])]
    scalars = level_metrics(logits_t.numpy(), labels_t.numpy(), names).scalars
    scalars["loss"] = float(torch.nn.functional.cross_entropy(logits_t, labels_t))
    return Evaluation(scalars)


def evaluate(run: Run, loader: DataLoader[Any]) -> dict[str, Any]:
    """Metric scalars of the current model on one split."""
    return evaluate_split(run, loader).scalars


def history_row(epoch: int, train_loss: float, val: dict[str, Any], lr: float, run: Run) -> dict[str, Any]:
    """One history.csv row: losses, the main validation metrics, lr."""
    row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss, **run.train_levels}
    for name in ("val_loss", "val_top1", "val_macro_f1", *run.history_extra):
        if not name.startswith("val_"):
            continue
        value = lookup(val, name.removeprefix("val_"))
        row[name] = math.nan if value is None else value
    row["lr"] = lr
    return row


def run_epoch(run: Run, epoch: int, progress: Progress) -> None:
    """Train + validate one epoch, then save best (if improved), history and last, in that
    order, so `last` never points at a best or a history row that is not on disk yet."""
    started = time.perf_counter()
    lr = float(run.optimizer.param_groups[0]["lr"])
    train_s, train_images = run.train_s, run.train_images
    train_loss = train_one_epoch(run, epoch, progress)
    train_s, train_images = run.train_s - train_s, run.train_images - train_images
    val = evaluate(run, run.data.val)
    run.scheduler.step()
    value = run.selection.value(val)
    if run.selection.improved(value, progress.best_value):
        progress.best_epoch = epoch + 1
        progress.best_value = None if math.isnan(value) else value
        progress.epochs_since_best = 0
        save_best(run, epoch + 1, progress.best_value)
    else:
        progress.epochs_since_best += 1
        patience = run.selection.patience
        progress.stopped_early = patience is not None and progress.epochs_since_best >= patience
    progress.epochs_done = epoch + 1
    row = history_row(epoch, train_loss, val, lr, run)
    row["epoch_s"] = round(time.perf_counter() - started, 3)
    row["train_images_per_s"] = round(train_images / train_s, 1) if train_s > 0 else math.nan
    run.history.append(row)
    if run.tracking is not None:
        run.tracking.log_steps(epoch, lr)
        end = (epoch + 1) * run.tracking.steps_per_epoch
        run.tracking.log_metrics("val", val, end)
        run.tracking.log_metrics("epoch", {k: v for k, v in row.items() if not k.startswith("val")}, end)
    if run.accelerator.is_main_process:
        write_history(run.run_dir, run.history, run.history_extra)
    save_last(run, progress)
    shown = {name: row[name] for name in ("val_loss", "val_top1", run.selection.metric)}
    run.accelerator.print(
        f"epoch {epoch + 1}/{run.cfg.epochs} train_loss {train_loss:.4f} "
        + " ".join(f"{name} {value:.4f}" for name, value in shown.items())
        + f" ({row['epoch_s']:.1f} s)"
        + (f"; no improvement for {progress.epochs_since_best} epochs: stopping" if progress.stopped_early else "")
    )


def stop_after_epoch(run: Run, progress: Progress) -> None:
    """A stop requested during validation or the epoch-end save: hand over now that `last`
    is saved (not after the final epoch: the run is about to finish anyway)."""
    if progress.epochs_done >= run.cfg.epochs or progress.stopped_early:
        return
    _, stop = stop_decision(run, progress.epochs_done, 0)
    if stop:
        run.accelerator.print(f"stopping on request after epoch {progress.epochs_done} (state saved)")
        run.stop.hand_over(f"the end of epoch {progress.epochs_done}")


def save_best(run: Run, epoch: int, value: float | None) -> None:
    """Save the model as `best`, with what eval/predict need to rebuild it (config, task)."""
    beat(run, "checkpoint")
    state = {
        "epoch": epoch,
        "metric": run.selection.metric,
        "value": value,
        "task": run.task.as_dict(),
        "config": run.cfg.model_dump(mode="json"),
    }
    checkpoint.save_best(run.accelerator, run.model, run.ckpt_dir, state)


def write_tables(run_dir: Path, evaluation: Evaluation) -> list[str]:
    """Each table of an evaluation as <name>.csv in `run_dir`; the file names."""
    names = []
    for name, rows in evaluation.tables.items():
        rundir.write_text(run_dir / f"{name}.csv", table_csv(rows))
        names.append(f"{name}.csv")
    return names


def skipped_images(run: Run) -> dict[str, int]:
    """Unreadable images skipped per split, summed over all processes (each counts its own)."""
    counts = run.data.skipped_images()
    if not counts or run.accelerator.num_processes == 1:
        return counts
    names = sorted(counts)
    local = torch.tensor([counts[name] for name in names], device=run.accelerator.device)
    total = run.accelerator.reduce(local, reduction="sum")
    return {name: int(value) for name, value in zip(names, total.tolist(), strict=True)}


def load_model_for_test(run: Run, progress: Progress) -> tuple[dict[str, Any], int]:
    """Put the model `checkpoint_for_test` names in place: the best checkpoint's weights, or the
    last epoch's (already in the model, trained or resumed from `last`). Returns the best
    checkpoint's state and the epoch whose model is tested."""
    if run.cfg.checkpoint_for_test == "last" and regimes.trains(run.cfg):
        folder = checkpoint.find_complete(run.ckpt_dir, checkpoint.BEST)
        if folder is None:
            raise FileNotFoundError(f"no finished best checkpoint in {run.ckpt_dir}")
        return checkpoint.read_state(folder), progress.epochs_done
    best = checkpoint.load_best(run.accelerator, run.model, run.ckpt_dir)
    return best, best["epoch"]


def final_metrics(run: Run, progress: Progress) -> dict[str, Any]:
    """Test and validation metrics of the model `checkpoint_for_test` names (the best checkpoint
    or the last epoch's), with complexity and provenance."""
    best, tested_epoch = load_model_for_test(run, progress)
    counted = complexity(run.cfg, run.task)
    counted["params_trainable"] = run.n_trainable
    if counted["params"] != run.n_params:  # build_model is shared: a bug, but not worth the run's results
        log.error("complexity counted %d params, the trained model has %d", counted["params"], run.n_params)
        counted["params_trained"] = run.n_params
    raw = run.cfg.model.class_map_scoring == "raw"
    test = evaluate_raw(run, run.data.test) if raw else evaluate_split(run, run.data.test)
    files = write_tables(run.run_dir, test) if run.accelerator.is_main_process else []
    return {
        "test": test.scalars,
        "val": evaluate(run, run.data.val),
        "task": run.task.kind,
        "regime": run.cfg.regime,
        "best_epoch": best["epoch"],
        "tested": {"checkpoint": run.cfg.checkpoint_for_test, "epoch": tested_epoch},
        "best": {"metric": run.selection.metric, "mode": run.selection.mode, "value": best.get("value")},
        "epochs_trained": progress.epochs_done,
        "stopped_early": progress.stopped_early,
        "tables": files,
        "complexity": counted,
        "provenance": provenance(run.accelerator.device, run.accelerator.num_processes),
        "preprocessing": preprocessing_record(run.cfg.data, run.cfg.model.backbone),
        "loss_class_weights": run.cfg.loss.class_weights,
        "parallel": layout(run.accelerator, run.cfg),
        "data": {"skipped_images": skipped_images(run)},
        "timing": {
            "wall_s": None,  # filled in by run_training, which saw the start
            "train_images": run.train_images,
            "train_images_per_s": (round(run.train_images / run.train_s, 1) if run.train_s > 0 else None),
        },
    }


def run_training(
    cfg: TrainConfig, run_dir: Path, metadata: dict[str, Any] | None = None, stop: StopRequest | None = None
) -> dict[str, Any]:
    """Train one config into `run_dir` (resuming from checkpoints/last if present) and
    return the metrics dict it also writes to metrics.json. `metadata`: the plan's facts
    about the run (run_id, name, sweep, ablation, backbone, dataset, seed) for the trackers.

    While it trains, USR2 (or what `stop` requests) saves the state at the next step
    boundary and then stops the run (see trainers.runtime.preemption).
    """
    if os.environ.get(TEST_TRAINING_GUARD):  # only the test suite sets it, for its quick (unmarked) tests
        raise RuntimeError(f"{os.environ[TEST_TRAINING_GUARD]} trains: move it to tests/training or mark it slow")
    started = time.perf_counter()
    host_reset = memory.reset_host_peak()  # before the run builds anything: its peak, not the worker's
    run_dir = Path(run_dir)
    run = build_run(cfg, run_dir, metadata)
    memory.reset_gpu_peak(run.accelerator.device)
    run.stop = stop or StopRequest(checkpoint_every_min=cfg.checkpoint_every_min)
    run.stop.install()
    try:
        progress = resume(run)
        run.history = read_history(run_dir, progress.epochs_done)
        if not regimes.trains(cfg):
            # Nothing to train: the loaded checkpoint is the best (epoch 0) and the history is empty.
            if checkpoint.find_complete(run.ckpt_dir, checkpoint.BEST) is None:
                progress.best_epoch = 0
                save_best(run, 0, None)
            if run.accelerator.is_main_process:
                write_history(run_dir, [], run.history_extra)
        else:
            for epoch in range(progress.epochs_done, cfg.epochs):
                if progress.stopped_early:
                    break
                run_epoch(run, epoch, progress)
                stop_after_epoch(run, progress)
        metrics = final_metrics(run, progress)
        if metadata and metadata.get("run_id"):
            # Names the run it belongs to: the reader refuses a copy of it in another run's folder.
            metrics = {"run_id": str(metadata["run_id"]), **metrics}
        metrics["timing"]["wall_s"] = round(time.perf_counter() - started, 3)
        metrics["timing"].update(peak_memory(run.accelerator, host_reset))  # timing: what varies between reruns
        metrics = contract.metrics_to_write(metrics)  # checked against the contract, with its version
        if run.accelerator.is_main_process:
            rundir.write_json(run_dir / rundir.METRICS, metrics)
        if run.tracking is not None:
            final_step = progress.epochs_done * run.tracking.steps_per_epoch
            run.tracking.log_metrics("test", metrics["test"], final_step)
            run.tracking.log_metrics("best_val", metrics["val"], final_step)
        run.accelerator.wait_for_everyone()
    finally:
        run.stop.uninstall()
        if run.tracking is not None:
            run.tracking.finish()
        release_accelerator(run.accelerator)
    return metrics


def peak_memory(accelerator: Accelerator, host_reset: bool) -> dict[str, Any]:
    """The run's peak memory over all its processes (a collective: every rank calls it)."""
    local = torch.tensor(memory.local_peaks(accelerator.device, host_reset), device=accelerator.device)
    gathered = accelerator.gather(local[None]).reshape(-1, local.numel())
    return memory.summarize(gathered.cpu().tolist())


def release_accelerator(accelerator: Accelerator) -> None:
    """Forget Accelerate's process-wide singleton state after a single-process run, so a
    next run in the same process (debug executor, tests) may pick another precision.
    Distributed runs keep it: their process group lives as long as the process."""
    if accelerator.num_processes == 1:
        AcceleratorState._reset_state(reset_partial_state=True)
