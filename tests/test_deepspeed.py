"""DeepSpeed ZeRO-3 on CPU, 2 processes (torchrun, gloo): the best checkpoint of an earlier
epoch is saved whole and reloaded into partitioned parameters for the final evaluation, and
a run stopped after its first epoch resumes from the sharded state to the same numbers."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from trainers import rundir

WORKER = Path(__file__).with_name("zero3_worker.py")
EPOCHS = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def train(run_dir: Path, epochs: int) -> None:
    """Train (or resume) the worker's ZeRO-3 cell in `run_dir` with 2 processes."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
        f"--master-port={free_port()}", str(WORKER), str(run_dir), str(epochs),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def history(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / rundir.HISTORY).open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 epochs of ZeRO-3 without interruption."""
    run_dir = tmp_path_factory.mktemp("zero3")
    train(run_dir, EPOCHS)
    return run_dir


def test_zero3_reloads_an_earlier_best_epoch_into_partitioned_parameters(straight: Path) -> None:
    partitioning = json.loads((straight / "partitioning.json").read_text())
    assert partitioning["local_numel"] == 0 < partitioning["full_numel"], partitioning
    metrics = rundir.read_json(straight / rundir.METRICS) or {}
    val_top1 = [float(row["val_top1"]) for row in history(straight)]
    assert metrics["provenance"]["num_processes"] == 2 and len(val_top1) == EPOCHS
    expected = {"distributed_type": "DEEPSPEED", "processes": 2, "global_batch": 32, "per_device_batch": 16,
                "grad_accum_steps": 1, "zero_stage": 3}  # fmt: skip
    assert {key: metrics["parallel"].get(key) for key in expected} == expected
    engine = rundir.read_json(straight / rundir.DEEPSPEED_CONFIG) or {}
    assert engine["train_batch_size"] == 32 and engine["train_micro_batch_size_per_gpu"] == 16
    assert engine["zero_optimization"]["stage"] == 3
    assert engine["zero_optimization"]["stage3_param_persistence_threshold"] == 0  # the spec's extra key
    best = metrics["best_epoch"]
    assert val_top1[best - 1] != val_top1[-1], "the test needs a best epoch whose weights differ from the last"
    # The final evaluation ran on the reloaded best weights, not on whatever the model last held.
    assert metrics["val"]["top1"] == pytest.approx(val_top1[best - 1], abs=1e-9)


def test_zero3_resumes_its_partitioned_state_exactly(straight: Path, tmp_path: Path) -> None:
    train(tmp_path, 1)  # stops after epoch 1 with checkpoints/last, as a preempted job would
    assert len(history(tmp_path)) == 1
    train(tmp_path, EPOCHS)  # resumes at epoch 2 from the sharded optimizer and model state
    columns = ("epoch", "train_loss", "val_loss", "val_top1")
    resumed = [[row[c] for c in columns] for row in history(tmp_path)]
    assert resumed == [[row[c] for c in columns] for row in history(straight)]
    assert (rundir.read_json(tmp_path / rundir.METRICS) or {})["test"] == (
        rundir.read_json(straight / rundir.METRICS) or {}
    )["test"]
