"""The Launcher: select -> snapshot -> archive, written once for every executor.

A launcher decides which planned runs still need doing (completed runs and runs a live
process or SLURM job still owns are left alone), records the spec as submitted, moves aside
the folders of runs redone with --force, and hands the rest to its executor (`start`).
"""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from orchestrator import store
from orchestrator.launch.job import Cleanup, TrainJob
from orchestrator.launch.pids import boot_id, pid_alive
from orchestrator.store import run_states
from orchestrator.store.run_states import RunRecord
from orchestrator.sweep.plan import RunSpec, smoke_plan
from orchestrator.sweep.spec import SweepSpec
from trainers.rundir import State


def is_stale(record: RunRecord) -> bool:
    """A 'running' run whose local process is gone (a killed run, or a machine rebooted since it
    started): safe to restart."""
    if record.state is not State.RUNNING or record.status.slurm_job_id is not None:
        return False
    if record.status.host != socket.gethostname():
        return False
    pid = record.status.pid
    if pid is None or not pid_alive(pid):
        return True
    # After a reboot (the workstation crashed mid-run) the pid may be any process's: the boot id tells.
    recorded, current = record.status.boot_id, boot_id()
    return recorded is not None and current is not None and recorded != current


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
    timed-out, preempted, missing and stale runs are launched again. A run to launch with a
    symbolic link or a file where its folder belongs is refused (run_states.RunFolderError) before
    anything is written: every launch path (launch, follow, rounds, the dry run) selects here.
    """
    in_slurm = in_slurm or set()
    selection = Selection(todo=[])
    for record in records:
        if record.run.run_id in in_slurm or record.path.name in in_slurm:  # a job of an older id rule's folder
            selection.skipped["pending or running in SLURM"] += 1
        elif record.state is State.RUNNING and not is_stale(record) and record.status.slurm_job_id is None:
            selection.skipped["running locally"] += 1
        elif record.state is State.COMPLETED and not force:
            selection.skipped["completed"] += 1
        else:
            selection.todo.append(record)
    run_states.refuse_foreign(selection.todo)
    return selection


@dataclass
class Outcome:
    """What happened to the launched runs."""

    completed: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)
    submitted: dict[str, str] = field(default_factory=dict)
    """run_id -> SLURM job id, for the slurm executor."""
    held: int = 0
    """Runs not submitted because the user's queue limits were reached (slurm executor)."""
    cancelled: bool = False
    """`orchestrate cancel` stopped the submit (slurm executor): it submitted nothing more."""


def train_job(record: RunRecord, cleanup: Cleanup, attempt: dict[str, Any] | None = None) -> TrainJob:
    """The submitit callable of a planned run; `attempt` (a retry's resources and the verdict on the
    attempt before) may double gradient accumulation: half the batch per device after a CUDA OOM."""
    config = record.run.config.model_dump(mode="json")
    factor = (attempt or {}).get("resources", {}).get("grad_accum_factor", 1)
    if isinstance(factor, int) and factor > 1:  # distributed.grad_accum_steps is outside the run id
        config["distributed"]["grad_accum_steps"] *= factor
    return TrainJob(record.path, config, record.run.metadata(), cleanup, attempt)


def cleanup_for(spec: SweepSpec, smoke: bool) -> Cleanup:
    """The spec's `cleanup:` block as the jobs apply it: smoke runs keep no checkpoints unless asked."""
    if smoke:
        return Cleanup(drop_checkpoints=not spec.cleanup.smoke_checkpoints)
    return Cleanup(drop_resume_state=spec.cleanup.drop_optimizer_state)


def archive_previous(todo: list[RunRecord], root: Path, force: bool) -> None:
    """With --force, move the folders of runs about to be redone aside (nothing is deleted)."""
    if not force:
        return
    stamp = store.timestamp()
    for record in todo:
        if record.path.exists():
            store.archive(record.path, root, stamp)
    store.forget_submissions(root, {record.run.run_id for record in todo})


class Launcher(ABC):
    """Select what to run, snapshot the spec, archive what --force redoes, then `start` the rest."""

    def __init__(self, spec: SweepSpec, console: Console) -> None:
        self.spec = spec
        self.console = console
        self.cleanup = cleanup_for(spec, smoke=False)
        """What the jobs `start` creates drop when their run ends (set per launch: smoke or not)."""

    def launch(
        self, runs: list[RunSpec], *, force: bool = False, smoke: bool = False, dry_run: bool = False
    ) -> Outcome:
        """Launch what is not done yet (smoke variants into `<output>/smoke/` with `smoke`)."""
        if smoke:
            runs = smoke_plan(runs)
            force = True  # smoke runs are a check, never a cache
        self.cleanup = cleanup_for(self.spec, smoke)
        root = store.sweep_root(self.spec, smoke)
        records = run_states.inspect(runs, root)
        selection = select(records, force, self.owned_elsewhere(root, dry_run))
        suffix = " (smoke)" if smoke else ""
        self.console.print(f"[bold]{self.spec.name}[/]{suffix}: {len(runs)} runs planned; {selection.summary()}")
        if not selection.todo:
            return Outcome()
        self.check(selection.todo)
        if dry_run:
            self.preview(selection.todo, root)
            return Outcome()
        root.mkdir(parents=True, exist_ok=True)
        store.write_snapshot(self.spec, root)
        archive_previous(selection.todo, root, force)
        return self.start(selection.todo, root)

    @abstractmethod
    def where(self, runs: Sequence[RunSpec] = ()) -> str:
        """Where `runs` (the planned runs) will execute, in one line printed before anything starts."""

    def owned_elsewhere(self, root: Path, dry_run: bool) -> set[str]:
        """Run ids a live job outside this machine's processes still owns (none by default)."""
        return set()

    def check(self, todo: list[RunRecord]) -> None:  # noqa: B027 (optional hook)
        """Refuse (SpecError) runs this executor cannot train, before anything is written (none by default)."""

    def preview(self, todo: list[RunRecord], root: Path) -> None:  # noqa: B027 (optional hook)
        """What --dry-run prints beyond the summary line (nothing by default)."""

    @abstractmethod
    def start(self, todo: list[RunRecord], root: Path) -> Outcome:
        """Run or submit the selected runs."""
