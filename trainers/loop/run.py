"""The training loop of one run: build, (resume,) train and validate per epoch, then test
the best checkpoint (or the last epoch's model, `checkpoint_for_test: last`) and write
metrics.json and its tables.

The state travels explicitly: `build.Parts` (what the run trains with, built once), then
`epoch.LoopState` (resume.Progress, history rows, timing) that each `run_epoch` returns anew.

Resume contract: everything random in epoch e derives from (seed, e) (see epoch.py).
`checkpoints/last` holds model, optimizer, scheduler, scaler and every rank's RNG state, saved at
each epoch end and, mid-epoch, at an optimizer-step boundary when a stop is requested (USR2) or
`checkpoint_every_min` passed, with the micro-batches consumed so far and each rank's running
loss totals (resume.py). A run killed at any step boundary and restarted ends with exactly the
metrics and history of an uninterrupted run (on CPU; see docs/ for GPU kernels).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from trainers import contract, rundir
from trainers.config import TrainConfig
from trainers.loop import checkpoint
from trainers.loop.build import Parts, build_parts, release_accelerator
from trainers.loop.epoch import LoopState, run_epoch
from trainers.loop.evaluate import final_metrics
from trainers.loop.history import read_history, write_history
from trainers.loop.resume import finish_last, resume, save_best, stop_after_epoch
from trainers.model import regimes
from trainers.runtime import memory
from trainers.runtime.preemption import StopRequest

TEST_TRAINING_GUARD = "ORCHESTRATE_TEST_FORBID_TRAINING"
"""Set by the test suite for its quick tests only (tests/conftest.py): training then refuses to start."""


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
    parts = build_parts(cfg, run_dir, metadata, stop)
    memory.reset_gpu_peak(parts.accelerator.device)
    parts.stop.install()
    try:
        state = train(parts)
        metrics = final_metrics(parts, state.progress)
        if metadata and metadata.get("run_id"):
            # Names the run it belongs to: the reader refuses a copy of it in another run's folder.
            metrics = {"run_id": str(metadata["run_id"]), **metrics}
        metrics["timing"] = {
            "wall_s": round(time.perf_counter() - started, 3),
            "train_images": state.timing.train_images,
            "train_images_per_s": _rate(state),
            **peak_memory(parts.accelerator, host_reset),  # timing: what varies between reruns
        }
        metrics = write_metrics(parts, metrics, state.progress.epochs_done)
    finally:
        parts.stop.uninstall()
        if parts.trackers is not None:
            parts.trackers.finish()
        release_accelerator(parts.accelerator)
    return metrics


def _rate(state: LoopState) -> float | None:
    """Training images per second of this call (None when it trained nothing)."""
    timing = state.timing
    return round(timing.train_images / timing.train_s, 1) if timing.train_s > 0 else None


def train(parts: Parts) -> LoopState:
    """Resume, then every epoch left (none for a regime that trains nothing): the loop's last state."""
    progress, mid = resume(parts)
    progress = progress.started(parts.accelerator.mixed_precision)
    state = LoopState(progress=progress, history=tuple(read_history(parts.run_dir, progress.epochs_done)))
    if not regimes.trains(parts.cfg):
        # Nothing to train: the loaded checkpoint is the best (epoch 0) and the history is empty.
        if checkpoint.find_complete(parts.ckpt_dir, checkpoint.BEST) is None:
            state = dataclasses.replace(state, progress=dataclasses.replace(progress, best_epoch=0))
            save_best(parts, 0, None)
        if parts.accelerator.is_main_process:
            write_history(parts.run_dir, [], parts.history_extra)
        return state
    for epoch in range(progress.epochs_done, parts.cfg.epochs):
        if state.progress.stopped_early:
            break
        state = run_epoch(parts, epoch, state, mid)
        mid = None  # a mid-epoch state belongs to the first epoch only
        stop_after_epoch(parts, state.progress)
    finish_last(parts)  # before the test loads `best` into the model: `last` gets the final epoch's weights
    return state


def write_metrics(parts: Parts, metrics: dict[str, Any], epochs_done: int) -> dict[str, Any]:
    """Check `metrics` against the contract, write metrics.json (rank 0) and log it to the trackers;
    what was written (collective: every rank waits for the others)."""
    metrics = contract.metrics_to_write(metrics)  # checked against the contract, with its version
    if parts.accelerator.is_main_process:
        rundir.write_json(parts.run_dir / rundir.METRICS, metrics)
    if parts.trackers is not None:
        final_step = epochs_done * parts.trackers.steps_per_epoch
        parts.trackers.log_metrics("test", metrics["test"], final_step)
        parts.trackers.log_metrics("best_val", metrics["val"], final_step)
    parts.accelerator.wait_for_everyone()
    return metrics


def peak_memory(accelerator: Accelerator, host_reset: bool) -> dict[str, Any]:
    """The run's peak memory over all its processes (a collective: every rank calls it)."""
    local = torch.tensor(memory.local_peaks(accelerator.device, host_reset), device=accelerator.device)
    gathered = accelerator.gather(local[None]).reshape(-1, local.numel())
    return memory.summarize(gathered.cpu().tolist())
