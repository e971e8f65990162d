"""Image transforms (torchvision.transforms.v2): resize, optional augmentation, normalise.

The training loaders stop at uint8 tensors (`normalize=False`): normalising is one batched
operation on the device (`BatchNormalize`), not a float conversion per image in the workers,
and a uint8 batch is a quarter of the bytes to copy to a GPU."""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

from trainers.config import AugmentConfig, DataConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def augmentations(augment: AugmentConfig) -> list[v2.Transform]:
    """The train-time random transforms an AugmentConfig asks for (none when all are off);
    a `policy` preset is already expanded into the fields by the config."""
    steps: list[v2.Transform] = []
    if augment.hflip_p > 0:
        steps.append(v2.RandomHorizontalFlip(p=augment.hflip_p))
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
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)]
    return v2.Compose(steps)


def resize_steps(data: DataConfig) -> list[v2.Transform]:
    """The deterministic start of every pipeline: optional grayscale, then the square resize."""
    size = data.image_size_px
    steps: list[v2.Transform] = []
    if data.grayscale:
        # Three identical channels: pretrained stems and the GFLOPs convention expect 3xHxW.
        steps.append(v2.Grayscale(num_output_channels=3))
    # Square resize (not crop) so every image has exactly the input size recorded with GFLOPs.
    steps.append(v2.Resize((size, size), interpolation=InterpolationMode.BICUBIC, antialias=True))
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

    def __init__(self) -> None:
        self._scale: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            return images
        if images.device not in self._scale:
            # (x / 255 - mean) / std as one multiply-add: x * a + b.
            std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
            mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
            self._scale[images.device] = (1 / (255 * std), -mean / std)
        a, b = self._scale[images.device]
        return torch.addcmul(b, images.float(), a)
