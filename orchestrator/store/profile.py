"""`<output>/profile.csv`: the complexity of every cell, written by `orchestrate profile` (which counts
it: orchestrator/checks/complexity.py) and read by `collect` for cells that have not run yet. Keyed
by sweep.budget.complexity_key. Bounded and tolerant like every file of a results folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.sweep import bounded
from orchestrator.sweep.spec import SweepSpec
from trainers import rundir

if TYPE_CHECKING:
    import pandas as pd

PROFILE_FILE = "profile.csv"


def profile_path(spec: SweepSpec) -> Path:
    """Where `profile` writes and `collect` reads the complexity of every cell."""
    return spec.output_path / PROFILE_FILE


def write_profile(spec: SweepSpec, frame: pd.DataFrame) -> Path:
    """Merge `frame` into the sweep's profile.csv (newer rows win) and return its path."""
    path = profile_path(spec)
    old = read_profile(path)
    if old is not None and not frame.empty:
        import pandas as pd

        frame = pd.concat([old[~old["ckey"].isin(frame["ckey"])], frame], ignore_index=True)
    rundir.write_text(path, frame.to_csv(index=False))
    return path


def read_profile(path: Path) -> pd.DataFrame | None:
    """A profile.csv as a DataFrame, or None when there is none or it cannot be read as one (a FIFO,
    a 1 GB file, not CSV: bounded like every file of a results folder; collect then takes the
    complexity from the runs' own metrics)."""
    import io

    import pandas as pd

    try:
        data = bounded.read_bytes(path)
        return pd.read_csv(io.BytesIO(data)) if data else None
    except (bounded.Unreadable, ValueError, UnicodeDecodeError, pd.errors.ParserError, MemoryError):
        return None
