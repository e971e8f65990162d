"""trainers.runtime.distributed: unwrap is accelerate's unwrap_model without importing DeepSpeed in a
run that does not use it (accelerate imports it whenever it is installed: 2.8 s of start-up); the
Accelerator's loaders copy batches to the device without blocking the host."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch
from accelerate.tracking import GeneralTracker

from trainers.config import TrainConfig
from trainers.runtime import distributed
from trainers.runtime.distributed import build_accelerator, loader_config, unwrap

PLAIN_RUN = """
import sys, torch
from trainers.config import TrainConfig
from trainers.runtime.distributed import build_accelerator, unwrap
config = {"model": {"backbone": "resnet10t"}, "data": {"dataset": "digits"}}
accelerator = build_accelerator(TrainConfig.model_validate(config))
model = accelerator.prepare(torch.nn.Linear(2, 2))
assert unwrap(accelerator, model) is not None
print("deepspeed" in sys.modules)
"""


def test_a_plain_run_unwraps_without_importing_deepspeed() -> None:
    done = subprocess.run([sys.executable, "-c", PLAIN_RUN], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_unwrap_takes_off_the_parallel_wrappers_as_accelerate_does() -> None:
    accelerator = build_accelerator(
        TrainConfig.model_validate({"model": {"backbone": "resnet10t"}, "data": {"dataset": "digits"}})
    )
    inner = torch.nn.Linear(2, 2)
    wrapped = torch.nn.DataParallel(torch.nn.DataParallel(inner))
    assert unwrap(accelerator, wrapped) is inner is accelerator.unwrap_model(wrapped)
    assert unwrap(accelerator, inner) is inner


def test_batches_reach_a_gpu_without_blocking_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU the prepared loaders copy pinned batches with non_blocking=True (Accelerate's default
    blocks the host on every copy); elsewhere Accelerate's default. The run's Accelerator takes
    loader_config's answer for this machine (here forced to the GPU's)."""
    assert loader_config(on_gpu=True).non_blocking and not loader_config(on_gpu=False).non_blocking
    monkeypatch.setattr(distributed, "loader_config", lambda on_gpu: loader_config(on_gpu=True))
    accelerator = build_accelerator(
        TrainConfig.model_validate({"model": {"backbone": "resnet10t"}, "data": {"dataset": "digits"}})
    )
    loader = accelerator.prepare(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 2))))
    assert loader._non_blocking


class _Probe(GeneralTracker):
    """A tracker that records nothing: only whether the Accelerator was given it."""

    name = "probe"
    requires_logging_directory = False

    @property
    def tracker(self) -> None:
        return None

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        pass

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        pass


def test_the_accelerator_gets_the_runs_trackers() -> None:
    """build_accelerator hands `log_with` to the Accelerator (without it no tracker logs a thing)."""
    probe = _Probe()
    config = TrainConfig.model_validate({"model": {"backbone": "resnet10t"}, "data": {"dataset": "digits"}})
    assert probe in build_accelerator(config, [probe]).log_with
