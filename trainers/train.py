"""The training loop of one run: build, (resume,) train and validate per epoch, then test
the best checkpoint and write metrics.json.

Resume contract: everything random in epoch e (data order, augmentation, dropout)
derives from (seed, e), and model/optimizer/scheduler state comes from
checkpoints/last, so a run killed after any epoch and restarted ends with exactly the
metrics of an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from torch import nn
from torch.nn import functional as F
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from trainers import checkpoint, rundir
from trainers.complexity import complexity
from trainers.config import TrainConfig
from trainers.data import DataBundle, build_data, epoch_seed
from trainers.history import read_history, write_history
from trainers.metrics import classification_metrics
from trainers.models import build_model, check_pretrained_path, count_params
from trainers.optim import build_optimizer, build_scheduler
from trainers.provenance import provenance


@dataclass
class Progress:
    """What survives an interruption (saved as trainer_state.json in checkpoints/last)."""

    epochs_done: int = 0
    best_epoch: int | None = None
    best_val_top1: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "epochs_done": self.epochs_done,
            "best_epoch": self.best_epoch,
            "best_val_top1": self.best_val_top1,
        }


@dataclass
class Run:
    """The prepared objects of one run."""

    cfg: TrainConfig
    run_dir: Path
    accelerator: Accelerator
    data: DataBundle
    model: nn.Module
    optimizer: Optimizer
    scheduler: LRScheduler
    n_params: int
    train_images: int = 0
    train_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ckpt_dir(self) -> Path:
        """checkpoints/ of this run."""
        return checkpoint.checkpoint_dir(self.run_dir)


def build_accelerator(cfg: TrainConfig) -> Accelerator:
    """Accelerator on whatever device is there; bf16 autocast on GPU when precision=auto."""
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "no"
    # The schedule is per epoch: stepping it once per optimizer step (Accelerate's
    # default for prepared schedulers) would be wrong.
    return Accelerator(mixed_precision=precision, step_scheduler_with_optimizer=False)


def build_run(cfg: TrainConfig, run_dir: Path) -> Run:
    """Accelerator, data, model, optimizer and schedule, all prepared for the device(s)."""
    check_pretrained_path(cfg.model)  # fail before any data is read
    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    accelerator = build_accelerator(cfg)
    set_seed(cfg.seed)  # weight init of the head (and backbone when from scratch)
    data = build_data(cfg.data, cfg.seed, accelerator.num_processes)
    model = build_model(cfg.model, data.splits.num_classes)
    n_params = count_params(model)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs)
    model, optimizer, data.train, data.val, data.test, scheduler = accelerator.prepare(
        model, optimizer, data.train, data.val, data.test, scheduler
    )
    return Run(cfg, run_dir, accelerator, data, model, optimizer, scheduler, n_params)


def resume(run: Run) -> Progress:
    """Load checkpoints/last when it exists; the progress to continue from."""
    folder = checkpoint.find_complete(run.ckpt_dir, checkpoint.LAST)
    if folder is None:
        return Progress()
    run.accelerator.load_state(str(folder))
    progress = Progress(**checkpoint.read_state(folder))
    run.accelerator.print(f"resumed from {folder} after epoch {progress.epochs_done}")
    return progress


def train_one_epoch(run: Run, epoch: int) -> float:
    """One pass over the training data; returns the mean training loss."""
    # Reseed everything from (seed, epoch): a resumed run replays the same randomness.
    set_seed(epoch_seed(run.cfg.seed, epoch, stream=2 + run.accelerator.process_index))
    run.data.train_sampler.set_epoch(epoch)
    if hasattr(run.data.train, "set_epoch"):
        # Accelerate's loader re-sets the sampler epoch from its own pass counter on every
        # iteration, a counter that restarts at 0 in a resumed process: set it explicitly.
        run.data.train.set_epoch(epoch)
    run.model.train()
    totals = torch.zeros(2, device=run.accelerator.device)  # loss sum, image count
    started = time.perf_counter()
    for step, (images, labels) in enumerate(run.data.train):
        if run.cfg.max_steps_per_epoch is not None and step >= run.cfg.max_steps_per_epoch:
            break
        loss = F.cross_entropy(run.model(images), labels)
        run.optimizer.zero_grad(set_to_none=True)
        run.accelerator.backward(loss)
        run.optimizer.step()
        totals += torch.stack([loss.detach().float() * len(labels), totals.new_tensor(len(labels))])
    totals = run.accelerator.reduce(totals, reduction="sum")
    run.train_s += time.perf_counter() - started
    run.train_images += int(totals[1].item())
    return float(totals[0] / totals[1]) if totals[1] > 0 else math.nan


@torch.no_grad()
def predict(run: Run, loader: DataLoader[Any]) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Scores [n, classes], labels [n] and mean cross-entropy over a whole split."""
    run.model.eval()
    all_logits: list[torch.Tensor] = []
    all_labels: list[torch.Tensor] = []
    for images, labels in loader:
        # gather_for_metrics drops the samples padded in to even out the last batch.
        logits, labels = run.accelerator.gather_for_metrics((run.model(images), labels))
        all_logits.append(logits.float().cpu())
        all_labels.append(labels.cpu())
    if not all_logits:
        return np.zeros((0, run.data.splits.num_classes)), np.zeros(0, dtype=np.int64), None
    logits_t, labels_t = torch.cat(all_logits), torch.cat(all_labels)
    loss = float(F.cross_entropy(logits_t, labels_t))
    return logits_t.numpy(), labels_t.numpy(), loss


def evaluate(run: Run, loader: DataLoader[Any]) -> dict[str, Any]:
    """Classification metrics of the current model on one split."""
    scores, labels, loss = predict(run, loader)
    return classification_metrics(scores, labels, run.data.splits.num_classes, loss)


def run_epoch(run: Run, epoch: int, progress: Progress) -> None:
    """Train + validate one epoch, then save best (if improved), history and last, in that
    order, so `last` never points at a best or a history row that is not on disk yet."""
    started = time.perf_counter()
    lr = float(run.optimizer.param_groups[0]["lr"])
    train_loss = train_one_epoch(run, epoch)
    val = evaluate(run, run.data.val)
    run.scheduler.step()
    val_top1 = val.get("top1", math.nan)
    # Ties keep the earlier epoch; without a validation split the latest epoch is best.
    if math.isnan(val_top1) or progress.best_val_top1 is None or val_top1 > progress.best_val_top1:
        progress.best_epoch = epoch + 1
        progress.best_val_top1 = None if math.isnan(val_top1) else val_top1
        best = {"epoch": epoch + 1, "val_top1": progress.best_val_top1}
        checkpoint.save_best(run.accelerator, run.model, run.ckpt_dir, best)
    progress.epochs_done = epoch + 1
    row = {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "val_loss": val.get("loss", math.nan),
        "val_top1": val_top1,
        "lr": lr,
        "epoch_s": round(time.perf_counter() - started, 3),
    }
    run.history.append(row)
    if run.accelerator.is_main_process:
        write_history(run.run_dir, run.history)
    checkpoint.save_last(run.accelerator, run.ckpt_dir, progress.as_dict())
    run.accelerator.print(
        f"epoch {epoch + 1}/{run.cfg.epochs} train_loss {train_loss:.4f} "
        f"val_loss {row['val_loss']:.4f} val_top1 {val_top1:.4f} ({row['epoch_s']:.1f} s)"
    )


def final_metrics(run: Run, progress: Progress) -> dict[str, Any]:
    """Test and validation metrics of the best checkpoint, with complexity and provenance."""
    best = checkpoint.load_best(run.accelerator, run.model, run.ckpt_dir)
    cfg = run.cfg
    counted = complexity(cfg.model, run.data.splits.num_classes, cfg.data.image_size_px)
    counted["params"] = run.n_params  # the trained model itself (same architecture as counted)
    counted["params_m"] = run.n_params / 1e6
    return {
        "test": evaluate(run, run.data.test),
        "val": evaluate(run, run.data.val),
        "best_epoch": best["epoch"],
        "epochs_trained": progress.epochs_done,
        "complexity": counted,
        "provenance": provenance(run.accelerator.device, run.accelerator.num_processes),
        "timing": {
            "wall_s": None,  # filled in by run_training, which saw the start
            "train_images": run.train_images,
            "train_images_per_s": (round(run.train_images / run.train_s, 1) if run.train_s > 0 else None),
        },
    }


def run_training(cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Train one config into `run_dir` (resuming from checkpoints/last if present) and
    return the metrics dict it also writes to metrics.json."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    run = build_run(cfg, run_dir)
    try:
        progress = resume(run)
        run.history = read_history(run_dir, progress.epochs_done)
        for epoch in range(progress.epochs_done, cfg.epochs):
            run_epoch(run, epoch, progress)
        metrics = final_metrics(run, progress)
        metrics["timing"]["wall_s"] = round(time.perf_counter() - started, 3)
        if run.accelerator.is_main_process:
            rundir.write_json(run_dir / rundir.METRICS, metrics)
        run.accelerator.wait_for_everyone()
    finally:
        release_accelerator(run.accelerator)
    return metrics


def release_accelerator(accelerator: Accelerator) -> None:
    """Forget Accelerate's process-wide singleton state after a single-process run, so a
    next run in the same process (debug executor, tests) may pick another precision.
    Distributed runs keep it: their process group lives as long as the process."""
    if accelerator.num_processes == 1:
        AcceleratorState._reset_state(reset_partial_state=True)
