"""bench/gpu_check.sh end to end in its reduced mode (tiny model, CPU): every row of the GPU
check's table is measured, so the script is known to work before a GPU is lent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_runs_end_to_end_in_reduced_mode() -> None:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [str(ROOT / "bench" / "gpu_check.sh"), "--reduced"], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "failed" not in done.stderr and "budget spent" not in done.stderr, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| test_resnet")]
    measured = {(cells[1].strip(), cells[2].strip()) for cells in rows}
    assert measured == {
        ("fp32", "synthetic"),
        ("bf16", "synthetic"),
        ("bf16-channels-last", "synthetic"),
        ("compile-bf16-channels-last", "synthetic"),
        ("bf16-channels-last", "real"),
        ("zero2-fp32", "synthetic"),
        ("zero3-fp32", "synthetic"),
    }
    for cells in rows:
        trainer, bare, ratio = float(cells[3]), float(cells[4]), float(cells[5])
        assert trainer > 0 and bare > 0 and ratio == pytest.approx(trainer / bare, abs=0.01)


@pytest.mark.slow
def test_gpu_repeat_runs_end_to_end_and_on_cpu_everything_repeats() -> None:
    """bench/gpu_repeat.py (the repeatability check for a lent GPU) on CPU, where a second run and a
    stopped-and-resumed run both end bit for bit like the first, with and without `deterministic`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_repeat.py"), "--size", "8", "--epochs", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in done.stdout.splitlines() if "|" in line}
    assert {key: [cell.strip() for cell in cells] for key, cells in rows.items() if key != "setting"} == {
        "defaults": ["same", "same"],
        "deterministic: true": ["same", "same"],
    }
