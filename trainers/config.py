"""Typed trainer configuration: the contract between a sweep spec and one training run.

This module is data only (pydantic, no torch): the login-node side imports it to
validate and hash run configs, the GPU-node side receives it fully resolved.
Every field carries a one-line docstring; unknown keys are errors.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    """Base for every config block: frozen, unknown keys rejected. The attribute docstrings are the
    fields' descriptions where they are shown (trainers.field_docs), not read at class creation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


StrictModel = _Strict  # the same base for the orchestrator's spec models


class LabelShapeConfig(_Strict):
    """Class counts of a dataset whose classes come from its files, declared so `orchestrate
    profile` can size the heads before the files are at hand (no effect on training)."""

    classes: int = Field(ge=1)
    """Classes (single), labels (multilabel), or sub-classes without the novel slot (hierarchical)."""
    super_classes: int = Field(0, ge=0)
    """Hierarchical: super classes."""
    novel_slot: bool = False
    """Hierarchical: the sub head has one more output for novel/unseen sub-classes."""


class DatasetConfig(_Strict):
    """Which dataset a run reads, its label structure and how it is split."""

    name: str = "digits"
    """Registered dataset (digits, imagefolder, cub200, fgvc_aircraft, foodx251, hierarchical_csv, ...)."""
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
    """File or folder names that differ from the layout's defaults (keys per dataset: docs, datasets guide)."""
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Fraction held out for validation when the dataset has no official val split."""
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    """Fraction held out for test when the dataset has no official test split."""
    split_seed: int = 0
    """Seed of the stratified split; fixed per dataset so every run sees the same test set."""
    train_on_trainval: bool = False
    """Train on the official train and val splits together (FGVC-Aircraft's 6,667 trainval images,
    report 004); validation is then carved from them with val_fraction (0: no validation)."""
    level: Literal["super", "sub"] | None = None
    """Hierarchical dataset as a single-label one at this level (report 002's separate super- and
    sub-class models); None keeps the dataset's own label structure."""
    max_samples: int | None = Field(None, ge=1)
    """Cap on images per split (smoke runs); None keeps every image."""
    max_bad_fraction: float = Field(0.01, ge=0.0, le=1.0)
    """Corrupt images are skipped and counted; more than this fraction of a split fails the run."""
    label_shape: LabelShapeConfig | None = Field(None, exclude=True)
    """Declared class counts for `orchestrate profile` without the files; a hint, not part of the run id."""

    def dump_with_hints(self, **dump: Any) -> dict[str, Any]:
        """model_dump(**dump) that keeps `label_shape` (its own and its parts'): excluded from every
        dump so that no run id hashes it, it must still reach the configs `plan` builds from dumps."""
        out = self.model_dump(**dump)
        if self.label_shape is not None:
            out["label_shape"] = self.label_shape.model_dump(mode="json")
        if "parts" in out:
            out["parts"] = [part.dump_with_hints(**dump) for part in self.parts]
        return out

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
    shear_deg: float = Field(0.0, ge=0.0, lt=90.0)
    """Maximum absolute shear angle in degrees (random affine, along x); Keras' shear_range is in
    degrees too, so a Keras value carries over unchanged."""
    vflip_p: float = Field(0.0, ge=0.0, le=1.0)
    """Probability of a vertical flip (report 000's code: RandomVerticalFlip, p=0.5)."""
    policy: Literal["fgvc", "keras"] | None = None
    """Named preset filling every field not set explicitly (see AUGMENT_POLICIES); None: fields only."""

    @model_validator(mode="before")
    @classmethod
    def _expand_policy(cls, value: Any) -> Any:
        # Expanded here so the resolved config (and with it the run id) shows real values.
        if isinstance(value, dict) and value.get("policy") is not None:
            preset = AUGMENT_POLICIES.get(value["policy"])
            if preset is not None:
                return {**preset, **value}
        return value


AUGMENT_POLICIES: dict[str, dict[str, Any]] = {
    # Report 004: flip p=.25, rotation <=15 deg p=.25, jitter b/c/s [0.75, 1.25], hue [-0.05, 0.05].
    "fgvc": {"hflip_p": 0.25, "rotate_deg": 15.0, "rotate_p": 0.25, "color_jitter": (0.25, 0.25, 0.25, 0.05)},
    # Report 002 (Keras ImageDataGenerator): rotation, shift, shear, zoom, flip. The report gives no
    # numbers; these are that generator's customary values (rotation_range=20, width/height_shift_range
    # =0.2, shear_range=0.2, zoom_range=0.2, horizontal_flip). Keras' shear_range is an angle in
    # degrees, so 0.2 is 0.2 degrees (not 0.2 rad = 11.46 degrees). (Report 000 is PyTorch rotation,
    # flips, colour jitter and shift: its sweep sets those fields, not this policy.)
    "keras": {
        "hflip_p": 0.5,
        "rotate_deg": 20.0,
        "translate_frac": 0.2,
        "shear_deg": 0.2,
        "scale_range": (0.8, 1.2),
    },
}


class NormalizeStats(_Strict):
    """Explicit per-channel normalisation: (x / 255 - mean) / std."""

    mean: tuple[float, float, float]
    """Per-channel mean of [0, 1] pixel values (RGB)."""
    std: tuple[float, float, float]
    """Per-channel standard deviation of [0, 1] pixel values (RGB)."""

    @field_validator("std")
    @classmethod
    def _positive(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"std must be positive, got {list(value)}")
        return value


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
    normalize: Literal["checkpoint", "imagenet"] | NormalizeStats = "checkpoint"
    """checkpoint: the mean/std of timm's pretrained config of model.backbone (e.g. 0.5/0.5 for
    vit_*.augreg_in21k, ImageNet's for resnet50.tv_in1k; the name's default tag when it has none);
    imagenet: (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225); or {mean, std}. Resolved values go
    to metrics.json (`preprocessing`)."""
    interpolation: Literal["checkpoint", "bilinear", "bicubic"] = "checkpoint"
    """Resize filter: checkpoint = timm's pretrained config of model.backbone (bilinear for
    resnet50.tv_in1k, bicubic for most others). Images are resized whole to image_size_px, never
    cropped (every report did so; timm's crop_pct is recorded in metrics.json, not applied)."""
    pin_memory: bool | None = None
    """Page-locked host batches for faster GPU copies; None = on when CUDA is available."""
    persistent_workers: bool | None = None
    """Keep loader workers alive between epochs; None = on when there are workers. The same
    numbers either way: each image's augmentation is seeded by (seed, epoch, image index)."""
    prefetch_factor: int | None = Field(None, ge=1)
    """Batches each worker loads ahead; None = 2 with workers (torch's default)."""
    jpeg_draft: bool = True
    """Decode JPEGs at a reduced DCT scale still >= image_size_px (much faster for large photos)."""
    cache_max_mib: int = Field(512, ge=0)
    """Memory for decoded images: each split whose resized uint8 images (3 x S x S bytes each) still
    fit (train first, then val, test) is decoded once into memory and re-read from there every epoch;
    augmentation still runs per image and epoch, with the same results. 0 turns the cache off.
    Per process: every process of a multi-GPU run holds its own copy."""

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_from_name(cls, value: Any) -> Any:
        # A bare string is the common case in sweeps: `dataset: digits`.
        return {"name": value} if isinstance(value, str) else value


class HeadConfig(_Strict):
    """One classification head: features -> [Linear -> activation -> dropout] x hidden -> Linear."""

    hidden_dims: tuple[int, ...] = ()
    """Widths of the hidden layers ([512] in report 000); empty: a single linear layer."""
    activation: Literal["relu", "gelu"] = "relu"
    """Activation after each hidden layer."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout after each hidden activation."""
    batchnorm: bool = False
    """BatchNorm1d on the pooled features as the head's first layer (report 001's Keras fine-tuning
    top: BN, dropout, dense; here model.head_dropout, applied to the features, comes before it)."""


class InsertConfig(_Strict):
    """An ablation module placed on the output of one stage of the timm backbone."""

    module: Literal["scra"]
    """Registered module name (trainers.model.inserts)."""
    after_stage: int = Field(ge=1)
    """1-based feature level of timm's `feature_info`: the module gates that level's output."""


class ModelConfig(_Strict):
    """Backbone and head."""

    backbone: str = "resnet18"
    """timm model name (`timm.create_model`)."""
    pretrained_path: str | None = None
    """Local checkpoint file of backbone weights; None trains from scratch."""
    head_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout probability right before the classification head(s)."""
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0)
    """Stochastic depth of the backbone (timm.create_model's drop_path_rate, scaled per block as
    timm does; Keras EfficientNet's drop_connect_rate is the same, 0.2 by default)."""
    head: HeadConfig = HeadConfig()
    """Shape of each classification head (one linear layer unless hidden_dims is set)."""
    insert: tuple[InsertConfig, ...] = ()
    """Ablation modules inserted into the backbone, e.g. [{module: scra, after_stage: 1}]."""
    class_map_path: str | None = None
    """regime pretrained_eval: JSON file mapping each dataset class to the checkpoint's class indices."""
    class_map_scoring: Literal["mapped", "raw"] = "mapped"
    """regime pretrained_eval with a class map: mapped scores the dataset's classes (each the max of its
    checkpoint logits); raw scores the checkpoint's own argmax over all its classes against each image's
    class mapped to the checkpoint's first index (report 001's "as is", e.g. 1000-way ImageNet)."""


class OptimConfig(_Strict):
    """Optimizer."""

    name: Literal["adam", "adamw", "sgd", "adamax", "adadelta"] = "adamw"
    """Optimizer family."""
    lr: float = Field(1e-3, gt=0.0)
    """Peak learning rate."""
    weight_decay: float = Field(0.0, ge=0.0)
    """Weight decay (decoupled for AdamW, L2 for the others)."""
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    """SGD momentum."""
    nesterov: bool = False
    """SGD: Nesterov momentum."""
    grad_clip_norm: float | None = Field(None, gt=0.0)
    """Clip the global gradient L2 norm to this value before each step; None: no clipping."""


class LossConfig(_Strict):
    """Training objective."""

    name: Literal["auto", "cross_entropy", "bce", "soft_margin", "mse", "l1"] = "auto"
    """auto: cross_entropy (single, hierarchical) or bce (multilabel); the others are multilabel only."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    """Label smoothing of the cross-entropy."""
    class_weights: Literal["none", "balanced"] = "none"
    """balanced: per-class weights of sklearn compute_class_weight on the training targets, per level."""
    super_weight: float = Field(1.0, ge=0.0)
    """Hierarchical: weight of the super-class loss (w_super)."""
    sub_weight: float = Field(1.0, ge=0.0)
    """Hierarchical: weight of the sub-class loss (w_sub)."""
    l2sp: float = Field(0.0, ge=0.0)
    """L2-SP strength: adds l2sp * sum (w - w_pretrained)^2 over backbone weights; needs pretrained_path."""


class EarlyStoppingConfig(_Strict):
    """Which validation metric picks the best checkpoint, and when to stop."""

    metric: str = "val_top1"
    """`val_` + a validation metric key: val_loss, val_top1, val_macro_f1, val_super.top1, val_exact_match..."""
    mode: Literal["auto", "min", "max"] = "auto"
    """min or max is better; auto: min for names ending in `loss`, else max."""
    patience: int | None = Field(None, ge=1)
    """Stop after this many epochs without improvement; None: train every epoch."""
    min_delta: float = Field(0.0, ge=0.0)
    """Smallest change that counts as an improvement."""


class ScheduleConfig(_Strict):
    """Learning-rate schedule, stepped once per epoch."""

    name: Literal["none", "step", "cosine"] = "none"
    """Schedule family."""
    step_epochs: int = Field(5, ge=1)
    """StepLR period in epochs."""
    gamma: float = Field(0.1, gt=0.0)
    """StepLR multiplicative decay."""
    warmup_epochs: int = Field(0, ge=0)
    """Linear warm-up epochs before cosine decay (cosine only: with `step` or `none`, refused at plan)."""


# DeepSpeed keys derived from the trainer config (key -> the field that sets it): overriding
# them would make the recorded experiment differ from what runs.
DEEPSPEED_OWNED = {
    "train_batch_size": "data.batch_size",
    "train_micro_batch_size_per_gpu": "data.batch_size",
    "gradient_accumulation_steps": "distributed.grad_accum_steps",
    "gradient_clipping": "optim.grad_clip_norm",
    "bf16": "precision",
    "fp16": "precision",
    "optimizer": "optim",
    "scheduler": "schedule",
    "zero_optimization.stage": "distributed.zero_stage",
    "zero_optimization.offload_optimizer": "distributed.offload_optimizer",
    "zero_optimization.offload_param": "distributed.offload_params",
}


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
    deepspeed: dict[str, Any] = Field(default_factory=dict)
    """DeepSpeed: more config keys merged over the generated config, e.g. {zero_optimization:
    {overlap_comm: true, reduce_bucket_size: 5e8}}. Keys owned by the fields above or by
    precision/optim/schedule (batch sizes, accumulation, clipping, bf16/fp16, ZeRO stage, offload,
    optimizer, scheduler) are refused."""

    @property
    def processes(self) -> int:
        """World size: one process per GPU, at least one per node."""
        return self.nodes * max(1, self.gpus_per_node)

    @model_validator(mode="after")
    def _deepspeed_keys_not_owned(self) -> DistributedConfig:
        if self.deepspeed and self.strategy != "deepspeed":
            raise ValueError("deepspeed config keys need strategy deepspeed")
        zero = self.deepspeed.get("zero_optimization", {})
        if not isinstance(zero, dict):
            raise ValueError("deepspeed.zero_optimization must be a mapping of DeepSpeed ZeRO keys")
        keys = [*self.deepspeed, *(f"zero_optimization.{key}" for key in zero)]
        for key in keys:
            if key in DEEPSPEED_OWNED:
                raise ValueError(f"deepspeed.{key} is set from {DEEPSPEED_OWNED[key]}: set that instead")
        return self

    @model_validator(mode="after")
    def _offload_fits_stage(self) -> DistributedConfig:
        # DeepSpeed would reject (or silently ignore) these only once the job runs on the cluster.
        zero = self.zero_stage if self.strategy == "deepspeed" else None
        if self.offload_params and zero != 3:
            raise ValueError("offload_params needs strategy deepspeed with zero_stage 3")
        if self.offload_optimizer and (zero is None or zero == 0):
            raise ValueError("offload_optimizer needs strategy deepspeed with zero_stage 1-3")
        return self


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
    """Mixed precision: auto is bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    channels_last: bool = False
    """NHWC memory layout for model and images: faster convolutions with bf16/fp16 on tensor-core GPUs."""
    max_steps_per_epoch: int | None = Field(None, ge=1)
    """Stop each epoch after this many optimizer steps (smoke runs)."""
    torch_threads: int | None = Field(None, ge=1)
    """CPU threads for torch; None lets torch decide from the job's CPU count."""
    checkpoint_every_min: float | None = Field(None, gt=0)
    """Also save checkpoints/last mid-epoch (at an optimizer-step boundary) every this many minutes, so a
    killed job loses at most that much; None saves at epoch ends (and on USR2) only. For long epochs."""
    loss: LossConfig = LossConfig()
    """Training objective (loss, class weights, hierarchical weights, L2-SP)."""
    regime: Literal["train", "linear_probe", "pretrained_eval"] = "train"
    """train: all weights (from scratch, or fine-tuned from pretrained_path); linear_probe: frozen backbone
    and new head; pretrained_eval: no training, the checkpoint's own head (through model.class_map_path)."""
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    """Best-checkpoint metric and early stopping."""
    checkpoint_for_test: Literal["best", "last"] = "best"
    """Which model the test split scores: best (the early_stopping metric's best epoch) or last (the
    model after the final epoch, as reports 003 and 004 do)."""
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    """Multilabel: a label is predicted when its sigmoid probability is >= threshold."""
    distributed: DistributedConfig = DistributedConfig()
    """Job size (nodes, GPUs) and parallel strategy; the global batch size stays data.batch_size."""
    trackers: tuple[Literal["tensorboard", "mlflow", "wandb"], ...] = ()
    """Experiment trackers the run logs to through Accelerate (config, per-step loss and lr, per-epoch
    validation, final test metrics); empty: history.csv and metrics.json only."""
    compile: bool = False
    """torch.compile the model (the first steps pay for compilation; then faster on GPU)."""
    deterministic: bool = False
    """Deterministic GPU kernels (`torch.use_deterministic_algorithms`, no cuDNN autotuning): two runs
    of one config, and a resumed run against an uninterrupted one, then give the same numbers on a GPU
    too, at some speed; an operation with no deterministic kernel raises instead of running. CPU runs
    repeat exactly either way."""

    @field_validator("trackers")
    @classmethod
    def _trackers_installed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Checked when the sweep is planned (find_spec imports nothing), not hours later on the node.
        missing = [name for name in value if importlib.util.find_spec(name) is None]
        if missing:
            raise ValueError(
                f"tracker package(s) not installed: {', '.join(missing)} (pip install {' '.join(missing)}, "
                "or pip install 'orchestrate-sweeps[trackers]')"
            )
        if len(set(value)) != len(value):
            raise ValueError(f"trackers listed twice: {list(value)}")
        return value

    @model_validator(mode="after")
    def _batch_divides(self) -> TrainConfig:
        # The global batch is the experiment; it must split evenly into per-device micro-batches.
        parts = self.distributed.processes * self.distributed.grad_accum_steps
        if self.data.batch_size % parts:
            raise ValueError(
                f"data.batch_size {self.data.batch_size} is not divisible by processes x grad_accum_steps = {parts}"
            )
        return self

    @model_validator(mode="after")
    def _patch_divides_image(self) -> TrainConfig:
        # A ViT cuts the image into patches: a size that is no multiple of the patch fails at the
        # first forward on the node (timm names carry the patch size: vit_small_patch8_224).
        match = re.search(r"patch(\d+)", self.model.backbone)
        size = self.data.image_size_px
        patch = int(match.group(1)) if match else 0
        if patch and size % patch:
            lower = size // patch * patch
            fits = f"{lower} or {lower + patch}" if lower else f"{patch}"
            raise ValueError(
                f"data.image_size_px {size} is not a multiple of {self.model.backbone}'s {patch} px patch "
                f"(the last {size % patch} px of each row and column would be dropped); use {fits}"
            )
        return self

    @model_validator(mode="after")
    def _offload_runs_adam(self) -> TrainConfig:
        # Accelerate swaps an offloaded optimizer for DeepSpeed's CPU Adam whatever it was:
        # SGD would silently train as Adam.
        if self.distributed.offload_optimizer and self.optim.name not in ("adam", "adamw"):
            raise ValueError(
                f"distributed.offload_optimizer runs DeepSpeed's CPU Adam: optim.name {self.optim.name!r} "
                "must be adam or adamw"
            )
        return self

    @model_validator(mode="after")
    def _l2sp_needs_whole_weights(self) -> TrainConfig:
        # L2-SP reads every backbone weight outside forward(); ZeRO-3 holds only a shard of each.
        dist = self.distributed
        if self.loss.l2sp > 0 and dist.strategy == "deepspeed" and dist.zero_stage == 3:
            raise ValueError("loss.l2sp is not supported with DeepSpeed zero_stage 3 (use zero_stage 0-2 or ddp)")
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
