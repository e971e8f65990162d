"""Modes on a finished run (report 003): `eval` scores a labelled dataset, `predict` labels a
folder of unlabelled images into a .tsv, both with the model the run's test numbers come from
(its `checkpoint_for_test`: the best checkpoint, or the last epoch's model in checkpoints/last),
or with the other one when asked (`checkpoint="best"` / `"last"`).

Both refuse a run that has not completed (status.json): the trainer may still replace its
checkpoints while they are read. Both rebuild the model from what the best checkpoint records
beside its weights (the run's resolved config and label structure), so they need neither the
training data nor the sweep file. Outputs go into the run folder without touching the run's own files:

    <run_dir>/eval/<name>/metrics.json (+ per-class / confusion-matrix CSVs)
    <run_dir>/predictions/<images folder name>.tsv

A class named NA, None, null or nan, an empty `labels` cell (no class above the threshold), or a
class named 1 or True reads back from pandas.read_csv(path, sep="\\t") as a missing value, a number
or a bool: `read_options` gives the read that returns every name as written, and predict prints it
when the defaults would misread its file (`misread_by_default`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import torch
from accelerate.utils import load_checkpoint_in_model
from PIL import Image
from safetensors import SafetensorError
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.datasets.folder import IMG_EXTENSIONS

from trainers import contract, rundir
from trainers.config import TrainConfig
from trainers.data.loaders import BAD_IMAGE_ERRORS, Transformed
from trainers.data.transforms import build_transform, resolve_preprocessing
from trainers.datasets import build_splits
from trainers.datasets.base import ImageFiles
from trainers.loop import checkpoint
from trainers.loop.evaluate import raw_evaluation, write_tables
from trainers.loop.metrics import Evaluation, evaluate_outputs
from trainers.model import regimes
from trainers.model.build import Classifier, build_model
from trainers.model.losses import build_criterion, level_losses
from trainers.model.tasks import TaskSpec, task_of

EVAL_DIR = rundir.EVAL
PREDICTIONS_DIR = rundir.PREDICTIONS


Which = Literal["run", "best", "last"]
"""The model eval/predict load: run = the run's checkpoint_for_test; best; last (the final epoch's)."""


def check_completed(run_dir: Path) -> None:
    """ValueError unless the run completed: a running (or requeued) run replaces its checkpoints
    while they are read, a failed one may be resumed into the same folder at any time. Completed
    means status.json says so, or, for a run trained without the orchestrator (trainers.run, which
    writes no status.json), its metrics.json: the trainer's last write."""
    # parse_status reads an unknown state (or a broken status) as `unknown`: refused below.
    state = contract.parse_status(rundir.read_json(run_dir / rundir.STATUS))[0].state
    if state == contract.State.COMPLETED.value:
        return
    if state == contract.State.MISSING.value:
        if (run_dir / rundir.METRICS).is_file():
            return
        raise ValueError(f"{run_dir}: the run has not completed (no {rundir.STATUS}, no {rundir.METRICS})")
    raise ValueError(f"{run_dir}: the run is {state}, not completed (eval/predict read a completed run's checkpoints)")


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
        _load_weights(model, folder / checkpoint.WEIGHTS_FILE)
        self.model: Classifier = model.to(self.device).eval()

    def loader(self, dataset: Dataset[Any]) -> DataLoader[Any]:
        """Batches of the run's batch size, without the samples that failed to decode (None);
        workers from the run's config (0 if unset)."""
        workers = self.cfg.data.num_workers or 0
        return DataLoader(dataset, batch_size=self.cfg.data.batch_size, num_workers=workers, collate_fn=_readable)

    @torch.no_grad()
    def outputs(self, loader: DataLoader[Any], raw: bool = False) -> tuple[np.ndarray, list[Any]]:
        """Model outputs [n, task outputs] (`raw`: the checkpoint's own logits before the class
        map, [n, checkpoint classes]) and the second item of every readable sample (an unreadable
        one is in neither, so the two stay aligned)."""
        forward = self.model.backbone if raw else self.model
        chunks: list[np.ndarray] = []
        seconds: list[Any] = []
        for batch in loader:
            if batch is None:  # no image of this batch decoded
                continue
            images, second = batch
            chunks.append(forward(images.to(self.device)).float().cpu().numpy())
            seconds.extend(second)
        empty = np.zeros((0, self.task.num_outputs), dtype=np.float32)  # raw too: no image, no scores read
        return (np.concatenate(chunks) if chunks else empty), seconds

    @property
    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """The run's evaluation transform (resize, grayscale, normalise)."""
        return cast(Callable[[Image.Image], torch.Tensor], build_transform(self.cfg.data, train=False))


def _load_weights(model: nn.Module, path: Path) -> None:
    """The checkpoint's weights into `model`; ValueError when the file is missing, truncated,
    corrupt or of another model (a traceback before)."""
    try:
        load_checkpoint_in_model(model, str(path), strict=True)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ValueError(f"{path}: cannot load the model weights ({str(exc)[:300]})") from None


def _readable(batch: list[Any]) -> Any:
    """default_collate of the samples that decoded (an unreadable image is None); None when none did."""
    kept = [sample for sample in batch if sample is not None]
    return default_collate(kept) if kept else None


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
    check_completed(Path(run_dir))
    trained = Trained(Path(run_dir), which)
    cfg = trained.cfg
    if dataset is not None:
        data = cfg.data.model_dump(mode="json") | {"dataset": dataset}
        cfg = cfg.model_copy(update={"data": type(cfg.data).model_validate(data)})
    splits = build_splits(cfg.data)
    _check_classes(cfg.data.dataset.display_name, task_of(splits), trained.task)
    images = splits.split(split)
    # As the run's own test: unreadable images are skipped (up to the dataset's max_bad_fraction)
    # and the targets are those of the images scored, not of the whole split.
    scored = Transformed(images, trained.transform, split, cfg.data.dataset.max_bad_fraction)
    # As the run's own test (trainers.loop.evaluate.final_metrics): class_map_scoring raw scores
    # the checkpoint's own logits, not the class-mapped ones.
    raw = trained.cfg.model.class_map_scoring == "raw"
    outputs, targets = trained.outputs(trained.loader(scored), raw=raw)
    target_array = _targets(targets, np.asarray(images.targets))
    if raw:
        class_weights = "none"  # raw scoring's loss is the plain cross-entropy over the checkpoint's classes
        evaluation = raw_evaluation(trained.model, torch.from_numpy(outputs), torch.as_tensor(target_array))
    else:
        # The run's own class weights need the run's own training split; another dataset's loss is unweighted.
        weighted = dataset is None and trained.cfg.loss.class_weights != "none"
        train_targets = np.asarray(splits.train.targets) if weighted else None
        class_weights, evaluation = _evaluate_mapped(trained, outputs, target_array, train_targets)
    folder = Path(run_dir) / EVAL_DIR / (name or _default_name(cfg, split))
    tables = write_tables(folder, evaluation)  # as the run's own test writes them
    metrics = {
        "test": evaluation.scalars,
        "dataset": cfg.data.dataset.model_dump(mode="json"),
        "split": split,
        "checkpoint": trained.checkpoint,
        "checkpoint_epoch": trained.epoch,
        "loss_class_weights": class_weights,
        "skipped_images": scored.skipped,
        "task": trained.task.kind,
        "tables": tables,
    }
    metrics = contract.eval_metrics_to_write(metrics)
    rundir.write_json(folder / rundir.METRICS, metrics)
    return folder, metrics


def _evaluate_mapped(
    trained: Trained, outputs: np.ndarray, targets: np.ndarray, train_targets: np.ndarray | None
) -> tuple[str, Evaluation]:
    """The loss's class weights and the evaluation of the model's (class-mapped) outputs, with the
    run's training criterion: class-weighted from `train_targets` (the run's own training split)
    when given, unweighted otherwise."""
    loss_cfg = (
        trained.cfg.loss if train_targets is not None else trained.cfg.loss.model_copy(update={"class_weights": "none"})
    )
    criterion = build_criterion(loss_cfg, trained.task, targets if train_targets is None else train_targets)
    outputs_t, targets_t = torch.from_numpy(outputs), torch.as_tensor(targets)
    loss = float(criterion(outputs_t, targets_t)) if len(targets) else None
    levels = level_losses(criterion, outputs_t, targets_t) if len(targets) else None
    evaluation = evaluate_outputs(trained.task, outputs, targets, loss, trained.cfg.threshold, levels)
    return loss_cfg.class_weights, evaluation


def _check_classes(dataset: str, task: TaskSpec, trained: TaskSpec) -> None:
    """ValueError unless the dataset has the run's task and classes, in the run's order."""
    if (task.kind, task.class_names, task.super_class_names) != (
        trained.kind,
        trained.class_names,
        trained.super_class_names,
    ):
        raise ValueError(
            f"dataset {dataset!r} has {task.kind} classes {list(task.class_names)[:5]}..., "
            f"the run was trained on {trained.kind} classes {list(trained.class_names)[:5]}..."
        )


def _targets(collated: list[Any], split_targets: np.ndarray) -> np.ndarray:
    """The targets of the scored images (tensors from the loader) as the split's array type."""
    if not collated:
        return split_targets[:0]
    return np.stack([np.asarray(target) for target in collated]).astype(split_targets.dtype, copy=False)


def _check_name(name: str | None) -> None:
    """ValueError unless `name` is one folder name (`--name ..` wrote over the run's own files)."""
    if name is not None and (problem := rundir.folder_name(name)) is not None:
        raise ValueError(f"--name {name[:80]!r}: {problem}")


def _default_name(cfg: TrainConfig, split: str) -> str:
    """<dataset label>-<split> as one folder level: a label may hold '/' (Birds/Dogs/Unseen)."""
    return rundir.folder_slug(f"{cfg.data.dataset.display_name}-{split}") or split


class _Unlabelled(Dataset[tuple[torch.Tensor, int] | None]):
    """Image files with their indices (`image_id`: path relative to the folder), decoded as
    training and evaluation decode them (ImageFiles, with the JPEG draft at `draft_px`):
    a full-size decode resized differently, and predictions on the test images did not
    reproduce the evaluation's. An unreadable file (corrupt, truncated, not an image) is None:
    one such file in a folder was a traceback that lost every prediction."""

    def __init__(self, root: Path, transform: Callable[[Image.Image], torch.Tensor], draft_px: int | None) -> None:
        self.root = root
        self.paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        self.files = ImageFiles(self.paths, np.zeros(len(self.paths), dtype=np.int64), draft_px)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def image_id(self, index: int) -> str:
        """The file's path relative to the folder, suffix kept: unique (without it `x.jpg` and
        `x.png` were both `x`), and never a number or a missing value to pandas.read_csv
        (`001` read as 1, `NA` as NaN). A name that is not UTF-8 (Linux allows any bytes) shows its
        other bytes as `\\xff`: it has no text of its own, and its surrogates failed the file's write."""
        relative = self.paths[index].relative_to(self.root).as_posix()
        return os.fsencode(relative).decode("utf-8", "backslashreplace")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        try:
            return self.transform(self.files.load(index)), index
        except BAD_IMAGE_ERRORS:
            return None


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
) -> tuple[Path, int, list[str]]:
    """Predict every image under `images_dir` (recursively) with the run's model (`which`, see
    Trained); write a TSV (image_id, predicted label(s), probabilities). Returns its path, the
    count of rows and the image files (relative paths) that could not be decoded (no row)."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder {images_dir} does not exist")
    target = rundir.free_path(out or Path(run_dir) / PREDICTIONS_DIR / f"{images_dir.resolve().name}.tsv")
    check_completed(Path(run_dir))
    trained = Trained(Path(run_dir), which)
    data = trained.cfg.data
    dataset = _Unlabelled(images_dir, trained.transform, data.image_size_px if data.jpeg_draft else None)
    if len(dataset) == 0:
        raise ValueError(f"{images_dir}: no image files")
    outputs, indices = trained.outputs(trained.loader(dataset))
    read = {int(index) for index in indices}
    unreadable = [dataset.image_id(i) for i in range(len(dataset)) if i not in read]
    if not read:
        raise ValueError(f"{images_dir}: none of its {len(dataset)} image files could be decoded")
    ids = [dataset.image_id(int(index)) for index in indices]
    header, rows = prediction_rows(trained.task, outputs, trained.cfg.threshold if threshold is None else threshold)
    rundir.write_text(
        rundir.free_path(target), tsv(["image_id", *header], [[i, *r] for i, r in zip(ids, rows, strict=True)])
    )
    return target, len(rows), unreadable


TEXT_COLUMNS = ("image_id", "label", "labels", "super", "sub")
"""The .tsv's columns of names (its other columns are probabilities)."""

_QUOTED = frozenset('\t\n\r"')
"""Characters that end a cell or a row where they stand bare (csv's QUOTE_MINIMAL left `\r` bare)."""


def tsv(header: list[str], rows: list[list[str]]) -> str:
    """Tab-separated text, one row a line, a cell holding a tab, a newline, a carriage return or a
    `"` between `"` (its `"` doubled), as csv dialects quote: every row keeps its columns (joined with
    bare tabs, such a name split its row or added one) and pandas.read_csv(sep="\\t") reads every
    cell back. It reads some names back as written only with `read_options` (see misread_by_default)."""
    return "".join("\t".join(map(_cell, row)) + "\n" for row in [header, *rows])


def _cell(text: str) -> str:
    if not any(char in _QUOTED for char in text):
        return text
    doubled = text.replace('"', '""')
    return f'"{doubled}"'


def read_options(columns: list[str]) -> dict[str, Any]:
    """pandas.read_csv keyword arguments, besides sep="\\t", that read the names of a predictions
    .tsv with these columns back as the strings written: no cell is a missing value and every name
    column is text. The defaults read a class named NA, None, null or nan and an empty `labels` cell
    (no class above the threshold) as missing, and one named 1 or True as a number or a bool."""
    return {"keep_default_na": False, "dtype": {column: str for column in TEXT_COLUMNS if column in columns}}


def read_recipe(columns: list[str]) -> str:
    """The pandas call, as text, that reads a predictions .tsv with these columns back as written."""
    dtype = ", ".join(f"{column!r}: str" for column in read_options(columns)["dtype"])
    return f'pandas.read_csv(path, sep="\\t", keep_default_na=False, dtype={{{dtype}}})'


def misread_by_default(path: Path) -> list[str]:
    """The names (ids and labels, each once, in file order) of a predictions .tsv that
    pandas.read_csv(path, sep="\\t") does not read back as the strings written (`''`: an empty
    `labels` cell); none when the defaults read the whole file as written."""
    columns = list(pd.read_csv(path, sep="\t", nrows=0).columns)
    options = read_options(columns)
    names = list(options["dtype"])
    written = pd.read_csv(path, sep="\t", usecols=names, **options)
    default = pd.read_csv(path, sep="\t", usecols=names)
    misread: dict[str, None] = {}
    for column in names:
        for text, read in zip(written[column], default[column], strict=True):
            if not (isinstance(read, str) and read == text):
                misread.setdefault(text)
    return list(misread)
