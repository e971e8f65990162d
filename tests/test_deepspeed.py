"""DeepSpeed ZeRO-3 on CPU, 2 processes (torchrun, gloo): the best checkpoint of an earlier
epoch is saved whole and reloaded into partitioned parameters for the final evaluation."""

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_zero3_reloads_an_earlier_best_epoch_into_partitioned_parameters(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
        f"--master-port={free_port()}", str(WORKER), str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    partitioning = json.loads((tmp_path / "partitioning.json").read_text())
    assert partitioning["local_numel"] == 0 < partitioning["full_numel"], partitioning
    metrics = rundir.read_json(tmp_path / rundir.METRICS) or {}
    with (tmp_path / rundir.HISTORY).open() as handle:
        val_top1 = [float(row["val_top1"]) for row in csv.DictReader(handle)]
    assert metrics["provenance"]["num_processes"] == 2 and len(val_top1) == 3
    # The global batch of 32 split over 2 ranks, as recorded and as DeepSpeed ran it.
    expected = {
        "distributed_type": "DEEPSPEED",
        "processes": 2,
        "global_batch": 32,
        "per_device_batch": 16,
        "grad_accum_steps": 1,
        "zero_stage": 3,
    }
    assert {key: metrics["parallel"].get(key) for key in expected} == expected
    engine = rundir.read_json(tmp_path / rundir.DEEPSPEED_CONFIG) or {}
    assert engine["train_batch_size"] == 32 and engine["train_micro_batch_size_per_gpu"] == 16
    assert engine["zero_optimization"]["stage"] == 3
    best = metrics["best_epoch"]
    assert val_top1[best - 1] != val_top1[-1], "the test needs a best epoch whose weights differ from the last"
    # The final evaluation ran on the reloaded best weights, not on whatever the model last held.
    assert metrics["val"]["top1"] == pytest.approx(val_top1[best - 1], abs=1e-9)
