"""A cell's training curves are drawn from up to 50 runs' history.csv, each up to 64 MiB: they are
held in bounded memory, not whole and all at once."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from orchestrator.results import report


def _long_history(path: Path, seed: int, epochs: int) -> None:
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"epoch": np.arange(epochs), "train_loss": rng.random(epochs), "val_top1": rng.random(epochs)})
    frame.loc[1234, "train_loss"] = 9.0  # one spike: the band still reaches it
    frame.to_csv(path / "history.csv", index=False)


def test_a_cells_histories_are_held_in_bounded_memory(tmp_path: Path) -> None:
    """50 runs' history.csv (each up to 64 MiB) were held whole at once, then concatenated: gigabytes
    per cell. Each is cut to its drawn columns and to bins of epochs before the next is read."""
    runs, epochs = 20, 100_000
    for seed in range(runs):
        _long_history(tmp_path / f"r{seed}", seed, epochs)
    part = pd.DataFrame(
        {
            "seed": range(runs),
            "path": [str(tmp_path / f"r{seed}") for seed in range(runs)],
            "run_id": [f"r{seed}" for seed in range(runs)],
            "name": "x",
            "state": "completed",
        }
    )
    (tmp_path / "img").mkdir()
    one_run = epochs * 3 * 8  # bytes of one run's numbers
    tracemalloc.start()
    try:
        plot = report._curves_plot(part, "cell", tmp_path / "img", set(), [])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert plot is not None and plot.caption.startswith(f"Training curves of {runs} run(s)")
    # Held whole, 20 runs peaked at 76 runs' numbers; one file read at a time, at 12 whatever the runs.
    assert peak < 25 * one_run, f"{peak / 2**20:.0f} MiB for {runs} runs of {one_run / 2**20:.1f} MiB"
    with Image.open(tmp_path / "img" / "cell-curves.png") as image:
        assert image.size[0] > 0
