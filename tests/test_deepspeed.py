"""DeepSpeed ZeRO on CPU, 2 processes (torchrun, gloo): under ZeRO-3 the best checkpoint of an
earlier epoch is saved whole and reloaded into partitioned parameters for the final evaluation;
at ZeRO 0, 1 and 3 a run stopped after its first epoch resumes to the same numbers.
(ZeRO-2 is resumed through SLURM preemption in test_distributed.py.)"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from trainers import rundir

WORKER = Path(__file__).with_name("deepspeed_worker.py")
EPOCHS = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def train(run_dir: Path, epochs: int, zero_stage: int, precision: str = "no") -> None:
    """Train (or resume) the worker's ZeRO cell in `run_dir` with 2 processes."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
        f"--master-port={free_port()}", str(WORKER), str(run_dir), str(epochs), str(zero_stage), precision,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def history(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / rundir.HISTORY).open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """The run folder of 3 uninterrupted epochs at a ZeRO stage (trained once per stage)."""
    done: dict[int, Path] = {}

    def run_dir(zero_stage: int) -> Path:
        if zero_stage not in done:
            done[zero_stage] = tmp_path_factory.mktemp(f"zero{zero_stage}")
            train(done[zero_stage], EPOCHS, zero_stage)
        return done[zero_stage]

    return run_dir


def test_zero3_reloads_an_earlier_best_epoch_into_partitioned_parameters(straight: Callable[[int], Path]) -> None:
    run_dir = straight(3)
    partitioning = json.loads((run_dir / "partitioning.json").read_text())
    assert partitioning["local_numel"] == 0 < partitioning["full_numel"], partitioning
    metrics = rundir.read_json(run_dir / rundir.METRICS) or {}
    val_top1 = [float(row["val_top1"]) for row in history(run_dir)]
    assert metrics["provenance"]["num_processes"] == 2 and len(val_top1) == EPOCHS
    expected = {"distributed_type": "DEEPSPEED", "processes": 2, "global_batch": 32, "per_device_batch": 16,
                "grad_accum_steps": 1, "zero_stage": 3}  # fmt: skip
    assert {key: metrics["parallel"].get(key) for key in expected} == expected
    engine = rundir.read_json(run_dir / rundir.DEEPSPEED_CONFIG) or {}
    assert engine["train_batch_size"] == 32 and engine["train_micro_batch_size_per_gpu"] == 16
    assert engine["zero_optimization"]["stage"] == 3
    assert engine["zero_optimization"]["stage3_param_persistence_threshold"] == 0  # the spec's extra key
    best = metrics["best_epoch"]
    assert val_top1[best - 1] != val_top1[-1], "the test needs a best epoch whose weights differ from the last"
    # The final evaluation ran on the reloaded best weights, not on whatever the model last held.
    assert metrics["val"]["top1"] == pytest.approx(val_top1[best - 1], abs=1e-9)


@pytest.mark.parametrize("zero_stage", [0, 1, 3])
def test_zero_run_resumes_its_sharded_state_exactly(
    zero_stage: int, straight: Callable[[int], Path], tmp_path: Path
) -> None:
    train(tmp_path, 1, zero_stage)  # stops after epoch 1 with checkpoints/last, as a preempted job would
    assert len(history(tmp_path)) == 1
    train(tmp_path, EPOCHS, zero_stage)  # resumes at epoch 2 from the engine's (sharded) state
    columns = ("epoch", "train_loss", "val_loss", "val_top1")
    reference = straight(zero_stage)
    resumed = [[row[c] for c in columns] for row in history(tmp_path)]
    assert resumed == [[row[c] for c in columns] for row in history(reference)]
    metrics = rundir.read_json(tmp_path / rundir.METRICS) or {}
    assert metrics["parallel"]["zero_stage"] == zero_stage
    assert metrics["test"] == (rundir.read_json(reference / rundir.METRICS) or {})["test"]


def test_zero3_bf16_trains_image_models_and_reloads_the_best_in_bf16(tmp_path: Path) -> None:
    # DeepSpeed runs a bf16 model without autocast: float32 images must be cast to meet it.
    train(tmp_path, 2, 3, precision="bf16")
    metrics = rundir.read_json(tmp_path / rundir.METRICS) or {}
    assert metrics["parallel"]["mixed_precision"] == "bf16"
    assert (rundir.read_json(tmp_path / rundir.DEEPSPEED_CONFIG) or {})["bf16"]["enabled"] is True
    rows = history(tmp_path)
    assert all(math.isfinite(float(row["train_loss"])) for row in rows) and len(rows) == 2
    assert metrics["val"]["top1"] == pytest.approx(float(rows[metrics["best_epoch"] - 1]["val_top1"]), abs=1e-9)
