"""Local launching: each run as its own process through submitit's LocalExecutor, one after the
other (a workstation has one GPU or a few cores; running the whole grid at once would only
thrash). `debug` runs in this process, for breakpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.launch.base import Launcher, Outcome, train_job
from orchestrator.results import reader
from orchestrator.results.reader import RunRecord
from orchestrator.sweep import store
from orchestrator.sweep.spec import SweepSpec
from trainers import rundir

_POLL_S = 0.5


class LocalLauncher(Launcher):
    """Runs one after the other on this machine, a failed run never stopping the others."""

    def __init__(self, spec: SweepSpec, console: Console, debug: bool = False) -> None:
        super().__init__(spec, console)
        self.kind = "debug" if debug else "local"

    def start(self, todo: list[RunRecord], root: Path) -> Outcome:
        """Write each run folder's config and pending status, then run them in plan order."""
        for record in todo:
            store.prepare(record.run, record.path)
        return _run_sequentially(self.spec, todo, self.kind, self.console)


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
            job = _executor(executor, record.path, spec).submit(train_job(record, spec.name))
            _wait(job, _progress_tick(progress, task, record), executor)
            error = _job_error(job, record.path)
            if error is None:
                outcome.completed.append(record.run)
                progress.console.print(f"[green]done[/] {record.run.name}{reader.result_line(record.path)}")
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


def _job_error(job: Any, path: Path) -> str | None:
    """None when the job succeeded, else its one-line error (as the job recorded it, if it did)."""
    try:
        job.result()
    except Exception as exc:  # submitit wraps the remote traceback; the job's own record is clearer
        recorded = reader.status_of(path).get("error")
        if recorded:
            return str(recorded).splitlines()[0]
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        return lines[-1] if lines else type(exc).__name__
    return None


def _progress_tick(progress: Progress, task: Any, record: RunRecord) -> Callable[[], None]:
    """A callable that shows the run's finished epochs (rows of its history.csv) on the progress line."""
    epochs = record.run.config.epochs

    def tick() -> None:
        done = reader.epochs_done(record.path)
        progress.update(task, detail=f"{record.run.name} epoch {done}/{epochs}")

    return tick
