"""Per-run peak memory recorded by the trainer (metrics.json `timing`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import trainers
from trainers.config import TrainConfig
from trainers.runtime import memory


def test_summary_takes_maxima_and_says_unknown_rather_than_guessing() -> None:
    both = memory.summarize([[100.0, -1, -1, -1], [300.0, -1, -1, -1]])
    assert both["peak_rss_mib"] == 300.0 and both["peak_rss_sum_mib"] == 400.0
    assert both["gpu_peak_allocated_mib"] is None and both["gpu_total_mib"] is None
    one_unknown = memory.summarize([[100.0, 5.0, 8.0, 80.0], [-1.0, 7.0, 9.0, 80.0]])
    assert one_unknown["peak_rss_mib"] is None, "a peak missing on one process is not the peak of the run"
    assert one_unknown["gpu_peak_allocated_mib"] == 7.0 and one_unknown["gpu_peak_reserved_mib"] == 9.0


@pytest.mark.slow
def test_a_run_records_its_own_peak_rss_not_the_process_lifetime(tmp_path: Path) -> None:
    # Earlier work of the same process (a warm worker's previous run) raised the lifetime peak by
    # 1200 MiB, more than this small run needs (about 1 GiB with torch and timm imported).
    block = np.ones(1200 * 2**20 // 8)
    del block
    before_mib = (memory._status_kib("VmHWM") or 0) / 1024.0  # this process's high-water mark so far
    cfg = TrainConfig.model_validate(
        {
            "model": {"backbone": "test_resnet"},
            "data": {"dataset": "digits", "image_size_px": 16, "batch_size": 64, "num_workers": 0},
            "epochs": 1,
            "torch_threads": 1,
        }
    )
    recorded = trainers.run(cfg, tmp_path)["timing"]
    assert recorded["host_total_mib"] is not None and recorded["host_total_mib"] > 0
    peak = recorded["peak_rss_mib"]
    assert peak is not None and 0 < peak < recorded["host_total_mib"]
    assert peak < before_mib - 400, f"run peak {peak} MiB includes the earlier 1200 MiB (before: {before_mib})"
    assert recorded["peak_rss_sum_mib"] == peak, "one process"
    assert recorded["gpu_peak_allocated_mib"] is None, "a CPU run has no GPU peak"


_CHURN = """
import ctypes, resource, sys, torch
from trainers.runtime import memory
mode = sys.argv[1]
tuned = memory.tune_host_allocator() if mode == "tuned" else False
if mode == "remap":  # every block over 128 KiB mapped afresh: what the probe sees at worst
    ctypes.CDLL(None).mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD, which also fixes it
def faults(): return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():  # a step's activations: 10 blocks of 8 MiB alive together, then all freed
    blocks = [torch.ones(2 * 2**20) for _ in range(10)]
    del blocks
for _ in range(3):
    step()  # warm-up
before = faults()
for _ in range(20):
    step()
print(tuned, faults() - before)
"""
REFAULT_ALL = 20 * 10 * 2000  # 20 steps x 10 blocks x ~2,000 pages of 4 KiB


def _churn(mode: str, env: dict[str, str]) -> tuple[bool, int]:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _CHURN, mode], env=env, capture_output=True, text=True, check=True)
    tuned, faults = done.stdout.split()
    return tuned == "True", int(faults)


def test_tuned_allocator_reuses_freed_blocks_instead_of_faulting_them_in_again() -> None:
    """glibc's own defaults fall anywhere between the two (0 or ~409,000 faults, run to run), so the
    probe is checked against blocks that are always re-mapped, and the tuning against it."""
    import os

    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_") and key != "LD_PRELOAD"}
    assert _churn("remap", env)[1] > REFAULT_ALL * 0.8, "the probe counts re-mapped blocks"
    for _ in range(3):
        tuned, faults = _churn("tuned", env)
        assert tuned is True
        assert faults < REFAULT_ALL * 0.05, f"{faults} page faults with the tuned allocator"
    env["MALLOC_TRIM_THRESHOLD_"] = str(128 * 1024)  # a user's own setting (glibc's default value)
    assert _churn("tuned", env)[0] is False, "an allocator setting of the user's is never overridden"
