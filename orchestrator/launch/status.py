"""Sweep status: run folders joined with SLURM's view (one squeue + one sacct call per sweep)."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator import store
from orchestrator.launch import lock, quarantine, retries, unconfirmed
from orchestrator.launch import slurmcli as slurm
from orchestrator.launch.base import is_stale
from orchestrator.launch.failures import Evidence, Failure, SacctRow, Verdict, classify
from orchestrator.store import run_states
from orchestrator.store.run_states import RunRecord
from orchestrator.sweep import gcpause
from orchestrator.sweep.plan import RunSpec
from trainers.contract import RunStatus as ContractStatus
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
    "DEADLINE": "deadline",
    # Out of the queue, but accounting still holds a state that is not an end: neither running nor known
    # to have ended how (slurmdbd lag, or a runaway record that never ends).
    slurm.UNRECORDED: "unrecorded",
    # Federation: the job started on a sibling cluster; this cluster's squeue and sacct never see its end.
    "REVOKED": "unrecorded",
    "COMPLETED": "failed",  # the job ended but the run never wrote completed: it crashed
}
TERMINAL = {"completed", "failed", "not submitted", "interrupted", *_SLURM_ENDINGS.values()}
NEVER_STARTED = "queued by a local submit that has ended (stopped before it started this run): `submit` runs it"
"""The detail of a run a local submit queued (status.json `pending`) and ended before it started: state
`not submitted`, as a run without a folder (nothing of it ran; `interrupted` is a run that was running)."""
UNCONFIRMED = "unconfirmed"
"""A run of an array sbatch did not confirm and squeue could not settle (launch/unconfirmed.py): a job of it
may be queued. Not terminal: only a submit or a --follow poll settles it (status asks nothing more)."""


@dataclass(frozen=True)
class RunStatus:
    """One run's state as the user sees it, with where to look when it went wrong."""

    run: RunSpec
    state: str
    job_id: str | None
    detail: str
    verdict: Verdict | None = None
    """How the latest attempt ended (class, node, why); None while it may still run."""
    attempts: int = 0
    """Attempts recorded in status.json (1 for a run tried once; 0 before its first start)."""
    job_name: str | None = None
    """For an `unconfirmed` run: the job name of the array holding it (`squeue --name` finds its job)."""


@dataclass(frozen=True)
class SweepStatus:
    """All runs of a sweep, with counts and a warning when SLURM accounting was unavailable."""

    runs: list[RunStatus]
    warning: str | None
    problems: list[run_states.Problem] = field(default_factory=list)
    """Unreadable status files and unknown states, by run (those runs count as not started)."""
    quarantined: list[quarantine.Quarantined] = field(default_factory=list)
    """Nodes the sweep's later submissions exclude, with the failures that put them there."""
    queue_unknown: bool = False
    """squeue could not be asked (no controller): the states are the run folders' and the manifest's,
    so a run pending or running in the queue may show otherwise; `warning` says so, and `status` exits 1."""
    unconfirmed: dict[str, int] = field(default_factory=dict)
    """Job name -> runs of each array sbatch did not confirm and squeue could not settle (state `unconfirmed`)."""

    @property
    def counts(self) -> Counter[str]:
        """Number of runs per state."""
        return Counter(run.state for run in self.runs)

    @property
    def failures(self) -> Counter[str]:
        """Number of runs per failure class of their latest attempt (completed runs left out)."""
        return Counter(
            run.verdict.failure.value
            for run in self.runs
            if run.verdict is not None and run.verdict.failure is not Failure.COMPLETED
        )

    @property
    def finished(self) -> bool:
        """No run pending or running."""
        return all(run.state in TERMINAL for run in self.runs)


def sweep_status(runs: list[RunSpec], root: Path, quarantine_after: int = 2) -> SweepStatus:
    """Join the run folders with the manifest and SLURM's job states; nodes with `quarantine_after`
    failures of their own are listed as quarantined (retry.quarantine_after)."""
    with gcpause.paused_gc():  # a row object per run: see gcpause
        return _sweep_status(runs, root, quarantine_after)


def _sweep_status(runs: list[RunSpec], root: Path, quarantine_after: int) -> SweepStatus:
    records = run_states.inspect(runs, root)
    manifest = store.read_manifest(root)
    states, queue_unknown = _job_states(manifest["arrays"])
    submitted = store.submissions(manifest)
    held = unconfirmed.held(manifest)
    queued = _local_queue(root)  # once per sweep, not per run
    out = []
    for record in records:
        entry = manifest["runs"].get(record.run.run_id) or manifest["runs"].get(record.path.name, {})
        job_id = entry.get("job_id")
        slurm_state = states.state(job_id) if job_id else None
        state = _state(record, job_id, slurm_state, queued is not None)
        ended = states.end(job_id) if job_id and slurm_state not in slurm.ACTIVE_STATES else None
        verdict = attempt_verdict(record, ended) if state in TERMINAL else None
        detail = _detail(record) or (verdict.reason if verdict and verdict.failure is not Failure.COMPLETED else "")
        if record.state is State.PENDING and not job_id:  # a local submit's: its queue is `queued`'s
            detail = NEVER_STARTED if queued is None else queued
        if state == "unrecorded" and ended is not None:
            detail = f"left the queue; accounting still says {ended.state}: its end is not recorded (yet)"
        tries = tries_of(record.status, submitted.get(record.run.run_id, 0), job_id)
        row = RunStatus(record.run, state, job_id, detail, verdict, tries)
        out.append(_held(row, held.get(record.run.run_id), slurm_state))
    problems = run_states.problems_of(records) + _sweep_wide_preflight(root)
    manifest_problem = store.manifest_problem(root)
    if manifest_problem is not None:  # named, not a traceback; SLURM states are then unknown
        problems.insert(0, run_states.Problem("(sweep)", store.MANIFEST_FILE, manifest_problem))
    edited = store.snapshot_problem(root)
    if edited is not None:
        problems.insert(0, run_states.Problem("(sweep)", store.SWEEP_FILE, edited))
    _, unreadable = quarantine.load(root)
    if unreadable is not None:
        problems.insert(0, run_states.Problem("(sweep)", quarantine.FILE, unreadable))
    quarantined = quarantine.nodes(root, quarantine_after)
    return SweepStatus(out, states.warning, problems, quarantined, queue_unknown, dict(Counter(held.values())))


def _held(row: RunStatus, job_name: str | None, slurm_state: str | None) -> RunStatus:
    """The row of a run an unconfirmed array holds: its earlier job's end (or `not submitted`) is not how it
    stands, since a job of that name may be queued. A completed run or a live job of its own is left as is."""
    if job_name is None or row.state == "completed" or slurm_state in slurm.ACTIVE_STATES:
        return row
    detail = f"held by array {job_name}: sbatch failed and squeue could not say whether it was queued; "
    return replace(
        row, state=UNCONFIRMED, job_id=None, verdict=None, job_name=job_name, detail=detail + unconfirmed.SETTLES
    )


def _sweep_wide_preflight(root: Path) -> list[run_states.Problem]:
    """Preflight failures that several nodes reported alike: the sweep's (or every node's setup's) problem,
    charged to no node."""
    return [
        run_states.Problem(
            "(sweep)",
            quarantine.FILE,
            f"preflight fails alike on {len(nodes)} nodes ({', '.join(nodes[:5])}): {reason}; "
            "not charged to the nodes: fix it, then submit --retry-all",
        )
        for reason, nodes in quarantine.sweep_wide(root).items()
    ]


def _job_states(arrays: dict[str, Any]) -> tuple[slurm.JobStates, bool]:
    """SLURM's view of the sweep's arrays (none to ask: no arrays, or no SLURM commands here) and whether
    squeue failed. A controller that cannot be reached is a warning, not an error: the run folders
    still say how every run stands, and the user needs them most when the cluster is in trouble."""
    if not arrays or not slurm.available():
        return slurm.JobStates({}, accounting=True), False
    try:
        return slurm.query_states(arrays), False
    except (slurm.SlurmError, subprocess.TimeoutExpired) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        warning = (
            f"SLURM could not be asked ({why}): states are from the run folders, "
            "so which runs are pending or running in the queue is unknown"
        )
        return slurm.JobStates({}, accounting=False, warning=warning), True


def _local_queue(root: Path) -> str | None:
    """Whether a submit of the sweep may still run the runs a local submit queued (status.json `pending`):
    None when none is running (the sweep's lock records no holder, or one whose process is gone);
    else the detail of those runs ("" when it runs here; who, where its pid cannot be checked)."""
    holder = lock.live_holder(root)
    if holder is None:
        return None
    if holder.host == socket.gethostname():
        return ""
    return f"queued by a submit on {holder.host} (pid {holder.pid}); if that has ended, `submit` runs it"


def _state(record: RunRecord, job_id: str | None, slurm_state: str | None, queued: bool = True) -> str:
    """Run folder first for finished runs, SLURM first for live ones. `queued`: a submit of the sweep is
    running, so a run a local submit left `pending` (not started) may still start."""
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
        # Without a live submit nothing will start it: a stopped (Ctrl-C, killed, rebooted) local submit's.
        return "pending" if job_id or queued else "not submitted"
    if record.problem is not None:
        return "unknown"  # status.json unreadable or in an unknown state: submit runs it again
    # Submitted but not yet known to squeue/sacct (accounting lags a few seconds).
    return "pending" if job_id else "not submitted"


def attempt_verdict(record: RunRecord, row: SacctRow | None) -> Verdict | None:
    """Classify the run's latest attempt from sacct's row and its status.json (log tail when neither
    decides)."""
    status = record.status
    evidence = Evidence(
        state=record.state.value if record.state is not State.MISSING else None,
        failure=status.failure or "",
        reason=status.failure_reason or "",
        error=status.error or "",
        traceback=status.traceback or "",
        host=_slurm_node(status, row),
        node=_blamed_node(status, row),
    )
    verdict = classify(row, evidence)
    if verdict is not None and verdict.failure is Failure.CRASHED:  # the log may say what the status could not
        tail = log_tail(status.log_err)
        if tail:
            verdict = classify(row, replace(evidence, log_tail=tail)) or verdict
    return verdict


def _slurm_node(status: ContractStatus, row: SacctRow | None) -> str:
    """SLURM's name of the node the judged attempt ran on, as the job recorded it (`slurm_node`, from
    SLURMD_NODENAME), or "": status.json's `host` is the hostname, which `--exclude` may not take."""
    last = status.attempts[-1] if status.attempts else None
    if last is None or (row is not None and last.job_id != row.job_id):
        return ""
    return last.slurm_node or ""


def _blamed_node(status: ContractStatus, row: SacctRow | None) -> str:
    """The node the latest attempt's own record blames for the failure status.json records (the
    unfit host of a multi-node preflight), or "" (accounting's first node then stands). Only for
    the job being judged: a retry that never started leaves the attempt before it last."""
    last = status.attempts[-1] if status.attempts else None
    if last is None or row is None or last.job_id != row.job_id:
        return ""
    if not status.failure or last.failure != status.failure:
        return ""
    return last.node or ""


def tries_of(status: ContractStatus, submitted: int, job_id: str | None) -> int:
    """The run's attempts as the retry policy counts them (retries.counted): status.json's `attempts`
    (one, of the latest job, for a run started before that list existed), the latest submission when it
    never started, and submissions that ended before writing status.json. Showing the same number
    the policy reads means "3 tries" in status is the third the retry.max_attempts cap counts."""
    if "attempts" in status.model_fields_set:
        attempts = [{"job_id": a.job_id} for a in status.attempts]
    else:
        attempts = [{"job_id": job_id}] if status.started_at is not None else []
    return len(retries.counted(attempts, submitted, job_id)[0])


def log_tail(path: object, most_bytes: int = 8192) -> str:
    """The last `most_bytes` of a job's log, or "" when there is no regular file to read (tolerant:
    never blocks on a FIFO, never follows a final symlink)."""
    if not isinstance(path, str) or not path or "\0" in path:
        return ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        return os.pread(fd, most_bytes, max(0, info.st_size - most_bytes)).decode("utf-8", errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _detail(record: RunRecord) -> str:
    """A failed run's exception, where it was raised (file:line in function), and its log file."""
    error = record.status.error or ""
    if not error:
        return ""
    detail = error.splitlines()[0]  # "Type: message"; the rest of a long message is in the log
    frame = last_frame(record.status.traceback)
    if frame:
        detail += f" at {frame}"
    log = record.status.log_err
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
