"""Modes on a finished run (report 003): `eval` scores a labelled dataset, `predict` labels a
folder of unlabelled images into a .tsv, both with the model the run's test numbers come from
(its `checkpoint_for_test`: the best checkpoint, or the last epoch's model in checkpoints/last),
or with the other one when asked (`checkpoint="best"` / `"last"`).

Both rebuild the model from what the best checkpoint records beside its weights (the
run's resolved config and label structure), so they need neither the training data nor
the sweep file. Outputs go into the run folder without touching the run's own files:

    <run_dir>/eval/<name>/metrics.json (+ per-class / confusion-matrix CSVs)
    <run_dir>/predictions/<images folder name>.tsv
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from accelerate.utils import load_checkpoint_in_model
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from trainers import contract, rundir
from trainers.config import TrainConfig
from trainers.data.loaders import Transformed
from trainers.data.transforms import build_transform, resolve_preprocessing
from trainers.datasets import build_splits
from trainers.datasets.base import ImageFiles
from trainers.loop import checkpoint
from trainers.loop.metrics import evaluate_outputs, table_csv
from trainers.model import regimes
from trainers.model.build import build_model
from trainers.model.losses import build_criterion, level_losses
from trainers.model.tasks import TaskSpec, task_of

EVAL_DIR = rundir.EVAL
PREDICTIONS_DIR = rundir.PREDICTIONS


Which = Literal["run", "best", "last"]
"""The model eval/predict load: run = the run's checkpoint_for_test; best; last (the final epoch's)."""


class Trained:
    """A finished run's model (`which`: the one its test numbers come from, or best / last),
    ready for inference."""

    def __init__(self, run_dir: Path, which: Which = "run") -> None:
        ckpt_dir = checkpoint.checkpoint_dir(run_dir)
        folder = checkpoint.find_complete(ckpt_dir, checkpoint.BEST)
        if folder is None:
            raise FileNotFoundError(f"{run_dir}: no finished best checkpoint (has the run trained?)")
        state = checkpoint.read_state(folder)
        if "config" not in state or "task" not in state:
            raise ValueError(f"{folder}: checkpoint predates eval/predict support (no config/task recorded)")
        self.run_dir = run_dir
        self.cfg = TrainConfig.model_validate(state["config"])
        if "normalize" not in state["config"].get("data", {}):
            # Recorded by a trainer that always used ImageNet statistics and bicubic resizing.
            data = self.cfg.data.model_copy(update={"normalize": "imagenet", "interpolation": "bicubic"})
            self.cfg = self.cfg.model_copy(update={"data": data})
        self.cfg = self.cfg.model_copy(update={"data": resolve_preprocessing(self.cfg.data, self.cfg.model.backbone)})
        self.task = TaskSpec.from_dict(state["task"])
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = build_model(self.cfg, self.task, load_weights=False)
        self.checkpoint = self.cfg.checkpoint_for_test if which == "run" else which
        if not regimes.trains(self.cfg):
            self.checkpoint = "best"  # nothing trained: the loaded checkpoint is the only model
        self.epoch = state.get("epoch")
        if self.checkpoint == "last":
            folder = checkpoint.find_complete(ckpt_dir, checkpoint.LAST)
            if folder is None or not (folder / checkpoint.WEIGHTS_FILE).is_file():
                raise FileNotFoundError(f"{run_dir}: no checkpoints/last with model weights (use the best checkpoint)")
            self.epoch = checkpoint.read_state(folder).get("epochs_done")
        load_checkpoint_in_model(model, str(folder / checkpoint.WEIGHTS_FILE), strict=True)
        self.model: nn.Module = model.to(self.device).eval()

    def loader(self, dataset: Dataset[Any]) -> DataLoader[Any]:
        """Batches of the run's batch size; workers from the run's config (0 if unset)."""
        workers = self.cfg.data.num_workers or 0
        return DataLoader(dataset, batch_size=self.cfg.data.batch_size, num_workers=workers)

    @torch.no_grad()
    def outputs(self, loader: DataLoader[Any]) -> tuple[np.ndarray, list[Any]]:
        """Model outputs [n, task outputs] and the second item of every sample."""
        chunks: list[np.ndarray] = []
        seconds: list[Any] = []
        for images, second in loader:
            chunks.append(self.model(images.to(self.device)).float().cpu().numpy())
            seconds.extend(second)
        empty = np.zeros((0, self.task.num_outputs), dtype=np.float32)
        return (np.concatenate(chunks) if chunks else empty), seconds

    @property
    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """The run's evaluation transform (resize, grayscale, normalise)."""
        return cast(Callable[[Image.Image], torch.Tensor], build_transform(self.cfg.data, train=False))


def evaluate_run(
    run_dir: Path,
    dataset: dict[str, Any] | None = None,
    split: str = "test",
    name: str | None = None,
    which: Which = "run",
) -> tuple[Path, dict[str, Any]]:
    """Score the run's model (`which`, see Trained) on `split` of `dataset` (a DatasetConfig
    mapping; None: the run's own dataset) and write eval/<name>/. Returns that folder and the metrics.

    The loss is the run's training criterion: with `loss.class_weights: balanced` the weights
    come from the run's own training split, as in training (its test loss in metrics.json and
    this one agree); on another dataset the run's weights cannot be rebuilt and the loss is
    unweighted. metrics.json says which (`loss_class_weights`)."""
    _check_name(name)
    trained = Trained(Path(run_dir), which)
    cfg = trained.cfg
    if dataset is not None:
        data = cfg.data.model_dump(mode="json") | {"dataset": dataset}
        cfg = cfg.model_copy(update={"data": type(cfg.data).model_validate(data)})
    splits = build_splits(cfg.data)
    task = task_of(splits)
    if (task.kind, task.class_names, task.super_class_names) != (
        trained.task.kind,
        trained.task.class_names,
        trained.task.super_class_names,
    ):
        raise ValueError(
            f"dataset {cfg.data.dataset.display_name!r} has {task.kind} classes {list(task.class_names)[:5]}..., "
            f"the run was trained on {trained.task.kind} classes {list(trained.task.class_names)[:5]}..."
        )
    images = splits.split(split)
    outputs, targets = trained.outputs(trained.loader(Transformed(images, trained.transform)))
    target_array = np.asarray(images.targets)
    # The run's own class weights need the run's own training split; another dataset's loss is unweighted.
    weighted = dataset is None and trained.cfg.loss.class_weights != "none"
    loss_cfg = trained.cfg.loss if weighted else trained.cfg.loss.model_copy(update={"class_weights": "none"})
    criterion = build_criterion(loss_cfg, trained.task, np.asarray(splits.train.targets) if weighted else target_array)
    outputs_t, targets_t = torch.from_numpy(outputs), torch.as_tensor(target_array)
    loss = float(criterion(outputs_t, targets_t)) if len(targets) else None
    levels = level_losses(criterion, outputs_t, targets_t) if len(targets) else None
    evaluation = evaluate_outputs(trained.task, outputs, target_array, loss, trained.cfg.threshold, levels)
    folder = Path(run_dir) / EVAL_DIR / (name or _default_name(cfg, split))
    tables = []
    for table, rows in evaluation.tables.items():
        rundir.write_text(folder / f"{table}.csv", table_csv(rows))
        tables.append(f"{table}.csv")
    metrics = {
        "test": evaluation.scalars,
        "dataset": cfg.data.dataset.model_dump(mode="json"),
        "split": split,
        "checkpoint": trained.checkpoint,
        "checkpoint_epoch": trained.epoch,
        "loss_class_weights": loss_cfg.class_weights,
        "task": trained.task.kind,
        "tables": tables,
    }
    metrics = contract.eval_metrics_to_write(metrics)
    rundir.write_json(folder / rundir.METRICS, metrics)
    return folder, metrics


def _check_name(name: str | None) -> None:
    """ValueError unless `name` is one folder name (`--name ..` wrote over the run's own files)."""
    if name is not None and (problem := rundir.folder_name(name)) is not None:
        raise ValueError(f"--name {name[:80]!r}: {problem}")


def _default_name(cfg: TrainConfig, split: str) -> str:
    """<dataset label>-<split> as one folder level: a label may hold '/' (Birds/Dogs/Unseen)."""
    return rundir.folder_slug(f"{cfg.data.dataset.display_name}-{split}") or split


class _Unlabelled(Dataset[tuple[torch.Tensor, str]]):
    """Image files with their ids (path relative to the folder, without suffix), decoded as
    training and evaluation decode them (ImageFiles, with the JPEG draft at `draft_px`):
    a full-size decode resized differently, and predictions on the test images did not
    reproduce the evaluation's."""

    def __init__(self, root: Path, transform: Callable[[Image.Image], torch.Tensor], draft_px: int | None) -> None:
        self.root = root
        self.paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        self.files = ImageFiles(self.paths, np.zeros(len(self.paths), dtype=np.int64), draft_px)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        image_id = self.paths[index].relative_to(self.root).with_suffix("").as_posix()
        return self.transform(self.files.load(index)), image_id


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted: np.ndarray = np.exp(scores - scores.max(axis=1, keepdims=True))
    return cast(np.ndarray, shifted / shifted.sum(axis=1, keepdims=True))


def prediction_rows(task: TaskSpec, outputs: np.ndarray, threshold: float) -> tuple[list[str], list[list[str]]]:
    """TSV header and one row of predicted labels and probabilities per image (no id)."""
    fmt = "{:.6f}".format
    if task.kind == "multilabel":
        probs = 1.0 / (1.0 + np.exp(-outputs))
        header = ["labels", *(f"p_{name}" for name in task.class_names)]
        rows = [
            [",".join(n for n, p in zip(task.class_names, row, strict=True) if p >= threshold), *map(fmt, row)]
            for row in probs
        ]
        return header, rows
    levels = ("super", "sub") if task.kind == "hierarchical" else ("logits",)
    parts = dict(zip(levels, np.split(outputs, np.cumsum([w for _, w in task.heads])[:-1], axis=1), strict=True))
    header = []
    columns: list[list[list[str]]] = []
    for level, scores in parts.items():
        names = task.level_names(level)
        probs = _softmax(scores)
        label = "label" if level == "logits" else level
        best = probs.argmax(axis=1)
        header += [label, f"{label}_p", *(f"p_{name}" if level == "logits" else f"p_{level}_{name}" for name in names)]
        columns.append([[names[b], fmt(row[b]), *map(fmt, row)] for b, row in zip(best, probs, strict=True)])
    rows = [[cell for level in columns for cell in level[i]] for i in range(len(outputs))]
    return header, rows


def predict_images(
    run_dir: Path, images_dir: Path, out: Path | None = None, threshold: float | None = None, which: Which = "run"
) -> tuple[Path, int]:
    """Predict every image under `images_dir` (recursively) with the run's model (`which`, see
    Trained); write a TSV (image_id, predicted label(s), probabilities). Returns its path and the count."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder {images_dir} does not exist")
    target = rundir.free_path(out or Path(run_dir) / PREDICTIONS_DIR / f"{images_dir.resolve().name}.tsv")
    trained = Trained(Path(run_dir), which)
    data = trained.cfg.data
    dataset = _Unlabelled(images_dir, trained.transform, data.image_size_px if data.jpeg_draft else None)
    if len(dataset) == 0:
        raise ValueError(f"{images_dir}: no image files")
    outputs, ids = trained.outputs(trained.loader(dataset))
    header, rows = prediction_rows(trained.task, outputs, trained.cfg.threshold if threshold is None else threshold)
    lines = ["\t".join(["image_id", *header])]
    lines += ["\t".join([image_id, *row]) for image_id, row in zip(ids, rows, strict=True)]
    rundir.write_text(rundir.free_path(target), "\n".join(lines) + "\n")
    return target, len(rows)
