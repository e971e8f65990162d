"""How the last attempts of the runs about to be submitted again ended, for the SLURM launcher's retries.

One sacct call for all of them (status.attempt_verdict classifies each), how often each run was
submitted (the manifest's arrays list their runs: an attempt that ended before the job wrote
status.json leaves no other trace), and the checks a retry passes before it is submitted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orchestrator import store
from orchestrator.launch import quarantine, retries, slurmcli, status
from orchestrator.launch.failures import Failure, Verdict
from orchestrator.store.run_states import RunRecord
from orchestrator.sweep.retry import RetryPolicy
from orchestrator.sweep.spec import SlurmConfig
from trainers.rundir import State


@dataclass(frozen=True)
class Judged:
    """A run about to be submitted again: the verdict on its latest attempt and what it is judged from."""

    record: RunRecord
    verdict: Verdict | None
    """None: never ran, or its end is not known."""
    job_id: str | None
    """The latest attempt's job (the manifest's), None before the first submission."""
    submitted: int = 0
    """How many of the manifest's arrays hold the run (each submission is one attempt, at least)."""
    unrecorded: str = ""
    """sacct's State of a job that left the queue before accounting recorded its end ("": not so)."""


UNSEEN_WAIT_S = 900.0
"""How long after its submission a job out of the queue may have no accounting row at all before it is taken
for one that never ran: slurmdbd records a job a while after it is queued (an array cancelled right after
sbatch has no row for a moment), and a run resubmitted then would undo the cancel."""
NO_ROW = "nothing"
"""Judged.unrecorded of a recent job accounting has no row of yet."""


def failed_before(todo: list[RunRecord], root: Path) -> dict[str, Judged]:
    """run_id -> how the latest attempt ended, for the runs that were submitted before (one sacct call
    for all of them)."""
    manifest = store.read_manifest(root)
    entries = {r.run.run_id: manifest["runs"].get(r.run.run_id) or {} for r in todo}
    jobs = {run_id: entry.get("job_id") for run_id, entry in entries.items()}
    arrays = {str(job).split("_", 1)[0] for job in jobs.values() if job}
    asked = bool(arrays) and slurmcli.available()
    states = slurmcli.query_states(arrays) if asked else slurmcli.JobStates({}, True)
    counts = store.submissions(manifest)
    plans: dict[str, Judged] = {}
    for record in todo:
        run_id = record.run.run_id
        job = jobs[run_id]
        if job is None and record.state is State.MISSING:
            continue
        row = states.end(job) if job else None
        verdict = status.attempt_verdict(record, row)
        unrecorded = row.state if row is not None and not row.final and verdict is None else ""
        if row is None and verdict is None and job and asked and states.accounting and _recent(entries[run_id]):
            unrecorded = NO_ROW
        plans[run_id] = Judged(record, verdict, job, counts.get(run_id, 0), unrecorded)
    return plans


def _recent(entry: dict[str, Any]) -> bool:
    """Whether the manifest's entry of a run was submitted less than UNSEEN_WAIT_S ago."""
    at = entry.get("submitted_at")
    return isinstance(at, (int, float)) and not isinstance(at, bool) and time.time() - at < UNSEEN_WAIT_S


def decide(
    policy: RetryPolicy,
    judged: Judged | None,
    record: RunRecord,
    config: SlurmConfig,
    max_time_min: int | None,
    sweep_wide: set[str],
    fresh: bool = False,
) -> retries.Decision:
    """The retry policy's decision for one run, with the checks the launcher adds: the end not yet recorded
    by accounting (judged at a later poll), a preflight failure of the whole sweep, a batch that does not
    split for a CUDA-OOM retry. `sweep_wide`: quarantine.sweep_wide_keys; `fresh`: retries.decide's."""
    if judged is None:
        return retries.decide(policy, None, attempts_of(record), config, max_time_min)
    if judged.unrecorded:
        why = f"left the queue, but accounting still says {judged.unrecorded} (its end is not recorded yet)"
        return retries.Decision(False, f"{why}: judged again at a later poll")
    verdict = judged.verdict
    if verdict is not None and quarantine.preflight_key(verdict.failure.value, verdict.node, verdict.reason) in (
        sweep_wide
    ):
        why = f"preflight fails alike on several nodes ({verdict.reason}): a problem of the sweep, not retried"
        return retries.Decision(False, why, previous=_previous(judged))
    attempts = attempts_of(record)
    decision = retries.decide(
        policy, verdict, attempts, config, max_time_min, judged.job_id, judged.submitted, fresh=fresh
    )
    return fits_batch(record, decision)


def _previous(judged: Judged) -> dict[str, Any]:
    """The verdict as status.json's attempt entry records it (what retries.decide passes on)."""
    verdict = judged.verdict
    if verdict is None:
        return {}
    return {"job_id": judged.job_id, "failure": verdict.failure.value, "node": verdict.node, "reason": verdict.reason}


def max_time(config: SlurmConfig, plans: dict[str, Judged]) -> int | None:
    """The partition's MaxTime, asked only when some run timed out."""
    timed_out = any(j.verdict is not None and j.verdict.failure is Failure.TIMEOUT for j in plans.values())
    return slurmcli.partition_max_time_min(config.partition) if timed_out and slurmcli.available() else None


def event(judged: Judged) -> quarantine.Event | None:
    """The quarantine event of an attempt that failed for its node's reasons (None: another end, or no
    node can be named)."""
    verdict, job = judged.verdict, judged.job_id
    if verdict is None or not verdict.failure.infrastructure or not verdict.node or not job:
        return None
    return quarantine.Event(job, verdict.node, verdict.failure.value, verdict.reason, time.time())


def attempts_of(record: RunRecord) -> list[dict[str, Any]]:
    """status.json's attempts (contract.Attempt) as the retry policy reads them."""
    return [attempt.model_dump(mode="json") for attempt in record.status.attempts]


def fits_batch(record: RunRecord, decision: retries.Decision) -> retries.Decision:
    """A CUDA-OOM retry halves the batch per device only while the batch splits evenly."""
    if decision.grad_accum_factor <= 1:
        return decision
    dist = record.run.config.distributed
    parts = dist.processes * dist.grad_accum_steps * decision.grad_accum_factor
    if record.run.config.data.batch_size % parts == 0:
        return decision
    why = f"CUDA out of memory; batch_size {record.run.config.data.batch_size} does not split into {parts} parts"
    return replace(decision, retry=False, why=why)
