"""Image transforms (torchvision.transforms.v2): resize, optional augmentation, normalise.

The training loaders stop at uint8 tensors (`normalize=False`): normalising is one batched
operation on the device (`BatchNormalize`), not a float conversion per image in the workers,
and a uint8 batch is a quarter of the bytes to copy to a GPU."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import InterpolationMode, v2

from trainers.config import AugmentConfig, DataConfig, NormalizeStats

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def checkpoint_preprocessing(backbone: str) -> dict[str, Any]:
    """timm's pretrained config of `backbone` ("arch.tag", or the arch's default tag): mean, std,
    interpolation and crop_pct, and which config they come from. A model timm has no pretrained
    config for gets ImageNet's statistics and bicubic (`pretrained_cfg` None), rather than a
    failure on the compute node after the queue wait."""
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(backbone)
    except (RuntimeError, ValueError):
        cfg = None
    if cfg is None:
        return {
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "interpolation": "bicubic",
            "crop_pct": None,
            "pretrained_cfg": None,
        }
    arch = backbone.split(".", 1)[0]
    tag = cfg.tag or ""
    return {
        "mean": tuple(float(v) for v in cfg.mean),
        "std": tuple(float(v) for v in cfg.std),
        "interpolation": cfg.interpolation if cfg.interpolation in INTERPOLATIONS else "bicubic",
        "crop_pct": cfg.crop_pct,
        "pretrained_cfg": f"{arch}.{tag}" if tag else arch,
    }


def resolve_preprocessing(data: DataConfig, backbone: str) -> DataConfig:
    """`data` with normalize and interpolation `checkpoint` replaced by the values of timm's
    pretrained config of `backbone` (the trainer and eval/predict call this before any transform)."""
    if data.normalize != "checkpoint" and data.interpolation != "checkpoint":
        return data
    own = checkpoint_preprocessing(backbone)
    update: dict[str, Any] = {}
    if data.normalize == "checkpoint":
        update["normalize"] = NormalizeStats(mean=own["mean"], std=own["std"])
    if data.interpolation == "checkpoint":
        update["interpolation"] = own["interpolation"]
    return data.model_copy(update=update)


def stats(data: DataConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of `data.normalize`; an unresolved `checkpoint` reads as ImageNet's (call
    resolve_preprocessing first to get the checkpoint's own)."""
    if isinstance(data.normalize, NormalizeStats):
        return data.normalize.mean, data.normalize.std
    return IMAGENET_MEAN, IMAGENET_STD


def interpolation(data: DataConfig) -> InterpolationMode:
    """The resize filter of `data`; an unresolved `checkpoint` reads as bicubic."""
    return INTERPOLATIONS.get(data.interpolation, InterpolationMode.BICUBIC)


def preprocessing_record(data: DataConfig, backbone: str) -> dict[str, Any]:
    """What metrics.json records: the mean/std and filter in effect, and timm's config of the backbone."""
    mean, std = stats(data)
    record: dict[str, Any] = {"mean": list(mean), "std": list(std), "interpolation": data.interpolation}
    own = checkpoint_preprocessing(backbone)
    record["pretrained_cfg"] = own["pretrained_cfg"]
    record["timm_crop_pct"] = own["crop_pct"]  # recorded, not applied: images are resized whole
    return record


def augmentations(augment: AugmentConfig) -> list[v2.Transform]:
    """The train-time random transforms an AugmentConfig asks for (none when all are off);
    a `policy` preset is already expanded into the fields by the config."""
    steps: list[v2.Transform] = []
    if augment.hflip_p > 0:
        steps.append(v2.RandomHorizontalFlip(p=augment.hflip_p))
    if augment.vflip_p > 0:
        steps.append(v2.RandomVerticalFlip(p=augment.vflip_p))
    if augment.rotate_deg > 0 and augment.rotate_p > 0:
        rotate = v2.RandomRotation(augment.rotate_deg, interpolation=InterpolationMode.BILINEAR)
        steps.append(v2.RandomApply([rotate], p=augment.rotate_p))
    if augment.color_jitter is not None:
        brightness, contrast, saturation, hue = augment.color_jitter
        steps.append(v2.ColorJitter(brightness, contrast, saturation, hue))
    if augment.translate_frac > 0 or augment.scale_range is not None or augment.shear_deg > 0:
        # Shift, zoom and shear in one affine warp (Keras' ImageDataGenerator recipe).
        translate = (augment.translate_frac, augment.translate_frac)
        shear = augment.shear_deg if augment.shear_deg > 0 else None
        steps.append(v2.RandomAffine(degrees=0, translate=translate, scale=augment.scale_range, shear=shear))
    return steps


def build_transform(data: DataConfig, train: bool, normalize: bool = True) -> v2.Compose:
    """PIL image -> normalised float tensor [3, S, S], S = data.image_size_px (without
    `normalize`: the uint8 tensor before normalising, for BatchNormalize).

    Augmentation is applied only when `train` and data.augment is set, so validation and
    test always see the same deterministic pipeline.
    """
    steps = resize_steps(data)
    steps.extend(random_steps(data, train))
    steps.append(v2.ToImage())
    if normalize:
        mean, std = stats(data)
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    return v2.Compose(steps)


def resize_steps(data: DataConfig) -> list[v2.Transform]:
    """The deterministic start of every pipeline: optional grayscale, then the square resize."""
    size = data.image_size_px
    steps: list[v2.Transform] = []
    if data.grayscale:
        # Three identical channels: pretrained stems and the GFLOPs convention expect 3xHxW.
        steps.append(v2.Grayscale(num_output_channels=3))
    # Square resize (not crop) so every image has exactly the input size recorded with GFLOPs.
    steps.append(v2.Resize((size, size), interpolation=interpolation(data), antialias=True))
    return steps


def random_steps(data: DataConfig, train: bool) -> list[v2.Transform]:
    """The random part of a pipeline (train-time augmentation; none for evaluation)."""
    return augmentations(data.augment) if train and data.augment is not None else []


def cached_stages(data: DataConfig, train: bool) -> tuple[v2.Compose, v2.Compose | None]:
    """The uint8 pipeline cut where an image cache can hold its result: the deterministic part
    (PIL image -> resized uint8 tensor), and the random rest from that tensor (None without
    augmentation). The rest goes back to a PIL image first, a lossless step for uint8 RGB, so
    the augmentations see exactly what they see in `build_transform` and give the same pixels."""
    prefix = v2.Compose([*resize_steps(data), v2.ToImage()])
    random = random_steps(data, train)
    rest = v2.Compose([v2.ToPILImage(), *random, v2.ToImage()]) if random else None
    return prefix, rest


class BatchNormalize:
    """uint8 image batches [n, 3, S, S] -> normalised float32 on their device, in one step;
    float batches pass unchanged (already normalised)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean, self.std = tuple(mean), tuple(std)
        self._scale: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            return images
        if images.device not in self._scale:
            # (x / 255 - mean) / std as one multiply-add: x * a + b.
            std = torch.tensor(self.std, device=images.device).view(1, 3, 1, 1)
            mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1)
            self._scale[images.device] = (1 / (255 * std), -mean / std)
        a, b = self._scale[images.device]
        return torch.addcmul(b, images.float(), a)
