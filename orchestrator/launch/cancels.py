"""`orchestrate cancel` beside a running `submit --follow`: the cancel leaves a request the follow obeys.

A follow holds the sweep's lock and writes manifest.json from its own copy, so `cancel` cannot record
anything there; and without a word from it, the follow's next poll sees only jobs gone from the queue:
it submits the runs it held back (queue limits), and the unconfirmed arrays the cancel scancelled by
name but could not forget (the lock) it forgets itself and submits again as new runs. So `cancel`
first writes REQUEST_FILE (a fresh id, when, by whom), then looks at the queue. A follow notes the
request it started with; the first poll that finds another submits nothing: it scancels the sweep's
live arrays (those it submitted after the cancel looked) and its unconfirmed arrays by job name,
forgets those (it holds the lock), says so and ends. A plain `submit` notes the request it started with
too and reads REQUEST_FILE right before each sbatch and once after its last: an array it submitted
while the cancel looked at the queue is then scancelled as a follow's is, and nothing more goes in.
A later `submit` runs the runs again.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from orchestrator import textsafe
from orchestrator.launch import lock, slurmcli, unconfirmed
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


def beside(root: Path) -> str:
    """Whether a submit of the sweep runs beside `cancel` (its lock's holder), and when it obeys the request."""
    holder = lock.live_holder(root)
    if holder is None:
        return "no submit of the sweep is running"
    elsewhere = "" if holder.host == socket.gethostname() else ", on another host: it may have ended"
    # The lock does not say whether it follows: both kinds of submit obey the request.
    return (
        f"a submit of the sweep holds its lock ({holder.describe()}{elsewhere}): it submits nothing more; "
        "with --follow it stops at its next poll (within its --interval), otherwise before its next sbatch"
    )


def stop(root: Path, live: dict[str, str], holding_lock: bool = False) -> Stopped:
    """scancel the arrays of the sweep's `live` tasks (task id -> state: one squeue call,
    slurm.runs_in_slurm) in one call and its unconfirmed arrays by job name; those are forgotten when
    `holding_lock` (a follow) or the lock is free. Raises SlurmError when scancel fails."""
    arrays = sorted({job_id.split("_", 1)[0] for job_id in live})
    slurmcli.cancel(arrays)
    return Stopped(len(live), arrays, unconfirmed.cancel(root, holding_lock=holding_lock))


def report(console: Console, name: str, command: str, asked: Request, done: Stopped) -> None:
    """What a `command` (`submit`, `submit --follow`) that `asked` stopped says: what it cancelled."""
    lines = [f"{name}: `orchestrate cancel` ({asked.by}) stopped this {command}: it submits nothing more"]
    if done.arrays:
        lines.append(f"{name}: cancelled {done.jobs} pending/running jobs in array(s) {', '.join(done.arrays)}")
    if done.unconfirmed.names:
        names = ", ".join(done.unconfirmed.names)
        lines.append(f"{name}: cancelled and forgot unconfirmed array(s) {names} ({done.unconfirmed.runs} runs)")
    lines.append(f"{name}: `submit` again runs what is left, the cancelled runs too")
    for line in lines:
        console.print(textsafe.rich(line), highlight=False)
