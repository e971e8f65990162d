"""Real CPU training on digits: it learns, writes its run directory, and resumes exactly."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from config_helpers import config_with, run_killed_after_first_epoch

import trainers
from trainers import rundir
from trainers.config import TrainConfig
from trainers.loop import checkpoint
from trainers.loop.build import build_parts, release_accelerator
from trainers.loop.optim import WarmupCosine
from trainers.loop.run import run_training
from trainers.runtime import distributed
from trainers.runtime.preemption import Preempted, StopAt


def _config(**overrides: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "model": {"backbone": "test_resnet"},
        "data": {"dataset": "digits", "image_size_px": 32, "batch_size": 64, "num_workers": 0},
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 1e-4},
        "schedule": {"name": "cosine"},
        "epochs": 3,
        "torch_threads": 2,
    }
    return config_with(base, {key.replace(".", "__"): value for key, value in overrides.items()})


def test_training_on_digits_learns_and_writes_run_dir(tmp_path: Path) -> None:
    metrics = trainers.run(_config(), tmp_path)
    assert metrics["test"]["top1"] > 0.9
    assert metrics["test"]["n_images"] == 359 and metrics["val"]["n_images"] == 180
    assert set(metrics["test"]) >= {"top1", "top5", "macro_precision", "macro_recall", "macro_f1"}
    assert all(0 <= metrics["test"][k] <= 1 for k in ("top1", "top5", "macro_f1"))
    assert metrics["epochs_trained"] == 3 and 1 <= metrics["best_epoch"] <= 3
    assert metrics["complexity"]["params"] > 0 and metrics["complexity"]["input_size_px"] == 32
    assert metrics["provenance"]["device"] == "cpu" and "torch" in metrics["provenance"]["packages"]
    assert metrics["timing"]["wall_s"] > 0 and metrics["timing"]["train_images_per_s"] > 0
    assert json.loads((tmp_path / rundir.METRICS).read_text()) == metrics
    assert not (tmp_path / rundir.STATUS).exists()  # status belongs to the job wrapper
    with (tmp_path / rundir.HISTORY).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == [
        "epoch",
        "train_loss",
        "val_loss",
        "val_top1",
        "val_macro_f1",
        "train_top1",
        "lr",
        "epoch_s",
        "train_images_per_s",
    ]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["train_top1"]) > float(rows[0]["train_top1"])  # it learns the training images
    ckpt = tmp_path / rundir.CHECKPOINTS
    assert checkpoint.read_state(ckpt / "last")["epochs_done"] == 3
    assert checkpoint.read_state(ckpt / "best")["epoch"] == metrics["best_epoch"]
    assert sorted(p.name for p in ckpt.iterdir()) == ["best", "last"]  # no temp folders left


def test_resume_after_interruption_gives_identical_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Augmentation, dropout and a loader worker: every source of randomness is exercised.
    cfg = _config(
        **{
            "epochs": 2,
            "data.augment": {"rotate_deg": 10, "translate_frac": 0.1, "hflip_p": 0.5},
            "data.num_workers": 1,
            "model.head_dropout": 0.3,
        }
    )
    straight = trainers.run(cfg, tmp_path / "straight")
    run_killed_after_first_epoch(cfg, tmp_path / "resumed", monkeypatch)
    assert not (tmp_path / "resumed" / rundir.METRICS).exists()
    resumed = trainers.run(cfg, tmp_path / "resumed")

    assert resumed["test"] == straight["test"]
    assert resumed["val"] == straight["val"]
    assert resumed["best_epoch"] == straight["best_epoch"]
    assert resumed["epochs_trained"] == 2
    assert straight["best_epoch"] == 2  # so the test metrics come from weights trained after the resume

    def losses(run_dir: Path) -> list[tuple[str, ...]]:
        with (run_dir / rundir.HISTORY).open() as handle:
            return [(r["epoch"], r["train_loss"], r["val_loss"], r["lr"]) for r in csv.DictReader(handle)]

    assert losses(tmp_path / "resumed") == losses(tmp_path / "straight")


def test_finished_run_called_again_only_evaluates(tmp_path: Path) -> None:
    cfg = _config(epochs=1, max_steps_per_epoch=2, **{"data.dataset": {"name": "digits", "max_samples": 200}})
    first = trainers.run(cfg, tmp_path / "run")
    second = trainers.run(cfg, tmp_path / "run")
    assert second["test"] == first["test"]
    assert second["timing"]["train_images_per_s"] is None  # nothing was trained this time
    assert first["timing"]["train_images"] == 2 * 64  # max_steps_per_epoch=2 batches of 64
    assert first["epochs_trained"] == 1


def test_runs_in_one_process_may_change_precision(tmp_path: Path) -> None:
    # Accelerate's process-wide state is released after each run (debug executor, notebooks).
    cfg = _config(epochs=1, max_steps_per_epoch=1, **{"data.dataset": {"name": "digits", "max_samples": 100}})
    trainers.run(cfg, tmp_path / "fp32")
    bf16 = trainers.run(cfg.model_copy(update={"precision": "bf16"}), tmp_path / "bf16")
    assert bf16["test"]["n_images"] == 100


def test_channels_last_lays_out_weights_nhwc_and_trains_the_same(tmp_path: Path) -> None:
    cfg = _config(epochs=1, max_steps_per_epoch=4, **{"data.dataset": {"name": "digits", "max_samples": 300}})
    nhwc = cfg.model_copy(update={"channels_last": True})
    parts = build_parts(nhwc, tmp_path / "probe")
    try:
        convs = [p for p in parts.model.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        assert not all(p.is_contiguous() for p in convs)  # really NHWC, not a 1x1 case that is both
    finally:
        release_accelerator(parts.accelerator)
    plain, last = trainers.run(cfg, tmp_path / "nchw"), trainers.run(nhwc, tmp_path / "nhwc")
    assert last["test"]["loss"] == pytest.approx(plain["test"]["loss"], rel=1e-3)  # same math, other kernels


def test_interrupted_checkpoint_swap_falls_back_to_previous(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints"
    (ckpt / "last.old").mkdir(parents=True)
    rundir.write_json(ckpt / "last.old" / checkpoint.STATE_FILE, {"epochs_done": 3})
    (ckpt / "last.tmp").mkdir()  # a save killed midway: never trusted
    assert checkpoint.find_complete(ckpt, checkpoint.LAST) == ckpt / "last.old"


def test_warmup_cosine_factors() -> None:
    schedule = WarmupCosine(warmup_epochs=2, epochs=6)
    factors = [schedule(e) for e in range(6)]
    assert factors[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert all(a > b for a, b in itertools.pairwise(factors[2:])) and factors[-1] > 0


@pytest.mark.parametrize(
    ("cuda", "bf16", "expected"), [(False, False, "no"), (True, True, "bf16"), (True, False, "fp16")]
)
def test_auto_precision_follows_the_device(
    cuda: bool, bf16: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only our choice is tested here (no GPU in CI): bf16 where the GPU has it, fp16 on V100/T4.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    assert distributed.precision_of(_config()) == expected
    assert distributed.precision_of(_config(precision="bf16")) == "bf16"  # an explicit choice stands


def test_auto_precision_is_kept_on_resume_on_another_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Attempt 1 on a node where auto is bf16 (an Ampere GPU, here simulated), preempted after epoch 1;
    # attempt 2 on a node where auto would be fp32 (this CPU) goes on in bf16, and says so.
    cfg = _config(epochs=2, max_steps_per_epoch=1, **{"data.dataset": {"name": "digits", "max_samples": 64}})
    with monkeypatch.context() as node:
        node.setattr(distributed, "precision_of", lambda config: "bf16")
        with pytest.raises(Preempted):
            run_training(cfg, tmp_path, stop=StopAt(1, 0))
    assert distributed.precision_of(cfg) == "no"
    metrics = trainers.run(cfg, tmp_path)
    assert metrics["parallel"]["mixed_precision"] == "bf16"
    assert metrics["provenance"]["attempt_precisions"] == ["bf16", "bf16"]
    assert checkpoint.recorded_precision(tmp_path / rundir.CHECKPOINTS) == "bf16"


@pytest.mark.parametrize(("recorded", "bf16"), [("fp16", False), ("bf16", False)])
def test_a_node_that_cannot_run_the_recorded_precision_refuses_to_resume(
    recorded: str, bf16: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_gpu = recorded == "bf16"  # fp16 on a CPU node; bf16 on a GPU without it (V100)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: on_gpu)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(RuntimeError, match=f"this run trained in {recorded} .* cannot resume in it"):
        distributed.run_precision(_config(), recorded)
    assert distributed.run_precision(_config(precision="no"), recorded) == "no"  # an explicit choice stands
    assert distributed.run_precision(_config(), None) == distributed.precision_of(_config())  # a first attempt
