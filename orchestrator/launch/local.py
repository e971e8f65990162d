"""Local launching: runs on this machine, in warm workers (one per GPU, or N on the CPU).

Each worker imports torch, timm and the trainer once and then runs one run after another
(launch/worker.py). A workstation has one GPU or a few cores, so by default one worker runs
at a time; `--workers N` runs N at once. `debug` runs in this process, for breakpoints.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator import store, textsafe
from orchestrator.launch import lock, retries
from orchestrator.launch.base import Launcher, Outcome, train_job
from orchestrator.launch.job import Cleanup
from orchestrator.launch.status import last_frame
from orchestrator.launch.worker import run_pool, visible_gpus, worker_envs
from orchestrator.store import run_states
from orchestrator.store.run_states import RunRecord
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.retry import RetryPolicy
from orchestrator.sweep.spec import SweepSpec
from trainers import rundir
from trainers.contract import RunStatus
from trainers.rundir import State


class LocalLauncher(Launcher):
    """Runs on this machine; a failed run never stops the others."""

    def __init__(
        self, spec: SweepSpec, console: Console, debug: bool = False, workers: int = 1, slurm_jobs_gone: bool = False
    ) -> None:
        super().__init__(spec, console)
        self.debug = debug
        self.workers = max(1, workers)
        self.slurm_jobs_gone = slurm_jobs_gone
        """The user says the sweep's SLURM jobs have all ended (`--slurm-jobs-gone`): where no squeue can say
        which still run, its runs are trained here all the same instead of the submit being refused."""
        self.attempt: dict[str, Any] = {}
        """What each run's job is given (job.TrainJob's `attempt`): the hang watchdog's settings (`check`)."""

    def where(self, runs: Sequence[RunSpec] = ()) -> str:
        """This machine, how many runs at once, and on what; the hint matters on a login node."""
        host = textsafe.terminal(socket.gethostname())
        if self.debug:
            return f"runs execute here: in this process on {host}, one at a time (debug)"
        gpus = visible_gpus()
        device = f"{gpus} visible GPU(s)" if gpus else "the CPU (no GPU visible)"
        if gpus and self.workers > gpus:  # worker_envs deals the GPUs out round-robin
            device += f", so {self.workers} workers share them (one GPU's memory per run is not guaranteed)"
        return (
            f"runs execute here: on this machine ({host}), {self.workers} at a time, on {device}; "
            "`--executor slurm` sends them to SLURM instead"
        )

    def owned_elsewhere(self, root: Path, dry_run: bool) -> set[str]:
        """Run ids a SLURM job of this sweep still has pending or running: trained here as well, both
        would write one run folder. Asked of squeue where this machine has it; where it has not
        (a workstation beside a cluster's shared filesystem), refused unless `slurm_jobs_gone`."""
        return slurm_owned(root, self.console, dry_run=dry_run, jobs_gone=self.slurm_jobs_gone)

    def check(self, todo: list[RunRecord]) -> None:
        """Refuse runs one local worker cannot train (it is one process on at most one GPU), before
        anything runs: each would fail its preflight on its own, as `SystemExit: 77`. Also reads the
        retry policy (a bad site file is refused here, before anything is written)."""
        refuse_unfit(todo, visible_gpus())
        self.attempt = {} if self.debug else local_attempt(retries.policy_for(self.spec))

    def start(self, todo: list[RunRecord], root: Path) -> Outcome:
        """Write each run folder's config and pending status, then run them in plan order, holding the
        sweep's lock: `status` tells the pending runs of a live submit from a stopped one's by it."""
        with _sweep_lock(root):
            return self._start(todo, root)

    def _start(self, todo: list[RunRecord], root: Path) -> Outcome:
        for record in todo:
            store.prepare(record.run, record.path)
        with _progress(self.console) as progress:
            task = progress.add_task("runs", total=len(todo), detail="")
            report = _Reporter(progress, task)
            if self.debug:
                _run_in_process(todo, report, self.cleanup)
            else:
                timeout_s = self.spec.slurm.timeout_min * 60.0
                jobs = [(train_job(record, self.cleanup, self.attempt), record.path / rundir.LOGS) for record in todo]
                _run_on_workers(todo, jobs, min(self.workers, len(todo)), timeout_s, report)
        outcome = report.outcome
        # Where to look next: the failed runs' lines may have scrolled away above the bar.
        line = f"{len(outcome.completed)} completed, {len(outcome.failed)} failed; run folders in {root}"
        if outcome.failed:
            line += f"; `orchestrate status {self.spec.source or 'SPEC'}` lists why each failed"
        self.console.print(textsafe.rich(line))
        return outcome


def _sweep_lock(root: Path) -> AbstractContextManager[object]:
    """The sweep's lock (launch/lock.py), unless this process holds it already (`orchestrate submit`
    takes it before launching; a launch through the Python API does not)."""
    return nullcontext() if lock.held_here(root) else lock.hold(root)


def local_attempt(policy: RetryPolicy) -> dict[str, Any]:
    """A local run's `attempt` for its job: the retry policy's hang watchdog, with the settings SLURM jobs
    get but no requeue (there is no queue here): a hang records `failure: hang` and kills the run's worker,
    which the pool replaces before it goes on with the next run."""
    watchdog = policy.watchdog_settings(max_requeues=0)
    return {} if watchdog is None else {"watchdog": watchdog}


def slurm_owned(root: Path, console: Console, *, dry_run: bool = False, jobs_gone: bool = False) -> set[str]:
    """Run ids of the sweep's SLURM jobs (manifest.json) that squeue lists as pending or running.
    Where this machine has no squeue to ask, SpecError (a run still queued there would be trained twice
    into one folder), unless the user says the jobs are gone (`jobs_gone`); a dry run only warns."""
    from orchestrator.launch import slurmcli  # only for a sweep that was ever sent to SLURM

    manifest = store.read_manifest(root, strict=True) if root.exists() else {"arrays": {}}
    arrays = manifest["arrays"]
    if not arrays:
        return set()
    if not slurmcli.available():
        _no_squeue(root, console, dry_run, jobs_gone)
        return set()
    live = slurmcli.active_ids(arrays)
    return {run_id for run_id, entry in manifest["runs"].items() if entry["job_id"] in live}


def _no_squeue(root: Path, console: Console, dry_run: bool, jobs_gone: bool) -> None:
    """A sweep with SLURM jobs and no squeue here: the check of which still run cannot be made, so a
    submit is refused (a dry run, which trains nothing, says so in a warning) unless the user vouches."""
    if jobs_gone:
        console.print(
            f"--slurm-jobs-gone: {textsafe.rich(str(root))} has SLURM jobs (manifest.json), taken as ended "
            "(no squeue here to ask)",
            highlight=False,
        )
        return
    why = (
        f"{textsafe.terminal(str(root))} has SLURM jobs (manifest.json) and this machine has no squeue to say "
        "which still run: a run still queued there would be trained twice into one folder"
    )
    how = "submit on a machine with squeue (the cluster's login node), or pass --slurm-jobs-gone once none is queued"
    if not dry_run:
        raise SpecError(f"{why}; {how}")
    console.print(f"[yellow]warning[/]: {textsafe.rich(why)}; a submit refuses: {how}", highlight=False)


def refuse_unfit(todo: list[RunRecord], gpus: int) -> None:
    """SpecError for the first run a local worker (one process, at most one GPU) cannot train."""
    for record in todo:
        dist = record.run.config.distributed
        name = textsafe.terminal(record.run.name)
        if dist.processes > 1:
            raise SpecError(
                f"run {name}: distributed (nodes {dist.nodes}, gpus_per_node {dist.gpus_per_node}) needs "
                f"{dist.processes} processes; a local worker trains a run in one process on at most one GPU: "
                "set distributed.gpus_per_node: 1, or submit with --executor slurm"
            )
        if dist.gpus_per_node and not gpus:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            why = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "nvidia-smi lists none"
            raise SpecError(
                f"run {name}: distributed.gpus_per_node is 1 and this machine shows no GPU ({why}): "
                "set distributed.gpus_per_node: 0 to train on the CPU, or submit with --executor slurm"
            )


class _Reporter:
    """Collects the outcome and prints one line per finished run above the progress bar."""

    def __init__(self, progress: Progress, task: Any) -> None:
        self.progress, self.task, self.outcome = progress, task, Outcome()

    def running(self, records: list[RunRecord]) -> None:
        detail = "; ".join(
            f"{textsafe.rich(r.run.name)} epoch {run_states.epochs_done(r.path)}/{r.run.config.epochs}" for r in records
        )
        self.progress.update(self.task, detail=detail)

    def finished(self, record: RunRecord, error: str | None) -> None:
        if error is None:
            self.outcome.completed.append(record.run)
            done = textsafe.rich(f"{record.run.name}{run_states.result_line(record.path)}")
            self.progress.console.print(f"[green]done[/] {done}")
        else:
            status = _record_failure(record.path, error)
            # A run failed by its preflight records no error, only why the machine cannot train it.
            error = (status.error or status.failure_reason or error).splitlines()[0]
            frame = last_frame(status.traceback)
            error += f" at {frame}" if frame else ""
            self.outcome.failed.append((record.run, error))
            self.progress.console.print(f"[red]failed[/] {textsafe.rich(f'{record.run.name}: {error}')}")
        self.progress.advance(self.task)


def _record_failure(path: Path, error: str) -> RunStatus:
    """The run's status, marked failed unless the run itself recorded its failure (the worker died
    or timed out mid-run). One that cannot be written (a folder in its place, a full disk) is left
    as it is: the run still counts as failed, and the other runs go on."""
    status = run_states.status_of(path)
    if status.state == State.FAILED.value:
        return status
    try:  # no traceback: the one of an earlier attempt would point at the wrong place
        return rundir.update_status(path, State.FAILED, error=error, traceback=None)
    except OSError:
        return RunStatus()


def _progress(console: Console) -> Progress:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    return Progress(*columns, console=console, transient=False)


def _run_on_workers(
    todo: list[RunRecord], jobs: list[tuple[Any, Path]], count: int, timeout_s: float, report: _Reporter
) -> None:
    """Feed the runs' (job, log folder) to `count` warm workers in plan order until all have finished."""
    run_pool(
        jobs,
        worker_envs(count),
        timeout_s,
        finished=lambda index, error: report.finished(todo[index], error),
        tick=lambda running: report.running([todo[i] for i in running]),
    )


def _run_in_process(todo: list[RunRecord], report: _Reporter, cleanup: Cleanup) -> None:
    """The debug executor: each run in this process (submitit's DebugExecutor), for breakpoints."""
    import submitit  # keeps `orchestrate --help` and `plan` free of submitit's imports

    for record in todo:
        report.running([record])
        job = submitit.DebugExecutor(folder=record.path / rundir.LOGS).submit(train_job(record, cleanup))
        try:
            job.result()
        except Exception as exc:  # submitit wraps the traceback; the job's own record is clearer
            lines = [line for line in str(exc).strip().splitlines() if line.strip()]
            report.finished(record, lines[-1] if lines else type(exc).__name__)
        else:
            report.finished(record, None)
