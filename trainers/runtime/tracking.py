"""Experiment trackers (TensorBoard, MLflow, W&B) through Accelerate's tracker integration.

What a run logs: its resolved config (flattened, dotted keys) as hyperparameters; per optimizer
step the training loss and learning rate; per epoch the validation metrics; at the end the test
metrics of the best checkpoint. Runs carry their readable name and are tagged with run id,
sweep, ablation, backbone, dataset and seed, so a sweep is one MLflow experiment and one W&B
project. Only the main process logs (Accelerate's trackers act on the main process only).

Where it goes:
- TensorBoard: `<sweep output>/tensorboard/<run name>/`, so `tensorboard --logdir <sweep output>/tensorboard`
  shows the sweep, one entry per run under its readable name (a resumed run appends to its folder).
- MLflow: $MLFLOW_TRACKING_URI when set, else a file store `<sweep output>/mlruns`.
- W&B: offline into `<run_dir>/wandb/` unless $WANDB_MODE says otherwise (`wandb sync` uploads).

Per-step losses stay on the device during the epoch and are read back once at its end (one
synchronisation per epoch, not per step); without trackers nothing is kept at all.
A resumed run continues the same MLflow and W&B run (ids kept in `<run_dir>/trackers.json`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker, MLflowTracker, TensorBoardTracker, WandBTracker, on_main_process

from trainers import rundir
from trainers.config import TrainConfig

TRACKERS_FILE = "trackers.json"
TAG_KEYS = ("run_id", "sweep", "ablation", "backbone", "dataset", "seed")


def sweep_folder(run_dir: Path) -> Path:
    """The sweep's output folder of a run folder `<output>/runs/<id>` (else the run folder's parent)."""
    return run_dir.parent.parent if run_dir.parent.name == "runs" else run_dir.parent


def run_facts(run_dir: Path, metadata: dict[str, Any] | None) -> dict[str, str]:
    """Name and tags of a run: the plan metadata, filled in from the folder layout when absent
    (the sweep: the name of its output folder, `results/<sweep name>` by default)."""
    meta = dict(metadata or {})
    facts = {key: str(meta[key]) for key in TAG_KEYS if meta.get(key) is not None}
    facts.setdefault("run_id", run_dir.name)
    facts.setdefault("sweep", sweep_folder(run_dir).name)
    facts["name"] = str(meta.get("name") or facts["run_id"])
    return facts


def hyperparameters(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as flat dotted keys with scalar values (what every tracker accepts)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}{key}.", item)
        elif isinstance(value, bool | int | float | str):
            flat[prefix[:-1]] = value
        else:  # None, lists, empty mappings: their JSON text
            flat[prefix[:-1]] = json.dumps(value)

    walk("", cfg.model_dump(mode="json"))
    return flat


def tensorboard_name(name: str) -> str:
    """A run's readable name as a relative folder path: each `/`-separated part kept to safe
    characters, no `.`/`..` parts (TensorBoard lists a run by its folder path under --logdir)."""
    parts = ["".join(ch if ch.isalnum() or ch in "._+=-" else "_" for ch in part) for part in name.split("/")]
    return "/".join(part if part.strip(".") else "_" for part in parts)


class NamedTensorBoard(TensorBoardTracker):  # type: ignore[misc]
    """TensorBoard with the hyperparameters in the run's own folder: Accelerate's tracker (through
    SummaryWriter.add_hparams) writes them to a new `<timestamp>/` sub-run per attempt, so every run
    showed up twice (or more) under meaningless names."""

    @on_main_process  # type: ignore[untyped-decorator]
    def store_init_configuration(self, values: dict[str, Any]) -> None:
        """The hparams plugin's three summaries, into this run's event file."""
        from torch.utils.tensorboard.summary import hparams

        for summary in hparams(values, {}):  # type: ignore[no-untyped-call]
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()


def build_trackers(cfg: TrainConfig, run_dir: Path, facts: dict[str, str]) -> list[GeneralTracker]:
    """Accelerate tracker objects for `cfg.trackers` (not started: Accelerator.init_trackers does that)."""
    saved = read_ids(run_dir)
    trackers: list[GeneralTracker] = []
    for name in cfg.trackers:
        if name == "tensorboard":
            trackers.append(NamedTensorBoard(tensorboard_name(facts["name"]), sweep_folder(run_dir) / "tensorboard"))
        elif name == "mlflow":
            tags = {key: facts[key] for key in TAG_KEYS if key in facts}
            trackers.append(
                MLflowTracker(facts["sweep"], run_id=saved.get("mlflow"), tags=tags, run_name=facts["name"])
            )
        elif name == "wandb":
            trackers.append(
                WandBTracker(
                    facts["sweep"],
                    name=facts["name"],
                    id=facts["run_id"],
                    resume="allow",
                    dir=str(run_dir),
                    mode=os.environ.get("WANDB_MODE", "offline"),
                    tags=[f"{key}={facts[key]}"[:64] for key in TAG_KEYS if key in facts],
                    group=facts.get("ablation"),
                )
            )
    return trackers


def use_mlflow_store(run_dir: Path) -> None:
    """Point MLflow at $MLFLOW_TRACKING_URI, else at a file store in the sweep's output folder."""
    import mlflow

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        # A folder per run, no database server: what concurrent jobs on a shared filesystem need
        # (SQLite over NFS is not safe). MLflow 3 keeps this store only behind an opt-in.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri((sweep_folder(run_dir) / "mlruns").resolve().as_uri())


def ensure_mlflow_experiment(name: str) -> None:
    """Create the sweep's experiment unless it exists; the runs of an array race to create it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if mlflow.get_experiment_by_name(name) is not None:
        return
    try:
        mlflow.create_experiment(name)
    except MlflowException:
        if mlflow.get_experiment_by_name(name) is None:  # not a lost race: a real failure
            raise


def read_ids(run_dir: Path) -> dict[str, str]:
    """Tracker run ids saved by an earlier attempt of this run (resume continues them)."""
    path = run_dir / TRACKERS_FILE
    return dict(json.loads(path.read_text())) if path.exists() else {}


@dataclass
class Tracking:
    """A run's started trackers (Accelerator(log_with=build_trackers(...))) and its step numbering."""

    accelerator: Accelerator
    steps_per_epoch: int
    """Optimizer steps per epoch: epoch e's steps are numbered e * steps_per_epoch + 1, ..."""
    step_losses: list[torch.Tensor] = field(default_factory=list)
    micro_losses: list[torch.Tensor] = field(default_factory=list)

    def start(self, cfg: TrainConfig, run_dir: Path, facts: dict[str, str]) -> None:
        """Start the trackers, log the config and tags, and remember the tracker run ids."""
        if self.accelerator.is_main_process and "mlflow" in cfg.trackers:
            use_mlflow_store(run_dir)
            ensure_mlflow_experiment(facts["sweep"])
        self.accelerator.init_trackers(facts["sweep"], config=hyperparameters(cfg) | {"run_id": facts["run_id"]})
        if self.accelerator.is_main_process:
            ids = {}
            if "mlflow" in cfg.trackers:
                ids["mlflow"] = self.accelerator.get_tracker("mlflow", unwrap=True).info.run_id
            rundir.write_json(run_dir / TRACKERS_FILE, ids)

    def record(self, loss: torch.Tensor, step_now: bool) -> None:
        """Keep a micro-batch's training loss on the device (no synchronisation); at each optimizer
        step, the mean over its micro-batches becomes that step's loss."""
        if not self.accelerator.is_main_process:
            return
        self.micro_losses.append(loss.detach())
        if step_now:
            self.step_losses.append(torch.stack(self.micro_losses).mean())
            self.micro_losses.clear()

    def log_steps(self, epoch: int, lr: float) -> None:
        """Log the epoch's per-step losses and learning rate (one device read for the whole epoch)."""
        if not self.step_losses:
            return
        losses = torch.stack(self.step_losses).float().tolist()
        self.step_losses.clear()
        first = epoch * self.steps_per_epoch
        for index, loss in enumerate(losses):
            self.accelerator.log({"train/loss": loss, "train/lr": lr}, step=first + index + 1)

    def log_metrics(self, prefix: str, metrics: dict[str, Any], step: int) -> None:
        """Log the numeric entries of a metrics dict (nested keys dotted) under `prefix/`."""
        flat = {f"{prefix}/{key}": value for key, value in numeric(metrics).items()}
        self.accelerator.log(flat, step=step)

    def finish(self) -> None:
        """Close every tracker (flushes TensorBoard, ends the MLflow run, finishes W&B)."""
        self.accelerator.end_training()


def numeric(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The int/float leaves of a nested metrics dict, keys dotted; NaN and None left out."""
    found: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            found |= numeric(value, f"{prefix}{key}.")
        elif isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            found[f"{prefix}{key}"] = float(value)
    return found
