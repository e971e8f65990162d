"""Submission: decide which runs still need doing and hand them to a submitit executor.

`local` runs each job as its own process through submitit's LocalExecutor, one
after the other (a workstation has one GPU or a few cores; running the whole
grid at once would only thrash). `debug` runs in this process, for breakpoints.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator import store
from orchestrator.job import TrainJob
from orchestrator.plan import RunSpec, smoke_plan
from orchestrator.spec import SweepSpec
from orchestrator.store import RunRecord
from trainers import rundir
from trainers.rundir import State

EXECUTORS = ("local", "debug", "slurm")
_POLL_S = 0.5


@dataclass
class Selection:
    """Which planned runs to launch, and why the others are left alone."""

    todo: list[RunRecord]
    skipped: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line: what will run and what is skipped."""
        parts = [f"{len(self.todo)} to run"]
        parts += [f"{n} {why}" for why, n in sorted(self.skipped.items())]
        return ", ".join(parts)


def select(records: Sequence[RunRecord], force: bool = False, in_slurm: set[str] | None = None) -> Selection:
    """Which runs to launch.

    Skipped: completed runs (unless `force`), and runs still owned by a live process:
    a live local process, or a SLURM job still pending/running (`in_slurm` holds their
    run ids; even `force` does not launch a second copy of those). Failed, cancelled,
    timed-out, preempted, missing and stale runs are launched again.
    """
    in_slurm = in_slurm or set()
    selection = Selection(todo=[])
    for record in records:
        if record.run.run_id in in_slurm:
            selection.skipped["pending or running in SLURM"] += 1
        elif record.state is State.RUNNING and not store.is_stale(record) and "slurm_job_id" not in record.status:
            selection.skipped["running locally"] += 1
        elif record.state is State.COMPLETED and not force:
            selection.skipped["completed"] += 1
        else:
            selection.todo.append(record)
    return selection


@dataclass
class Outcome:
    """What happened to the launched runs."""

    completed: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)
    submitted: dict[str, str] = field(default_factory=dict)
    """run_id -> SLURM job id, for the slurm executor."""


def submit(
    spec: SweepSpec,
    runs: list[RunSpec],
    executor: str,
    *,
    force: bool = False,
    smoke: bool = False,
    profile: str | None = None,
    dry_run: bool = False,
    console: Console | None = None,
) -> Outcome:
    """Launch what is not done yet; returns which runs completed and which failed (local),
    or which were submitted (slurm)."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    console = console or Console()
    if smoke:
        runs = smoke_plan(runs)
        force = True  # smoke runs are a check, never a cache
    root = store.sweep_root(spec, smoke)
    records = store.inspect(runs, root)
    if executor == "slurm":
        from orchestrator import slurm_launch

        config = slurm_launch.resolve(spec, profile)
        return slurm_launch.submit_arrays(spec, root, records, config, force=force, dry_run=dry_run, console=console)
    selection = select(records, force)
    console.print(f"[bold]{spec.name}[/]{' (smoke)' if smoke else ''}: {len(runs)} runs planned; {selection.summary()}")
    if not selection.todo or dry_run:
        return Outcome()
    root.mkdir(parents=True, exist_ok=True)
    store.write_snapshot(spec, root)
    archive_previous(selection.todo, root, force)
    for record in selection.todo:
        store.prepare(record.run, record.path)
    return _run_sequentially(spec, selection.todo, executor, console)


def archive_previous(todo: list[RunRecord], root: Path, force: bool) -> None:
    """With --force, move the folders of runs about to be redone aside (nothing is deleted)."""
    if not force:
        return
    stamp = store.timestamp()
    for record in todo:
        if record.path.exists():
            store.archive(record.path, root, stamp)


def train_job(record: RunRecord) -> TrainJob:
    """The submitit callable of a planned run."""
    return TrainJob(record.path, record.run.config.model_dump(mode="json"), record.run.metadata())


def _run_sequentially(spec: SweepSpec, todo: list[RunRecord], executor: str, console: Console) -> Outcome:
    """Run jobs one at a time with a progress bar; a failed run does not stop the others."""
    outcome = Outcome()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("runs", total=len(todo), detail="")
        for record in todo:
            job = _executor(executor, record.path, spec).submit(train_job(record))
            _wait(job, _progress_tick(progress, task, record), executor)
            error = _job_error(job, record.path)
            if error is None:
                outcome.completed.append(record.run)
                progress.console.print(f"[green]done[/] {record.run.name}{_result_line(record.path)}")
            else:
                outcome.failed.append((record.run, error))
                progress.console.print(f"[red]failed[/] {record.run.name}: {error}")
            progress.advance(task)
    console.print(f"{len(outcome.completed)} completed, {len(outcome.failed)} failed")
    return outcome


def _executor(kind: str, run_path: Path, spec: SweepSpec) -> Any:
    import submitit  # keeps `orchestrate --help` and `plan` free of submitit's imports

    folder = run_path / rundir.LOGS
    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=spec.slurm.timeout_min)
    return executor


def _wait(job: Any, tick: Callable[[], None], kind: str) -> None:
    """Poll a local job until it ends, refreshing the progress line."""
    if kind == "debug":
        return  # DebugJob runs when its result is asked for
    while not job.done():
        tick()
        time.sleep(_POLL_S)


def _result_line(path: Path) -> str:
    """`: test top-1 98.05%, 12.3 s` from a finished run's metrics.json (empty if unreadable)."""
    metrics = rundir.read_json(path / rundir.METRICS) or {}
    top1 = (metrics.get("test") or {}).get("top1")
    wall_s = (metrics.get("timing") or {}).get("wall_s")
    parts = ([f"test top-1 {100 * top1:.2f}%"] if isinstance(top1, int | float) else []) + (
        [f"{wall_s:.1f} s"] if isinstance(wall_s, int | float) else []
    )
    return f": {', '.join(parts)}" if parts else ""


def _job_error(job: Any, path: Path) -> str | None:
    """None when the job succeeded, else its one-line error (as the job recorded it, if it did)."""
    try:
        job.result()
    except Exception as exc:  # submitit wraps the remote traceback; the job's own record is clearer
        recorded = (rundir.read_json(path / rundir.STATUS) or {}).get("error")
        if recorded:
            return str(recorded).splitlines()[0]
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        return lines[-1] if lines else type(exc).__name__
    return None


def _progress_tick(progress: Progress, task: Any, record: RunRecord) -> Callable[[], None]:
    """A callable that shows the run's finished epochs (rows of its history.csv) on the progress line."""
    history = record.path / rundir.HISTORY
    epochs = record.run.config.epochs

    def tick() -> None:
        try:
            done = max(0, len(history.read_text().splitlines()) - 1)
        except FileNotFoundError:
            done = 0
        progress.update(task, detail=f"{record.run.name} epoch {done}/{epochs}")

    return tick
