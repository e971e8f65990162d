"""Everything one run trains with, built once and prepared for the device(s): `Parts`.

`Parts` is frozen: the loop never swaps one of its objects for another (the objects themselves,
model weights, optimizer state, the stop request, change as they train). What changes from epoch
to epoch travels separately (resume.Progress, epoch.LoopState).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from trainers import rules, rundir
from trainers.config import TrainConfig
from trainers.data.loaders import DataBundle, build_data
from trainers.data.transforms import BatchNormalize, resolve_preprocessing, stats
from trainers.loop import checkpoint
from trainers.loop.early_stopping import Selection
from trainers.loop.optim import build_optimizer, build_scheduler
from trainers.model import regimes
from trainers.model.build import build_model, check_pretrained_path, count_params
from trainers.model.l2sp import L2SP
from trainers.model.losses import build_criterion
from trainers.model.tasks import TaskSpec, task_of
from trainers.runtime import heartbeat, kernels, memory, tracking
from trainers.runtime.distributed import (
    build_accelerator,
    deepspeed_config,
    match_buffers,
    model_input_dtype,
    run_precision,
    unwrap,
)
from trainers.runtime.preemption import StopRequest
from trainers.runtime.votes import Votes

# Hierarchical runs' extra history.csv columns: each level's loss (with the run's class weights,
# before w_super / w_sub) and accuracy; train accuracies are of the augmented training batches in
# train mode, as the reports' own loops count them.
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


@dataclass(frozen=True, kw_only=True)
class Parts:
    """The prepared objects of one run."""

    cfg: TrainConfig
    """The run's config, preprocessing resolved (the checkpoint's mean/std and resize filter)."""
    run_dir: Path
    accelerator: Accelerator
    data: DataBundle
    task: TaskSpec
    model: nn.Module
    criterion: nn.Module
    optimizer: Optimizer
    scheduler: LRScheduler
    selection: Selection
    """Which validation metric picks the best epoch, and when to stop."""
    n_params: int
    n_trainable: int
    l2sp: L2SP | None
    input_dtype: torch.dtype | None
    """Cast images to this before the model (DeepSpeed runs bf16/fp16 models without autocast)."""
    normalize: BatchNormalize
    """uint8 loader batches -> normalised float, on the device."""
    stop: StopRequest
    """USR2 and `checkpoint_every_min`: asks the loop to save (and stop) at a step boundary."""
    votes: Votes
    """The ranks' agreement on the stop's requests (read a boundary late: no device wait per step)."""
    trackers: tracking.Tracking | None
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
    # Before anything else starts: a node that cannot go on in the run's precision refuses here.
    precision = run_precision(cfg, checkpoint.recorded_precision(checkpoint.checkpoint_dir(run_dir)))
    facts = tracking.run_facts(run_dir, metadata)
    accelerator = build_accelerator(cfg, tracking.build_trackers(cfg, run_dir, facts), precision)
    kernels.choose_kernels(cfg.deterministic, on_gpu=accelerator.device.type == "cuda")
    set_seed(cfg.seed)  # weight init of the heads (and backbone when from scratch)
    return accelerator, facts


def _model(cfg: TrainConfig, task: TaskSpec) -> nn.Module:
    """The model in its regime, memory layout and (in place) compiled."""
    model = build_model(cfg, task)
    regimes.apply_regime(model, cfg)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.compile:
        # In place (nn.Module.compile): parameter names, state dicts and checkpoints stay those
        # of the plain model, so eval/predict and resume read them as usual.
        model.compile()
    return model


def build_parts(
    cfg: TrainConfig, run_dir: Path, metadata: dict[str, Any] | None = None, stop: StopRequest | None = None
) -> Parts:
    """Accelerator, data, model, loss, optimizer and schedule, all prepared for the device(s);
    `metadata` (the plan's run id, name, sweep, ablation...) names and tags tracker runs; `stop`
    defaults to USR2 and the config's `checkpoint_every_min`."""
    accelerator, facts = _start_process(cfg, run_dir, metadata)
    # The checkpoint's own mean/std and resize filter (data.normalize/interpolation: checkpoint).
    cfg = cfg.model_copy(update={"data": resolve_preprocessing(cfg.data, cfg.model.backbone)})
    data = build_data(cfg.data, cfg.seed, accelerator.num_processes * cfg.distributed.grad_accum_steps)
    if accelerator.is_main_process:
        data.write_split(run_dir)  # which images each split holds, to check reproducibility later
    task = task_of(data.splits)
    selection = Selection.from_config(cfg.early_stopping, task.kind)
    model = _model(cfg, task)
    n_params = count_params(model)
    # pretrained_eval trains nothing, though its checkpoint head keeps requires_grad (an optimizer
    # needs a parameter): its params_trainable was that head's size, not 0.
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) if regimes.trains(cfg) else 0
    criterion = build_criterion(cfg.loss, task, data.splits.train.targets)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs)
    model, optimizer, data.train, data.val, data.test, scheduler = accelerator.prepare(
        model, optimizer, data.train, data.val, data.test, scheduler
    )
    input_dtype = model_input_dtype(accelerator)
    if input_dtype is not None:
        match_buffers(unwrap(accelerator, model), input_dtype)
    engine_config = deepspeed_config(accelerator)
    if engine_config is not None and accelerator.is_main_process:
        rundir.write_json(run_dir / rundir.DEEPSPEED_CONFIG, engine_config)  # what ran, not only what was asked
    return Parts(
        cfg=cfg,
        run_dir=run_dir,
        accelerator=accelerator,
        data=data,
        task=task,
        model=model,
        criterion=criterion.to(accelerator.device),
        optimizer=optimizer,
        scheduler=scheduler,
        selection=selection,
        n_params=n_params,
        n_trainable=n_trainable,
        # Anchored now: after the pretrained weights are loaded, before a resume overwrites them.
        l2sp=L2SP(unwrap(accelerator, model), cfg.loss.l2sp) if cfg.loss.l2sp > 0 else None,
        input_dtype=input_dtype,
        normalize=BatchNormalize(*stats(cfg.data)),
        stop=stop or StopRequest(checkpoint_every_min=cfg.checkpoint_every_min),
        votes=Votes(accelerator),
        trackers=_trackers(cfg, run_dir, accelerator, data.train, facts),
    )


def _trackers(
    cfg: TrainConfig, run_dir: Path, accelerator: Accelerator, train: DataLoader[Any], facts: dict[str, Any]
) -> tracking.Tracking | None:
    """The run's experiment trackers, started; None when it logs to none."""
    if not cfg.trackers:
        return None
    trackers = tracking.Tracking(accelerator, steps_per_epoch(cfg, train))
    trackers.start(cfg, run_dir, facts)
    return trackers


def micro_batches_per_epoch(cfg: TrainConfig, train: DataLoader[Any]) -> int:
    """Training batches each process runs per epoch (max_steps_per_epoch caps them)."""
    micro = len(train)
    if cfg.max_steps_per_epoch is not None:
        micro = min(micro, cfg.max_steps_per_epoch * cfg.distributed.grad_accum_steps)
    return micro


def steps_per_epoch(cfg: TrainConfig, train: DataLoader[Any]) -> int:
    """Optimizer steps per epoch (a short last accumulation still steps)."""
    return math.ceil(micro_batches_per_epoch(cfg, train) / cfg.distributed.grad_accum_steps)


def model_input(parts: Parts, images: torch.Tensor) -> torch.Tensor:
    """Normalised images in the model's dtype (DeepSpeed half precision) and memory layout (channels_last)."""
    images = parts.normalize(images)
    if parts.input_dtype is not None:
        images = images.to(parts.input_dtype)
    return images.contiguous(memory_format=torch.channels_last) if parts.cfg.channels_last else images


def beat(parts: Parts, phase: str) -> None:
    """Progress for the hang watchdog (trainers/runtime/heartbeat.py; nothing unless a watchdog reads it)."""
    heartbeat.beat(parts.run_dir, phase, parts.accelerator.is_main_process)


def release_accelerator(accelerator: Accelerator) -> None:
    """Forget Accelerate's process-wide singleton state after a single-process run, so a
    next run in the same process (debug executor, tests) may pick another precision.
    Distributed runs keep it: their process group lives as long as the process."""
    if accelerator.num_processes == 1:
        AcceleratorState._reset_state(reset_partial_state=True)
