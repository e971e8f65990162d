"""Rules that need only the config (no torch, no data): the trainer checks them first thing,
and `orchestrate plan` checks them for every run before anything is queued, so a job never
waits hours in a queue to die on one of them.

Each rule raises ValueError (FileNotFoundError for files) naming the config field.
Rules that need the built model (backbone names, `after_stage` beyond the backbone's
stages) are checked by `orchestrate submit` on the meta device.
"""

from __future__ import annotations

from pathlib import Path

from trainers.config import DatasetConfig, LossConfig, ModelConfig, ScheduleConfig, TrainConfig

SEED_MAX = 2**32 - 1  # numpy's global seed range
HUE_MAX = 0.5  # torchvision ColorJitter: hue in [-0.5, 0.5]
MULTILABEL_LOSSES = ("bce", "soft_margin", "mse", "l1")
# Validation metrics per task (trainers.loop.metrics.metric_names; a test keeps them equal).
_LEVEL: tuple[str, ...] = (
    "top1",
    "top5",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "micro_precision",
    "micro_recall",
)
_LEVEL += ("micro_f1", "weighted_f1", "n_images")
VAL_METRICS: dict[str, tuple[str, ...]] = {
    "single": (*_LEVEL, "loss"),
    "hierarchical": (*_LEVEL, *(f"{lv}.{m}" for lv in ("super", "sub") for m in (*_LEVEL, "loss")), "loss"),
    "multilabel": ("exact_match", "mean_label_accuracy", "hamming_loss", *_LEVEL[2:], "threshold", "top1", "loss"),
}
_LAYOUT_TASKS = {"hierarchical_csv": "hierarchical", "multilabel": "multilabel"}


def task_kind(dataset: DatasetConfig) -> str:
    """single, hierarchical or multilabel: the dataset's `task`, else its layout's own (a `level`
    view of a hierarchical dataset is single-label)."""
    if dataset.level is not None:
        return "single"
    return dataset.task or _LAYOUT_TASKS.get(dataset.name, "single")


def check_config(cfg: TrainConfig) -> None:
    """Every pure-config rule (no files): regime, loss vs task, augmentation, heads, metric, seed."""
    check_regime(cfg)
    check_loss(cfg)
    check_ranges(cfg)
    check_metric(cfg)


def check_regime(cfg: TrainConfig) -> None:
    """Raise ValueError for a regime or loss that cannot work with this config."""
    if cfg.regime == "linear_probe" and cfg.model.pretrained_path is None:
        raise ValueError("regime linear_probe needs model.pretrained_path")
    if cfg.regime == "pretrained_eval":
        check_pretrained_eval(cfg)
    if cfg.loss.l2sp > 0 and cfg.model.pretrained_path is None:
        raise ValueError("loss.l2sp anchors to pretrained weights: it needs model.pretrained_path")
    if cfg.model.class_map_path is not None and cfg.regime != "pretrained_eval":
        raise ValueError("model.class_map_path applies to regime pretrained_eval only")
    if cfg.model.class_map_scoring == "raw" and (cfg.regime != "pretrained_eval" or cfg.model.class_map_path is None):
        raise ValueError("model.class_map_scoring raw needs regime pretrained_eval and model.class_map_path")
    check_schedule(cfg.schedule)


def check_pretrained_eval(cfg: TrainConfig, kind: str | None = None) -> Path:
    """Raise ValueError where regime pretrained_eval cannot score `cfg`'s checkpoint as is; its
    checkpoint path otherwise. `kind`: the task's (the built TaskSpec's at job time), else the
    config's. `plan` (check_regime) and the model's constructor both run it: one rule, one message."""
    if cfg.model.pretrained_path is None:
        raise ValueError("regime pretrained_eval needs model.pretrained_path")
    kind = kind or task_kind(cfg.data.dataset)
    if kind != "single":
        raise ValueError(f"regime pretrained_eval supports single-label datasets, not {kind}")
    if cfg.model.insert:
        # Nothing trains in this regime: an inserted module (SCRA) would gate the checkpoint's
        # features with its random initial weights, and the "as is" numbers be another model's.
        raise ValueError("model.insert: regime pretrained_eval scores the checkpoint as is; it adds untrained modules")
    return Path(cfg.model.pretrained_path)


def check_schedule(schedule: ScheduleConfig) -> None:
    """Raise ValueError for a warm-up on a schedule without one: only cosine warms up, the others
    ignored `warmup_epochs` while the run's recorded config (and its table row) claimed it."""
    if schedule.warmup_epochs and schedule.name != "cosine":
        raise ValueError(
            f"schedule.warmup_epochs {schedule.warmup_epochs} applies to the cosine schedule only, "
            f"not {schedule.name!r}: use schedule.name cosine, or warmup_epochs 0"
        )


def check_loss(cfg: TrainConfig) -> None:
    """The loss must fit the dataset's label structure (as trainers.model.losses.build_criterion demands)."""
    check_loss_for(cfg.loss, task_kind(cfg.data.dataset))


def check_loss_for(loss: LossConfig, kind: str) -> None:
    """Raise ValueError where `loss` does not fit a task of `kind`: `plan` (check_loss) and
    trainers.model.losses.build_criterion (with the built task's kind) both run it."""
    if kind == "multilabel":
        if loss.name not in ("auto", *MULTILABEL_LOSSES):
            raise ValueError(f"loss.name {loss.name!r} is not a multilabel loss ({', '.join(MULTILABEL_LOSSES)})")
        if loss.class_weights != "none" or loss.label_smoothing > 0:
            raise ValueError(
                "loss.class_weights and loss.label_smoothing apply to cross-entropy, not multilabel losses"
            )
    elif loss.name not in ("auto", "cross_entropy"):
        raise ValueError(f"loss.name {loss.name!r} is multilabel only; {kind} tasks use cross_entropy")


def check_ranges(cfg: TrainConfig) -> None:
    """Values torch or numpy would reject at run time: jitter strengths, head widths, the seed."""
    jitter = cfg.data.augment.color_jitter if cfg.data.augment is not None else None
    if jitter is not None:
        if min(jitter) < 0:
            raise ValueError(f"data.augment.color_jitter {list(jitter)}: strengths must be >= 0")
        if jitter[3] > HUE_MAX:
            raise ValueError(f"data.augment.color_jitter hue {jitter[3]}: must be in [0, {HUE_MAX}]")
    scale = cfg.data.augment.scale_range if cfg.data.augment is not None else None
    if scale is not None and not 0 < scale[0] <= scale[1]:
        raise ValueError(f"data.augment.scale_range {list(scale)}: needs 0 < low <= high")
    if any(width < 1 for width in cfg.model.head.hidden_dims):
        raise ValueError(f"model.head.hidden_dims {list(cfg.model.head.hidden_dims)}: widths must be >= 1")
    if not 0 <= cfg.seed <= SEED_MAX:
        raise ValueError(f"seed {cfg.seed}: must be in [0, 2^32)")
    if not 0 <= cfg.data.dataset.split_seed <= SEED_MAX:
        raise ValueError(f"data.dataset.split_seed {cfg.data.dataset.split_seed}: must be in [0, 2^32)")


def check_metric(cfg: TrainConfig) -> None:
    """early_stopping.metric must be `val_` + a metric the run's task reports."""
    check_metric_for(cfg.early_stopping.metric, task_kind(cfg.data.dataset))


def check_metric_for(metric: str, kind: str) -> None:
    """Raise ValueError unless `metric` is `val_` + a validation metric of `kind` tasks: `plan`
    (check_metric) and trainers.loop.early_stopping.Selection (with the built task's kind) both run it."""
    if not metric.startswith("val_") or metric.removeprefix("val_") not in VAL_METRICS[kind]:
        valid = ", ".join(f"val_{name}" for name in VAL_METRICS[kind] if name not in ("n_images", "threshold"))
        raise ValueError(f"early_stopping.metric {metric!r}: not a validation metric of {kind} tasks; valid: {valid}")


def resolve_files(model: ModelConfig, base: Path) -> ModelConfig:
    """pretrained_path and class_map_path made absolute against `base` (the spec's folder)."""
    changes = {}
    for field in ("pretrained_path", "class_map_path"):
        value = getattr(model, field)
        if value is not None and not Path(value).expanduser().is_absolute():
            changes[field] = str((base / Path(value).expanduser()).resolve())
    return model.model_copy(update=changes) if changes else model


def check_files(model: ModelConfig) -> None:
    """Raise FileNotFoundError now if a configured checkpoint or class-map file is missing."""
    for field, what, value in (
        ("model.pretrained_path", "checkpoint file", model.pretrained_path),
        ("model.class_map_path", "file", model.class_map_path),
    ):
        if value is not None and not Path(value).expanduser().is_file():
            raise FileNotFoundError(f"{field}: {what} {value} {_not_a_file(Path(value).expanduser())}")


def _not_a_file(path: Path) -> str:
    """Why `path` is no regular file, in words: absent, or what stands there (a FIFO read as "does not
    exist")."""
    if not path.exists():
        return why_missing(path)
    return "is a folder, not a file" if path.is_dir() else "is not a regular file (a FIFO, a device?)"


def why_missing(path: Path) -> str:
    """Why nothing stands at `path` (which does not exist), in words: a symbolic link that resolves to
    nothing (dangling, or a loop of links) says so, where "does not exist" would send the user looking
    for a missing file."""
    if path.is_symlink():
        return "is a symbolic link that leads nowhere (dangling, or a loop of links)"
    return "does not exist"
