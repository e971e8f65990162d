"""The trainer's heartbeat: `<run_dir>/heartbeat`, whose mtime says when it last made progress and
whose content says in which phase (step, eval, checkpoint, compile).

Cheap by construction: a phase change rewrites the one-word file; progress within a phase only
touches its mtime, at most every MIN_INTERVAL_S. The hang watchdog (orchestrator/launch/watchdog.py)
reads it from another process, so a trainer that is stopped or deadlocked cannot silence it.
Only the main process beats (a rank that hangs stops the main one at the next collective).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

FILE = "heartbeat"
PHASES = ("start", "compile", "step", "eval", "checkpoint")
"""start: before the first step (imports, data, model); compile: the first steps (torch.compile,
cuDNN autotuning); step: training; eval: validation and test; checkpoint: saving."""
MIN_INTERVAL_S = 2.0
ENV = "ORCH_HEARTBEAT"
"""Set (to 1) by the job when a watchdog reads the heartbeat; unset, beat() does nothing."""


class _Last:
    """The last beat written by this process."""

    path: Path | None = None
    phase = ""
    at = 0.0


def beat(run_dir: Path, phase: str, main: bool = True) -> None:
    """Record progress in `phase` (a phase change is written at once, progress every MIN_INTERVAL_S)."""
    if not main or ENV not in os.environ:
        return
    now = time.monotonic()
    path = run_dir / FILE
    same = phase == _Last.phase and path == _Last.path
    if same and now - _Last.at < MIN_INTERVAL_S:
        return
    try:
        if same:
            _touch(path, phase)
        else:
            path.write_text(phase)
    except OSError:
        return  # a heartbeat that cannot be written must not stop training: the watchdog then waits longer
    _Last.path, _Last.phase, _Last.at = path, phase, now


def _touch(path: Path, phase: str) -> None:
    """Progress within a phase: the file's mtime, or the file again when it went away (a run folder
    tidied or synced by hand): touching only, every beat failed until the next phase change, and the
    watchdog took a long epoch of healthy steps for a hang."""
    try:
        os.utime(path)
    except FileNotFoundError:
        path.write_text(phase)


def read(run_dir: Path) -> tuple[float, str] | None:
    """(mtime, phase) of the heartbeat, or None when there is none yet."""
    path = run_dir / FILE
    try:
        mtime = path.stat().st_mtime
        phase = path.read_text()[:20].strip()
    except OSError:
        return None
    return mtime, phase if phase in PHASES else "step"
