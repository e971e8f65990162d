"""Typed trainer configuration: the contract between a sweep spec and one training run.

This module is data only (pydantic, no torch): the login-node side imports it to
validate and hash run configs, the GPU-node side receives it fully resolved.
Every field carries a one-line docstring; unknown keys are errors.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    """Base for every config block: frozen, unknown keys rejected, docstrings as descriptions."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class DatasetConfig(_Strict):
    """Which dataset a run reads, its label structure and how it is split."""

    name: str = "digits"
    """Registered dataset: digits, imagefolder, cub200, fgvc_aircraft, foodx251, hierarchical_csv, multilabel, combined."""
    root: str | None = None
    """Dataset root on disk; not needed for `digits` (bundled with scikit-learn) or `combined`."""
    label: str | None = None
    """Column title in tables; defaults to `name`."""
    task: Literal["single", "hierarchical", "multilabel"] | None = None
    """Label structure to build; None = the dataset's own (digits and fgvc_aircraft offer the others too)."""
    super_level: str | None = None
    """Super-class level of a hierarchical view (fgvc_aircraft: family or manufacturer; default family)."""
    novel_subclasses: tuple[str, ...] = ()
    """Hierarchical: sub-classes held out of train/val whose test images are labelled with the novel slot."""
    parts: tuple[DatasetConfig, ...] = ()
    """`combined` only: the datasets to concatenate, labels offset in this order."""
    layout: dict[str, str] = {}
    """File or folder names that differ from the layout's defaults (keys per dataset, see README)."""
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Fraction held out for validation when the dataset has no official val split."""
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    """Fraction held out for test when the dataset has no official test split."""
    split_seed: int = 0
    """Seed of the stratified split; fixed per dataset so every run sees the same test set."""
    max_samples: int | None = Field(None, ge=1)
    """Cap on images per split (smoke runs); None keeps every image."""
    max_bad_fraction: float = Field(0.01, ge=0.0, le=1.0)
    """Corrupt images are skipped and counted; more than this fraction of a split fails the run."""

    @field_validator("parts", mode="before")
    @classmethod
    def _parts_from_names(cls, value: Any) -> Any:
        # `parts: [cub200, fgvc_aircraft]` is short for mappings with only a name.
        if isinstance(value, list | tuple):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @property
    def display_name(self) -> str:
        """Name shown in tables."""
        return self.label or self.name


class AugmentConfig(_Strict):
    """Train-time augmentation (torchvision v2); all probabilities are per image."""

    hflip_p: float = Field(0.0, ge=0.0, le=1.0)
    """Probability of a horizontal flip."""
    rotate_deg: float = Field(0.0, ge=0.0, le=180.0)
    """Maximum absolute rotation in degrees."""
    rotate_p: float = Field(1.0, ge=0.0, le=1.0)
    """Probability that the rotation is applied."""
    color_jitter: tuple[float, float, float, float] | None = None
    """Brightness, contrast, saturation, hue jitter strengths (torchvision ColorJitter)."""
    translate_frac: float = Field(0.0, ge=0.0, lt=1.0)
    """Maximum shift as a fraction of the image side (random affine)."""
    scale_range: tuple[float, float] | None = None
    """Zoom range of the random affine, e.g. [0.9, 1.1]."""


class DataConfig(_Strict):
    """Input pipeline."""

    dataset: DatasetConfig = DatasetConfig()
    """Dataset and split."""
    image_size_px: int = Field(224, ge=8)
    """Side of the square input image in pixels (images are resized to it)."""
    batch_size: int = Field(64, ge=1)
    """Global batch size (images per optimizer step over all devices)."""
    num_workers: int | None = Field(None, ge=0)
    """DataLoader worker processes; None derives it from the job's CPU count."""
    augment: AugmentConfig | None = None
    """Train-time augmentation; None trains on resized images only."""
    grayscale: bool = False
    """Convert images to grayscale (replicated to 3 channels for pretrained stems)."""
    pin_memory: bool | None = None
    """Page-locked host batches for faster GPU copies; None = on when CUDA is available."""
    persistent_workers: bool | None = None
    """Keep loader workers alive between epochs; None = on when there are workers."""
    prefetch_factor: int | None = Field(None, ge=1)
    """Batches each worker loads ahead; None = 4 with workers (torch default 2)."""
    jpeg_draft: bool = True
    """Decode JPEGs at a reduced DCT scale still >= image_size_px (much faster for large photos)."""

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_from_name(cls, value: Any) -> Any:
        # A bare string is the common case in sweeps: `dataset: digits`.
        return {"name": value} if isinstance(value, str) else value


class ModelConfig(_Strict):
    """Backbone and head."""

    backbone: str = "resnet18"
    """timm model name (`timm.create_model`)."""
    pretrained_path: str | None = None
    """Local checkpoint file of backbone weights; None trains from scratch."""
    head_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout probability right before the classification head."""


class OptimConfig(_Strict):
    """Optimizer."""

    name: Literal["adam", "adamw", "sgd"] = "adamw"
    """Optimizer family."""
    lr: float = Field(1e-3, gt=0.0)
    """Peak learning rate."""
    weight_decay: float = Field(0.0, ge=0.0)
    """Weight decay (decoupled for AdamW, L2 for Adam and SGD)."""
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    """SGD momentum."""


class ScheduleConfig(_Strict):
    """Learning-rate schedule, stepped once per epoch."""

    name: Literal["none", "step", "cosine"] = "none"
    """Schedule family."""
    step_epochs: int = Field(5, ge=1)
    """StepLR period in epochs."""
    gamma: float = Field(0.1, gt=0.0)
    """StepLR multiplicative decay."""
    warmup_epochs: int = Field(0, ge=0)
    """Linear warm-up epochs before cosine decay."""


class DistributedConfig(_Strict):
    """How big one run's job is and how its processes cooperate (one process per GPU)."""

    nodes: int = Field(1, ge=1)
    """Nodes of the job."""
    gpus_per_node: int = Field(0, ge=0)
    """GPUs per node; one process (SLURM task) per GPU. 0 = one CPU process (or one GPU if present)."""
    strategy: Literal["ddp", "deepspeed"] = "ddp"
    """Data parallelism (DDP) or DeepSpeed ZeRO (through Accelerate's DeepSpeedPlugin)."""
    zero_stage: int = Field(2, ge=0, le=3)
    """DeepSpeed ZeRO stage (0-3); only with strategy deepspeed."""
    offload_optimizer: bool = False
    """DeepSpeed: keep optimizer state in CPU memory."""
    offload_params: bool = False
    """DeepSpeed ZeRO-3: keep parameters in CPU memory."""
    grad_accum_steps: int = Field(1, ge=1)
    """Micro-batches per optimizer step; per-device batch = batch_size / (processes x this)."""

    @property
    def processes(self) -> int:
        """World size: one process per GPU, at least one per node."""
        return self.nodes * max(1, self.gpus_per_node)


class TrainConfig(_Strict):
    """Everything one run needs; its content hash is the run id."""

    model: ModelConfig = ModelConfig()
    """Backbone and head."""
    data: DataConfig = DataConfig()
    """Input pipeline."""
    optim: OptimConfig = OptimConfig()
    """Optimizer."""
    schedule: ScheduleConfig = ScheduleConfig()
    """Learning-rate schedule."""
    epochs: int = Field(10, ge=1)
    """Training epochs."""
    seed: int = 0
    """Seed of weights init, data order and augmentation."""
    precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """Mixed precision: auto is bf16 on GPU and fp32 on CPU."""
    max_steps_per_epoch: int | None = Field(None, ge=1)
    """Stop each epoch after this many optimizer steps (smoke runs)."""
    torch_threads: int | None = Field(None, ge=1)
    """CPU threads for torch; None lets torch decide from the job's CPU count."""
    distributed: DistributedConfig = DistributedConfig()
    """Job size (nodes, GPUs) and parallel strategy; the global batch size stays data.batch_size."""

    @model_validator(mode="after")
    def _batch_divides(self) -> TrainConfig:
        # The global batch is the experiment; it must split evenly into per-device micro-batches.
        parts = self.distributed.processes * self.distributed.grad_accum_steps
        if self.data.batch_size % parts:
            raise ValueError(
                f"data.batch_size {self.data.batch_size} is not divisible by processes x grad_accum_steps = {parts}"
            )
        return self


def config_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted names of every leaf field of a config model (for error messages and docs)."""
    names: list[str] = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            names.extend(config_fields(sub, f"{prefix}{name}."))
        else:
            names.append(f"{prefix}{name}")
    return names
