"""The hang watchdog: a small process beside the training process that ends an attempt without progress.

The job (TrainJob) starts it, under SLURM and in a local warm worker, as `python -m
orchestrator.launch.watchdog ...`: a separate process, so a trainer that is stopped (SIGSTOP),
deadlocked in a collective or stuck on I/O cannot silence it. It reads the trainer's heartbeat
(trainers/runtime/heartbeat.py: the mtime of `<run_dir>/heartbeat` and the phase written in it).
In the `step` phase the limit is max(step_factor x the typical interval between beats, floor_s);
in the slow phases (start, compile, eval, checkpoint) it is slow_phase_s, so evaluation,
checkpointing and the first compilation are never taken for a hang. On a hang it records
`failure: hang` in status.json (and on the attempt) and asks SLURM to requeue the job (`scontrol
requeue`), which resumes from the last checkpoint; after `max_requeues` restarts it kills the
trainer instead and leaves the retry to `submit --follow` (a hang counts against the node). A
local run is never requeued: the trainer it kills is the warm worker, which the pool replaces
before it goes on with the next run.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.launch.pids import pid_alive
from trainers import rundir

HEARTBEAT_FILE = "heartbeat"
"""trainers.runtime.heartbeat.FILE (launch/ may not import that module)."""
HEARTBEAT_ENV = "ORCH_HEARTBEAT"
"""trainers.runtime.heartbeat.ENV: set for the trainer when a watchdog reads its heartbeat."""
SLOW_PHASES = frozenset({"start", "compile", "eval", "checkpoint"})
_JOB_ID = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class Limits:
    """When no progress is a hang (the retry policy's hang_* keys)."""

    step_factor: float = 10.0
    floor_s: float = 300.0
    slow_phase_s: float = 1800.0


def limit_s(phase: str, intervals: list[float], limits: Limits) -> float:
    """Seconds without a beat after which phase `phase` counts as hung."""
    if phase in SLOW_PHASES:
        return limits.slow_phase_s
    typical = statistics.median(intervals[-50:]) if intervals else 0.0
    return max(limits.step_factor * typical, limits.floor_s)


def stalled(now: float, last_beat: float, phase: str, intervals: list[float], limits: Limits) -> str | None:
    """Why the trainer counts as hung at `now` (one line), or None while it is within its limit."""
    waited = now - last_beat
    limit = limit_s(phase, intervals, limits)
    if waited <= limit:
        return None
    return f"no progress for {waited:.0f} s in phase {phase} (limit {limit:.0f} s)"


def read_beat(run_dir: Path, since: float = 0.0) -> tuple[float, str] | None:
    """(mtime, phase) of the heartbeat file, None before the first beat. A beat older than `since` (this
    watchdog's start) is an earlier attempt's, left in the run folder: none yet for this attempt."""
    path = run_dir / HEARTBEAT_FILE
    try:
        mtime = path.stat().st_mtime
        phase = path.read_text(encoding="utf-8", errors="replace")[:20].strip()
    except OSError:
        return None
    if mtime < since:
        return None
    return mtime, phase or "step"


def watch(run_dir: Path, pid: int, limits: Limits, poll_s: float) -> str | None:
    """Poll until the trainer `pid` ends (None) or hangs (the reason). Says on stderr when it starts
    watching (the job log shows the limits; a beat from then on counts)."""
    started = time.time()
    print(
        f"watchdog: watching pid {pid}: a hang is {limits.step_factor:g} x the step interval "
        f"(at least {limits.floor_s:g} s), {limits.slow_phase_s:g} s in start/compile/eval/checkpoint",
        file=sys.stderr,
        flush=True,
    )
    last: tuple[float, str] | None = None
    intervals: list[float] = []
    while pid_alive(pid) and os.getppid() == pid:
        # Not an earlier attempt's beat: after a requeue that waited in the queue longer than the step
        # limit, it would end this attempt as hung before it started.
        beat = read_beat(run_dir, since=started)
        if beat is not None and last is not None and beat[0] > last[0] and beat[1] == last[1] == "step":
            intervals.append(beat[0] - last[0])
        last = beat or last
        mtime, phase = last or (started, "start")
        reason = stalled(time.time(), mtime, phase, intervals, limits)
        if reason is not None:
            return reason
        time.sleep(poll_s)  # a polling period of a file's mtime, not synchronisation
    return None


def end_attempt(run_dir: Path, pid: int, reason: str, job_id: str | None, requeue: bool) -> None:
    """Record the hang, then requeue the job through SLURM (or kill the trainer)."""
    rundir.record_node_fault(run_dir, "hang", rundir.node_name(), reason)
    print(f"watchdog: {reason}; {'requeued' if requeue else 'ended'}", file=sys.stderr, flush=True)
    if requeue and job_id and _JOB_ID.fullmatch(job_id):
        result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return
        print(f"watchdog: scontrol requeue failed: {result.stderr.strip()}", file=sys.stderr, flush=True)
    os.kill(pid, signal.SIGKILL)  # works on a stopped process too


def main(argv: list[str] | None = None) -> int:
    """`python -m orchestrator.launch.watchdog --run-dir D --pid P ...` (started by the job)."""
    parser = argparse.ArgumentParser(prog="orchestrator.launch.watchdog")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--job-id", default=None)
    parser.add_argument("--step-factor", type=float, default=Limits.step_factor)
    parser.add_argument("--floor-s", type=float, default=Limits.floor_s)
    parser.add_argument("--slow-phase-s", type=float, default=Limits.slow_phase_s)
    parser.add_argument("--requeue", action="store_true", help="requeue through SLURM rather than kill")
    args = parser.parse_args(argv)
    limits = Limits(args.step_factor, args.floor_s, args.slow_phase_s)
    poll_s = max(0.5, min(5.0, limits.floor_s / 5))
    reason = watch(args.run_dir, args.pid, limits, poll_s)
    if reason is not None:
        end_attempt(args.run_dir, args.pid, reason, args.job_id, args.requeue)
    return 0


if __name__ == "__main__":
    sys.exit(main())
