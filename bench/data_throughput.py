"""Images/s of the training input pipeline against a bare PIL decode + resize loop.

Builds a CUB-200-2011-layout fixture of photo-sized JPEGs (default 500x375, smooth content
plus noise, quality 90, like the real set), then times in the same run:

  bare          Image.open -> RGB -> resize(S, S, bicubic) -> numpy, one process
  bare+draft    the same with libjpeg DCT downscaling (Image.draft) first
  pipeline      trainers.data.loaders.build_data's train loader (decode, resize, normalise, collate,
                epoch-seeded sampler), for each worker count and jpeg_draft setting; with
                --augment, each image also flipped and rotated (seeded per image, as in training)

and prints images/s with the ratio to the bare loop. Run:

    .venv/bin/python bench/data_throughput.py [--images 384] [--size 224] [--workers 0 1] [--photo 1024x768] [--augment]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from trainers.config import DataConfig
from trainers.data.loaders import build_data, default_num_workers, job_cpus

CLASSES = 4


def make_fixture(root: Path, n_images: int, width: int = 500, height: int = 375) -> Path:
    """CUB layout with `n_images` photo-like JPEGs over CLASSES classes."""
    rng = np.random.default_rng(0)
    images, labels, split = [], [], []
    for image_id in range(1, n_images + 1):
        label = image_id % CLASSES
        coarse = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
        pixels = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
        relative = f"{label:03d}.class_{label}/img_{image_id}.jpg"
        (root / "images" / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / "images" / relative, quality=90)
        images.append(f"{image_id} {relative}")
        labels.append(f"{image_id} {label + 1}")
        split.append(f"{image_id} 1")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (root / "classes.txt").write_text("".join(f"{i + 1} {i:03d}.class_{i}\n" for i in range(CLASSES)))
    return root


def bare_loop(paths: list[Path], size: int, draft: bool) -> float:
    """Images/s of decode + resize in this process."""
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            if draft:
                image.draft("RGB", (size, size))
            array = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
        assert array.shape == (size, size, 3)
    return len(paths) / (time.perf_counter() - started)


AUGMENT = {"hflip_p": 0.5, "rotate_deg": 10}
"""--augment: a light augmentation whose cost is mostly the per-image seeding and dispatch."""


def pipeline(root: Path, size: int, workers: int, draft: bool, batch: int, augment: bool = False) -> float:
    """Images/s of one epoch of the training loader (worker start-up included)."""
    data = DataConfig.model_validate(
        {
            "dataset": {"name": "cub200", "root": str(root), "val_fraction": 0.0},
            "image_size_px": size,
            "batch_size": batch,
            "num_workers": workers,
            "jpeg_draft": draft,
            "augment": AUGMENT if augment else None,
        }
    )
    bundle = build_data(data, seed=0)
    started = time.perf_counter()
    seen = sum(len(images) for images, _ in bundle.train)
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=384)
    parser.add_argument("--size", type=int, default=224, help="network input side (image_size_px)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="*", help="worker counts (default: 0 and the job's default)")
    parser.add_argument("--photo", default="500x375", help="fixture image size WxH (CUB photos are about 500x375)")
    parser.add_argument("--augment", action="store_true", help=f"pipeline rows with augmentation {AUGMENT}")
    args = parser.parse_args()
    workers = args.workers if args.workers else sorted({0, default_num_workers()})
    with tempfile.TemporaryDirectory() as tmp:
        width, height = (int(v) for v in args.photo.split("x"))
        root = make_fixture(Path(tmp) / "CUB_200_2011", args.images, width, height)
        paths = sorted((root / "images").rglob("*.jpg"))
        bare_loop(paths[:16], args.size, draft=False)  # warm the page cache
        bare = bare_loop(paths, args.size, draft=False)
        print(f"fixture: {len(paths)} JPEGs {args.photo} -> {args.size} px; CPUs available to this job: {job_cpus()}")
        print(f"{'loader':<32}{'images/s':>10}{'vs bare':>9}")
        print(f"{'bare PIL decode + resize':<32}{bare:>10.1f}{1.0:>9.2f}")
        bare_draft = bare_loop(paths, args.size, draft=True)
        print(f"{'bare + jpeg draft':<32}{bare_draft:>10.1f}{bare_draft / bare:>9.2f}")
        for count in workers:
            for draft in (False, True):
                rate = pipeline(root, args.size, count, draft, args.batch, args.augment)
                name = f"pipeline workers={count} draft={'on' if draft else 'off'}"
                print(f"{name:<32}{rate:>10.1f}{rate / bare:>9.2f}")


if __name__ == "__main__":
    main()
