"""Scoring the model: a split's outputs and metrics, and a finished run's metrics.json content
(test and validation metrics of the model `checkpoint_for_test` names, complexity, provenance)."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from trainers import rundir
from trainers.data.loaders import readable_only
from trainers.data.transforms import preprocessing_record
from trainers.loop import checkpoint
from trainers.loop.build import Parts, beat, model_input
from trainers.loop.metrics import Evaluation, evaluate_outputs, level_metrics, table_csv
from trainers.loop.resume import Progress, stop_in_final_evaluation
from trainers.model import regimes
from trainers.model.build import Classifier, ClassMap
from trainers.model.complexity import complexity
from trainers.model.losses import level_losses
from trainers.runtime.distributed import layout, share_buffers, unwrap
from trainers.runtime.provenance import provenance

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Predictions:
    """The model's outputs over one split (every rank's, padding dropped)."""

    outputs: np.ndarray
    """[n, task outputs]."""
    targets: np.ndarray
    loss: float | None
    """Mean loss (the training criterion); None for an empty split."""
    levels: dict[str, float] | None
    """Hierarchical: each level's loss; None otherwise or for an empty split."""


@torch.no_grad()
def predict(parts: Parts, loader: DataLoader[Any], final: str | None = None) -> Predictions:
    """Outputs, targets and losses of the current model over a split; `final`: the split's name
    in the final evaluation, which stops before any batch on request (stop_in_final_evaluation)."""
    share_buffers(parts.accelerator, parts.model)
    parts.model.eval()
    all_outputs: list[torch.Tensor] = []
    all_targets: list[torch.Tensor] = []
    all_readable: list[torch.Tensor] = []
    for batch, (images, targets, readable) in enumerate(loader):
        if final is not None:
            stop_in_final_evaluation(parts, final, batch)
        # gather_for_metrics drops the samples padded in to even out the last batch; unreadable
        # images' stand-ins go through it (equal batches on every rank) and are dropped after.
        outputs, targets, readable = parts.accelerator.gather_for_metrics(
            (parts.model(model_input(parts, images)), targets, readable)
        )
        all_outputs.append(to_host(outputs.float()))
        all_targets.append(to_host(targets))
        all_readable.append(to_host(readable))
    host_ready(parts.accelerator.device)
    if not all_outputs:
        return no_predictions(parts)
    outputs_t, targets_t = readable_only(torch.cat(all_readable), torch.cat(all_outputs), torch.cat(all_targets))
    if len(targets_t) == 0:
        return no_predictions(parts)
    criterion = copy.deepcopy(parts.criterion).cpu()
    return Predictions(
        outputs=outputs_t.numpy(),
        targets=targets_t.numpy(),
        loss=float(criterion(outputs_t, targets_t)),
        levels=level_losses(criterion, outputs_t, targets_t),
    )


def no_predictions(parts: Parts) -> Predictions:
    """The predictions over a split without a (readable) image."""
    empty = np.zeros((0, parts.task.num_outputs))
    return Predictions(outputs=empty, targets=np.zeros(0, dtype=np.int64), loss=None, levels=None)


def to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A batch's tensor copied to the host without waiting for the device (into pinned memory, from
    a GPU); read it only after `host_ready`. `.cpu()` would wait for the queue at every batch, so
    the GPU would idle while the host fetches and launches the next one."""
    return tensor.to("cpu", non_blocking=True)


def host_ready(device: torch.device) -> None:
    """Every `to_host` copy issued on `device` has landed."""
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()


def evaluate_split(parts: Parts, loader: DataLoader[Any], final: str | None = None) -> Evaluation:
    """Metrics (and tables) of the current model on one split (`final`: see `predict`)."""
    beat(parts, "eval")
    seen = predict(parts, loader, final)
    return evaluate_outputs(parts.task, seen.outputs, seen.targets, seen.loss, parts.cfg.threshold, seen.levels)


@torch.no_grad()
def evaluate_raw(parts: Parts, loader: DataLoader[Any], final: str | None = None) -> Evaluation:
    """class_map_scoring raw: the checkpoint's own argmax over all its classes, against each
    image's class mapped to the checkpoint's first index for it (report 001 scores ImageNet's
    1000-way predictions this way). Scalars only: a 1000 x 1000 confusion matrix is no table.
    `final`: see `predict`."""
    beat(parts, "eval")
    net = unwrap(parts.accelerator, parts.model)
    net.eval()
    outputs, targets, readables = [], [], []
    for batch, (images, labels, readable) in enumerate(loader):
        if final is not None:
            stop_in_final_evaluation(parts, final, batch)
        logits, labels, readable = parts.accelerator.gather_for_metrics(
            (net.backbone(model_input(parts, images)), labels, readable)
        )
        outputs.append(to_host(logits.float()))
        targets.append(to_host(labels))
        readables.append(to_host(readable))
    host_ready(parts.accelerator.device)
    if not outputs:
        return Evaluation({"n_images": 0})
    logits_t, labels_t = readable_only(torch.cat(readables), torch.cat(outputs), torch.cat(targets))
    return raw_evaluation(net, logits_t, labels_t)


def raw_evaluation(net: Classifier, logits: torch.Tensor, labels: torch.Tensor) -> Evaluation:
    """class_map_scoring raw's scalars (see evaluate_raw) from the checkpoint's own logits
    (`net.backbone`'s outputs, [n, checkpoint classes], on the host) and the images' dataset
    classes [n]: the run's test and `orchestrate eval` of the run both score this way."""
    if len(labels) == 0:
        return Evaluation({"n_images": 0})
    if not isinstance(net.output_map, ClassMap):
        raise ValueError("class_map_scoring raw needs model.class_map_path (a class map)")
    first_index = net.output_map.index[:, 0].cpu()
    targets = first_index[labels.long()]
    names = [str(i) for i in range(logits.shape[1])]
    scalars = level_metrics(logits.numpy(), targets.numpy(), names).scalars
    scalars["loss"] = float(torch.nn.functional.cross_entropy(logits, targets))
    return Evaluation(scalars)


def evaluate(parts: Parts, loader: DataLoader[Any], final: str | None = None) -> dict[str, Any]:
    """Metric scalars of the current model on one split (`final`: see `predict`)."""
    return evaluate_split(parts, loader, final).scalars


def write_tables(run_dir: Path, evaluation: Evaluation) -> list[str]:
    """Each table of an evaluation as <name>.csv in `run_dir`; the file names."""
    names = []
    for name, rows in evaluation.tables.items():
        rundir.write_text(run_dir / f"{name}.csv", table_csv(rows))
        names.append(f"{name}.csv")
    return names


def skipped_images(parts: Parts) -> dict[str, int]:
    """Unreadable images skipped per split, summed over all processes (each counts its own)."""
    counts = parts.data.skipped_images()
    if not counts or parts.accelerator.num_processes == 1:
        return counts
    names = sorted(counts)
    local = torch.tensor([counts[name] for name in names], device=parts.accelerator.device)
    total = parts.accelerator.reduce(local, reduction="sum")
    return {name: int(value) for name, value in zip(names, total.tolist(), strict=True)}


def load_model_for_test(parts: Parts, epochs_done: int) -> tuple[dict[str, Any], int]:
    """Put the model `checkpoint_for_test` names in place: the best checkpoint's weights, or the
    last epoch's (already in the model, trained or resumed from `last`). Returns the best
    checkpoint's state and the epoch whose model is tested."""
    if parts.cfg.checkpoint_for_test == "last" and regimes.trains(parts.cfg):
        folder = checkpoint.find_complete(parts.ckpt_dir, checkpoint.BEST)
        if folder is None:
            raise FileNotFoundError(f"no finished best checkpoint in {parts.ckpt_dir}")
        return checkpoint.read_state(folder), epochs_done
    best = checkpoint.load_best(parts.accelerator, parts.model, parts.ckpt_dir)
    return best, best["epoch"]


def _complexity(parts: Parts) -> dict[str, Any]:
    """Params and GFLOPs of the exact model trained, with its trainable parameters."""
    counted = complexity(parts.cfg, parts.task)
    counted["params_trainable"] = parts.n_trainable
    if counted["params"] != parts.n_params:  # build_model is shared: a bug, but not worth the run's results
        log.error("complexity counted %d params, the trained model has %d", counted["params"], parts.n_params)
        counted["params_trained"] = parts.n_params
    return counted


def final_metrics(parts: Parts, progress: Progress) -> dict[str, Any]:
    """Test and validation metrics of the model `checkpoint_for_test` names (the best checkpoint
    or the last epoch's), with complexity and provenance; `timing` is left to the caller, which
    saw the run start."""
    cfg, accelerator = parts.cfg, parts.accelerator
    best, tested_epoch = load_model_for_test(parts, progress.epochs_done)
    counted = _complexity(parts)
    # A stop request before any batch of these hands over (nothing written yet; see stop_in_final_evaluation).
    if cfg.model.class_map_scoring == "raw":
        test = evaluate_raw(parts, parts.data.test, final="test")
    else:
        test = evaluate_split(parts, parts.data.test, final="test")
    val = evaluate(parts, parts.data.val, final="val")
    files = write_tables(parts.run_dir, test) if accelerator.is_main_process else []  # once both are whole
    return {
        "test": test.scalars,
        "val": val,
        "task": parts.task.kind,
        "regime": cfg.regime,
        "best_epoch": best["epoch"],
        "tested": {"checkpoint": cfg.checkpoint_for_test, "epoch": tested_epoch},
        "best": {"metric": parts.selection.metric, "mode": parts.selection.mode, "value": best.get("value")},
        "epochs_trained": progress.epochs_done,
        "stopped_early": progress.stopped_early,
        "tables": files,
        "complexity": counted,
        # Where and with what it ran: each attempt's precision too (a requeue may change the node).
        "provenance": {
            **provenance(accelerator.device, accelerator.num_processes),
            "attempt_precisions": progress.attempt_precisions,
        },
        "preprocessing": preprocessing_record(cfg.data, cfg.model.backbone),
        "loss_class_weights": cfg.loss.class_weights,
        "parallel": layout(accelerator, cfg),
        "data": {"skipped_images": skipped_images(parts)},
    }
