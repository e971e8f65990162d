"""Evaluation of a multi-process run when an image of the test split cannot be decoded: every
rank keeps its batch size through gather_for_metrics (the unreadable image's place is masked out
after it), so the run finishes and scores the readable images. A 2-process torchrun (gloo): slow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dataset_fixtures import write_image

from trainers import rundir

pytestmark = pytest.mark.slow

WORKER = Path(__file__).resolve().parent / "bad_image_worker.py"
CLASSES = ["cat", "dog", "owl"]
PER_CLASS = {"train": 8, "val": 3, "test": 3}


def write_dataset(root: Path) -> None:
    """A 3-class ImageFolder with train/val/test folders and one unreadable test image."""
    seed = 0
    for split, count in PER_CLASS.items():
        for label, name in enumerate(CLASSES):
            for i in range(count):
                write_image(root / split / name / f"{name}{split}{i}.png", label, seed, 16)
                seed += 1
    (root / "test" / "cat" / "cat_unreadable.png").write_bytes(b"not an image at all" * 10)


def test_two_processes_score_a_test_split_with_an_unreadable_image(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data")
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2", "--standalone"]
    command += [str(WORKER), str(tmp_path / "data"), str(tmp_path / "run")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = rundir.read_json(tmp_path / "run" / rundir.METRICS) or {}
    assert metrics["test"]["n_images"] == PER_CLASS["test"] * len(CLASSES)  # every readable one, once
    assert metrics["data"]["skipped_images"]["test"] == 1
    assert metrics["parallel"]["processes"] == 2
