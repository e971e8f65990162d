"""`orchestrate cancel` beside a running `submit --follow`: the cancel leaves a request the follow obeys.

A follow holds the sweep's lock and writes manifest.json from its own copy, so `cancel` cannot record
anything there; and without a word from it, the follow's next poll sees only jobs gone from the queue:
it submits the runs it held back (queue limits), and the unconfirmed arrays the cancel scancelled by
name but could not forget (the lock) it forgets itself and submits again as new runs. So `cancel`
first writes REQUEST_FILE (a fresh id, when, by whom), then looks at the queue. A follow notes the
request it started with; the first poll that finds another submits nothing: it scancels the sweep's
live arrays (those it submitted after the cancel looked) and its unconfirmed arrays by job name,
forgets those (it holds the lock), says so and ends. A later `submit` runs the runs again.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from orchestrator.launch import slurmcli, unconfirmed
from orchestrator.sweep import bounded
from trainers import rundir

REQUEST_FILE = "cancel.json"
"""In the sweep's output folder: the latest `orchestrate cancel` (id, at, by)."""
UNREADABLE = "unreadable"
"""The id of a request file that cannot be read: a change from any other id still stops a follow."""


@dataclass(frozen=True)
class Request:
    """One `orchestrate cancel` of the sweep, as the follow names it."""

    id: str
    by: str
    """`pid N on HOST at TIME`, or what could be read of it."""


@dataclass(frozen=True)
class Stopped:
    """What stopping the sweep cancelled."""

    jobs: int
    """Pending or running tasks scancelled."""
    arrays: list[str]
    """Their arrays."""
    unconfirmed: unconfirmed.Cancelled
    """The arrays sbatch did not confirm, scancelled by job name."""


def request(root: Path) -> None:
    """Record a cancel of the sweep in `root` (nothing when the sweep was never submitted): before the
    queue is asked, so a follow submitting beside it either had its array seen or sees the request."""
    if not root.is_dir():
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    by = f"pid {os.getpid()} on {socket.gethostname()} at {when}"
    rundir.write_json(root / REQUEST_FILE, {"id": uuid.uuid4().hex, "by": by})


def latest(root: Path) -> Request | None:
    """The latest cancel request of the sweep (None: there was none)."""
    try:
        data = bounded.read_json_object(root / REQUEST_FILE, limit=64 * 1024)
    except bounded.Unreadable as exc:
        return Request(UNREADABLE, f"an unreadable {REQUEST_FILE} ({exc})")
    if data is None:
        return None
    ident, by = data.get("id"), data.get("by")
    if not isinstance(ident, str):
        return Request(UNREADABLE, f"a {REQUEST_FILE} without an id")
    return Request(ident, by if isinstance(by, str) else "an unnamed process")


def newer(root: Path, seen: Request | None) -> Request | None:
    """The cancel request made since `seen` (what a follow found when it started); None: none."""
    now = latest(root)
    if now is None or (seen is not None and now.id == seen.id):
        return None
    return now


def stop(root: Path, live: dict[str, str], holding_lock: bool = False) -> Stopped:
    """scancel the arrays of the sweep's `live` tasks (task id -> state: one squeue call,
    slurm.runs_in_slurm) in one call and its unconfirmed arrays by job name; those are forgotten when
    `holding_lock` (a follow) or the lock is free. Raises SlurmError when scancel fails."""
    arrays = sorted({job_id.split("_", 1)[0] for job_id in live})
    slurmcli.cancel(arrays)
    return Stopped(len(live), arrays, unconfirmed.cancel(root, holding_lock=holding_lock))
