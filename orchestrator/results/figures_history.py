"""The histories a cell's training curves are drawn from (history.csv of up to 50 runs), held in
bounded memory: each file is read, cut to the columns the curves draw and, past MAX_CURVE_POINTS
epochs, to bins of epochs (mean, lowest, highest value) before the next file is read. Each file may
have 64 MiB (bounded.LIMITS): 50 of them held whole took gigabytes per cell, per forked worker."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.results import run_files
from orchestrator.results.run_files import RunDir
from orchestrator.store.run_states import Problem

if TYPE_CHECKING:
    import pandas as pd

MAX_CURVE_POINTS = 1000
"""Epochs a curve draws one by one, else in spans: 300,000 epochs took minutes to draw. A run's
history is kept row by row up to this many epochs, else in at most MAX_CURVE_POINTS + 1 bins."""
MAX_CURVE_COLUMNS = 24
"""History columns a curve figure draws (losses and validation metrics, in file order); a run's
other columns are dropped as it is read."""


def is_loss(column: str) -> bool:
    """A history column that is a loss: train_loss, val_loss and a hierarchical run's per-level losses
    (train_super_loss, val_sub.loss), drawn on the loss axis; `val_hamming_loss` is a metric."""
    if column in ("train_loss", "val_loss") or (column.startswith("val_") and column.endswith(".loss")):
        return True
    return column.startswith("train_") and column.endswith("_loss")


def numeric(column: pd.Series) -> pd.Series:
    """A history column as numbers (text and blanks become NaN)."""
    import pandas as pd

    return pd.to_numeric(column, errors="coerce")


def drawn_columns(columns: list[str]) -> list[str]:
    """The history columns the curves draw: losses and validation metrics, the first MAX_CURVE_COLUMNS."""
    return [c for c in columns if is_loss(c) or c.startswith("val_")][:MAX_CURVE_COLUMNS]


@dataclass(frozen=True)
class History:
    """A cell's histories as the curves draw them: long frames (epoch, seed, drawn columns) of each
    run's mean, lowest and highest value per epoch, or per bin of epochs for a run of more than
    MAX_CURVE_POINTS (labelled by its start: the same bins for every run of the cell).
    A run kept row by row is the same rows in all three."""

    mean: pd.DataFrame
    low: pd.DataFrame
    high: pd.DataFrame
    epochs: int
    """Epochs as read: of the whole frame given to `of`, of the longest run from `read_histories`."""

    @classmethod
    def of(cls, frame: pd.DataFrame) -> History:
        """A history.csv frame (with `seed`) kept row by row, its drawn columns as numbers."""
        kept = _numbers(frame)
        return cls(kept, kept, kept, int(kept["epoch"].nunique()))

    @property
    def empty(self) -> bool:
        """No row to draw."""
        return self.mean.empty


def read_histories(dirs: list[RunDir], problems: list[Problem]) -> History:
    """The histories of `dirs` (unreadable ones added to `problems`, see run_files.histories), one file
    at a time. Memory bound: one history.csv parsed (at most 64 MiB of text) plus, per run read, 3 frames
    of at most MAX_CURVE_POINTS + 1 rows of 2 + MAX_CURVE_COLUMNS numbers: under 2 MB a run, 100 MB
    for 50 runs of the widest history (50 runs of 5 columns: about 10 MB)."""
    import pandas as pd

    runs: list[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, float]] = []
    epochs = 0
    for run in dirs:
        frame = run_files.histories([run], problems)
        if frame.empty:
            continue
        kept = _numbers(frame)
        del frame  # the next file is read without this one's text columns
        epochs = max(epochs, int(kept["epoch"].nunique()))
        width = _bin_width(kept["epoch"])
        runs.append((*_binned(kept, width, kept, kept), width) if width else (kept, kept, kept, 0.0))
    if not runs:
        empty = pd.DataFrame(columns=["epoch", "seed"])
        return History(empty, empty, empty, 0)
    # Runs binned at different widths (a running run is shorter) share the widest bins: powers of two nest.
    widest = max(width for *_, width in runs)
    if widest:
        runs = [(*_binned(mean, widest, low, high), widest) for mean, low, high, _ in runs]
    mean = pd.concat([run[0] for run in runs], ignore_index=True)
    low = pd.concat([run[1] for run in runs], ignore_index=True)
    high = pd.concat([run[2] for run in runs], ignore_index=True)
    return History(mean, low, high, epochs)


def _numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """epoch, seed and the drawn columns of a history frame, as numbers (seed as given)."""
    columns = drawn_columns([str(c) for c in frame.columns if c not in ("epoch", "seed")])
    kept = frame[["epoch", *columns]].apply(numeric).astype(float)
    return kept.assign(seed=frame["seed"].astype(str))


def _bin_width(epoch: pd.Series) -> float:
    """0 for a run of at most MAX_CURVE_POINTS distinct epochs, else the power of two that bins its
    finite epochs into at most MAX_CURVE_POINTS + 1 bins (floor(epoch / width))."""
    import numpy as np

    finite = epoch[np.isfinite(epoch)]
    if epoch.nunique() <= MAX_CURVE_POINTS or finite.empty:
        return 0.0
    spread = float(finite.max()) - float(finite.min())
    if not math.isfinite(spread):  # 1e308 and -1e308: the widest float power of two
        return 2.0**1023
    return 2.0 ** min(1023, max(0, math.ceil(math.log2(max(spread, 1.0) / MAX_CURVE_POINTS))))


def _binned(
    mean: pd.DataFrame, width: float, low: pd.DataFrame, high: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A run's (mean, low, high) frames in bins of `width` epochs, each labelled by its start (a multiple of `width`):
    the mean of its means, the lowest of its lows, the highest of its highs. Non-finite epochs are
    left out (no bin holds them)."""
    import numpy as np

    out = []
    for frame, how in ((mean, "mean"), (low, "min"), (high, "max")):
        frame = frame[np.isfinite(frame["epoch"])]
        key = np.floor(frame["epoch"] / width) * width
        grouped = frame.drop(columns=["epoch"]).groupby(["seed", key], sort=True)
        out.append(grouped.agg(how).reset_index())
    return out[0], out[1], out[2]
