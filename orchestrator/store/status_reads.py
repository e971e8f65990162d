"""Run folders read ahead on forked workers for run_states.inspect: each run's status.json and, when
it says completed, its metrics.json verdict in the same pass, so that the calling process only turns
the results into records.

Why: at 100,000 runs the serial status.json read (about 80 us a run: open, JSON with the bounded
reader's checks, the contract's pydantic model) was most of a `status` whose verdicts were
remembered, and in the first one the calling process competed with the metrics.json workers for
the cores. What comes back is the status.json object, not its RunStatus: pickling a RunStatus and
loading it again measured about 29 + 23 us against 9 + 8 us for the dict and 12 us to validate it
again here (2 cores, gc paused), so the model is made here from the dict, as the serial path makes
it. The verdict bookkeeping (Verdicts.put, the file written) stays here too: a worker's copy of the
verdicts is lost with it.
"""

from __future__ import annotations

import functools
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.store import verdicts
from orchestrator.sweep import bounded, forked
from trainers import rundir
from trainers.contract import State

Read = tuple[dict[str, Any] | None, str | None, bool, verdicts.Fresh | None]
"""One run folder as a worker read it: status.json's object (None: no file), why it is unreadable
(None: it is not), whether the metrics.json verdict was prepared (Verdicts.ahead) and that verdict
(None: the remembered one holds)."""
NOTHING: Read = (None, None, False, None)
"""No run folder at all: what the serial read finds (no status.json, nothing to check)."""
MetricsCheck = Callable[[Path, tuple[str, str]], "str | None"]
"""The problem of a run folder's metrics.json for its run ids (run_states._metrics_problem)."""


@dataclass(frozen=True)
class ReadsAhead:
    """Each planned run's Read, in order (None: not read ahead, the caller reads that one itself: its
    entry is not a plain folder), and when the workers started (the verdicts' checked-at time)."""

    reads: Iterable[Read | None]
    started: int


def start(
    runs_dir: Path,
    folders: list[tuple[str, str]],
    remembered: verdicts.Verdicts | None,
    check: MetricsCheck,
    workers: int,
) -> ReadsAhead:
    """Start `workers` forked workers reading every (folder name, run id) of `folders` under
    `runs_dir` (verdicts prepared only with `remembered`); results come as the caller iterates."""
    started = time.time_ns()
    base = str(runs_dir)
    jobs = [(f"{base}/{name}", name, run_id) for name, run_id in folders]  # strings: no Path per run to pickle
    task = functools.partial(_read_run, remembered, check)
    return ReadsAhead(forked.ForkedMap(task, jobs, workers, chunk=500), started)


def _read_run(remembered: verdicts.Verdicts | None, check: MetricsCheck, job: tuple[str, str, str]) -> Read | None:
    """In a worker: one run folder's status.json (as run_states.read_status reads it, before the
    contract's model) and, when it says completed, `get`'s verdict of its metrics.json prepared."""
    folder, name, run_id = job
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:  # not run yet: one lstat instead of a failed open below it
        return NOTHING
    except OSError:
        return None
    if not stat.S_ISDIR(mode):  # a link or a file: never read through here (the caller names it)
        return None
    path = Path(folder)
    try:
        data = bounded.read_json_object(path / rundir.STATUS)
    except bounded.Unreadable as exc:
        return None, str(exc), False, None
    if remembered is None or data is None or data.get("state") != State.COMPLETED.value:
        return data, None, False, None  # the contract reads `completed` only from this very string
    ids = (name, run_id)
    return data, None, True, remembered.ahead(path, ids, lambda: check(path, ids))


def verdict(
    remembered: verdicts.Verdicts, path: Path, ids: tuple[str, str], fresh: verdicts.Fresh | None, started: int
) -> str | None:
    """What Verdicts.get answers for a completed run, from its prepared verdict: the remembered one
    when that held in the worker, else the fresh one, recorded."""
    if fresh is None:
        return remembered.held(path.name)
    return remembered.put(path, ids, fresh, started)
