"""history.csv: one row per finished epoch, rewritten atomically after each epoch.

Columns: epoch, train_loss, val_loss, val_top1, val_macro_f1, then the run's task- and
selection-specific metrics (hierarchical runs: each level's unweighted loss, train_super_loss,
train_sub_loss, val_super.loss, val_sub.loss, and val_super.top1, val_sub.top1; the
early-stopping metric when it is none of these), lr, epoch_s, train_images_per_s
(training images per second of that epoch, all processes together).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from trainers import contract, rundir

LEADING = ("epoch", "train_loss", "val_loss", "val_top1", "val_macro_f1")
TRAILING = ("lr", "epoch_s", "train_images_per_s")


def columns(extra: list[str]) -> list[str]:
    """The column order of a run whose rows also carry `extra` metrics."""
    middle = [name for name in extra if name not in LEADING and name not in TRAILING]
    return [*LEADING, *dict.fromkeys(middle), *TRAILING]


def read_history(run_dir: Path, epochs_done: int) -> list[dict[str, Any]]:
    """Rows of epochs 1..epochs_done from an earlier attempt (later rows were not checkpointed)."""
    path = run_dir / rundir.HISTORY
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [row for row in rows if int(row["epoch"]) <= epochs_done]


def write_history(run_dir: Path, rows: list[dict[str, Any]], extra: list[str] | None = None) -> None:
    """Atomically replace history.csv with `rows` (columns: LEADING, `extra`, TRAILING)."""
    for row in rows:  # through the contract: a row of the wrong shape is the trainer's bug
        contract.HistoryRow.model_validate(row)
    buffer = io.StringIO()
    fieldnames = columns(extra or [])
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    rundir.write_text(run_dir / rundir.HISTORY, buffer.getvalue())
