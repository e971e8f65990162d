"""history.csv: one row per finished epoch, rewritten atomically after each epoch."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from trainers import rundir

COLUMNS = ("epoch", "train_loss", "val_loss", "val_top1", "lr", "epoch_s")


def read_history(run_dir: Path, epochs_done: int) -> list[dict[str, Any]]:
    """Rows of epochs 1..epochs_done from an earlier attempt (later rows were not checkpointed)."""
    path = run_dir / rundir.HISTORY
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [row for row in rows if int(row["epoch"]) <= epochs_done]


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically replace history.csv with `rows`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    rundir.write_text(run_dir / rundir.HISTORY, buffer.getvalue())
