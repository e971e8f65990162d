"""Image transforms (torchvision.transforms.v2): resize, optional augmentation, normalise."""

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


def build_transform(data: DataConfig, train: bool) -> v2.Compose:
    """PIL image -> normalised float tensor [3, S, S], S = data.image_size_px.

    Augmentation is applied only when `train` and data.augment is set, so validation and
    test always see the same deterministic pipeline.
    """
    size = data.image_size_px
    steps: list[v2.Transform] = []
    if data.grayscale:
        # Three identical channels: pretrained stems and the GFLOPs convention expect 3xHxW.
        steps.append(v2.Grayscale(num_output_channels=3))
    # Square resize (not crop) so every image has exactly the input size recorded with GFLOPs.
    steps.append(v2.Resize((size, size), interpolation=InterpolationMode.BICUBIC, antialias=True))
    if train and data.augment is not None:
        steps.extend(augmentations(data.augment))
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ]
    return v2.Compose(steps)
