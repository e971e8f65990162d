"""Sweep status: run folders joined with SLURM's view (one squeue + one sacct call per sweep)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.launch import slurmcli as slurm
from orchestrator.launch.base import is_stale
from orchestrator.results import reader
from orchestrator.results.reader import RunRecord
from orchestrator.sweep import store
from orchestrator.sweep.plan import RunSpec
from trainers.rundir import State

# SLURM end states that mean "the job stopped without finishing the run".
_SLURM_ENDINGS = {
    "CANCELLED": "cancelled",
    "TIMEOUT": "timeout",
    "PREEMPTED": "preempted",
    "NODE_FAIL": "node_fail",
    "OUT_OF_MEMORY": "out_of_memory",
    "FAILED": "failed",
    "BOOT_FAIL": "failed",
    "DEADLINE": "timeout",
    "COMPLETED": "failed",  # the job ended but the run never wrote completed: it crashed
}
TERMINAL = {"completed", "failed", "not submitted", "interrupted", *_SLURM_ENDINGS.values()}


@dataclass(frozen=True)
class RunStatus:
    """One run's state as the user sees it, with where to look when it went wrong."""

    run: RunSpec
    state: str
    job_id: str | None
    detail: str


@dataclass(frozen=True)
class SweepStatus:
    """All runs of a sweep, with counts and a warning when SLURM accounting was unavailable."""

    runs: list[RunStatus]
    warning: str | None
    problems: list[reader.Problem] = field(default_factory=list)
    """Unreadable status files and unknown states, by run (those runs count as not started)."""

    @property
    def counts(self) -> Counter[str]:
        """Number of runs per state."""
        return Counter(run.state for run in self.runs)

    @property
    def finished(self) -> bool:
        """No run pending or running."""
        return all(run.state in TERMINAL for run in self.runs)


def sweep_status(runs: list[RunSpec], root: Path) -> SweepStatus:
    """Join the run folders with the manifest and SLURM's job states."""
    records = reader.inspect(runs, root)
    manifest = store.read_manifest(root)
    states = slurm.JobStates({}, accounting=True)
    if manifest["arrays"] and slurm.available():
        states = slurm.query_states(manifest["arrays"])
    out = []
    for record in records:
        entry = manifest["runs"].get(record.run.run_id) or manifest["runs"].get(record.path.name, {})
        job_id = entry.get("job_id")
        slurm_state = states.states.get(job_id) if job_id else None
        out.append(RunStatus(record.run, _state(record, job_id, slurm_state), job_id, _detail(record)))
    problems = reader.problems_of(records)
    manifest_problem = store.manifest_problem(root)
    if manifest_problem is not None:  # named, not a traceback; SLURM states are then unknown
        problems.insert(0, reader.Problem("(sweep)", store.MANIFEST_FILE, manifest_problem))
    edited = store.snapshot_problem(root)
    if edited is not None:
        problems.insert(0, reader.Problem("(sweep)", store.SWEEP_FILE, edited))
    return SweepStatus(out, states.warning, problems)


def _state(record: RunRecord, job_id: str | None, slurm_state: str | None) -> str:
    """Run folder first for finished runs, SLURM first for live ones."""
    if record.state is State.COMPLETED:
        return "completed"
    if slurm_state in slurm.ACTIVE_STATES:
        return "running" if slurm_state in {"RUNNING", "COMPLETING"} else "pending"
    if record.state is State.FAILED:
        return "failed"
    if slurm_state is not None:
        return _SLURM_ENDINGS.get(slurm_state, slurm_state.lower())
    if record.state is State.RUNNING:
        return "interrupted" if is_stale(record) else "running"
    if record.state is State.PENDING:
        return "pending"
    if record.problem is not None:
        return "unknown"  # status.json unreadable or in an unknown state: submit runs it again
    # Submitted but not yet known to squeue/sacct (accounting lags a few seconds).
    return "pending" if job_id else "not submitted"


def _detail(record: RunRecord) -> str:
    """A failed run's exception, where it was raised (file:line in function), and its log file."""
    error = str(record.status.get("error") or "")
    if not error:
        return ""
    detail = error.splitlines()[0]  # "Type: message"; the rest of a long message is in the log
    frame = last_frame(record.status.get("traceback"))
    if frame:
        detail += f" at {frame}"
    log = record.status.get("log_err")
    return f"{detail} (log: {log})" if log else detail


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>\S+)')


def last_frame(traceback_text: object) -> str | None:
    """`file:line in function` of the innermost frame of a formatted traceback (status.json's
    `traceback`), or None when there is none (a hand-edited or older status file)."""
    if not isinstance(traceback_text, str):
        return None
    frames = list(_FRAME.finditer(traceback_text))
    if not frames:
        return None
    last = frames[-1]
    return f"{last['file']}:{last['line']} in {last['function']}"
