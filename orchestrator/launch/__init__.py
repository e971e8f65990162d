"""Launching: which runs still need doing, and handing them to a local worker or to SLURM job arrays;
the SLURM command wrappers, the submitted job, and sweep status."""

from __future__ import annotations

from rich.console import Console

from orchestrator.launch.base import Launcher, Outcome, Selection, select
from orchestrator.launch.rounds import RoundDecider
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec, smoke_seeds
from orchestrator.sweep.spec import SweepSpec

EXECUTORS = ("local", "debug", "slurm")


def launcher(
    spec: SweepSpec,
    executor: str,
    console: Console,
    profile: str | None = None,
    workers: int | None = None,
    slurm_jobs_gone: bool = False,
) -> Launcher:
    """The Launcher of an executor: local (warm workers), debug (in this process) or slurm.

    `workers` (local): runs at once; None = one per visible GPU, else one.
    `slurm_jobs_gone` (local): the user says the sweep's SLURM jobs ended (no squeue here to ask).
    """
    if executor not in EXECUTORS:
        raise SpecError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if executor == "slurm":
        from orchestrator.launch.slurm import SlurmLauncher

        return SlurmLauncher(spec, console, profile)
    from orchestrator.launch.local import LocalLauncher
    from orchestrator.launch.worker import visible_gpus

    count = workers if workers is not None else max(1, visible_gpus())
    return LocalLauncher(spec, console, debug=executor == "debug", workers=count, slurm_jobs_gone=slurm_jobs_gone)


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
    workers: int | None = None,
    follow_s: float | None = None,
    retry_all: bool = False,
    decider: RoundDecider | None = None,
    slurm_jobs_gone: bool = False,
) -> Outcome:
    """Launch what is not done yet: which runs completed and failed (local), or were submitted (slurm).

    `follow_s` (slurm): stay in the foreground, polling every `follow_s` seconds, and top the queue
    up within the user's limits until every run has been submitted and left the queue.
    `retry_all` (slurm): also the runs the retry policy leaves (user errors, attempts used up).
    `decider` (adaptive seeds): what decides each round (orchestrator.results.adaptive).
    `slurm_jobs_gone` (local): train the runs of the sweep's SLURM jobs although no squeue here can say
    they ended (without it, such a submit is refused).
    """
    console = console or Console()
    chosen = launcher(spec, executor, console, profile, workers, slurm_jobs_gone)
    console.print(chosen.where(runs), markup=False, highlight=False, soft_wrap=True)
    if retry_all and hasattr(chosen, "retry_all"):
        chosen.retry_all = True
    if spec.seeds is not None:  # adaptive seeds: rounds, each decided when it has run; smoke: round 1's seeds
        from orchestrator.launch.rounds import check_options, submit_rounds

        check_options(force, smoke)
        if not smoke:
            if decider is None:
                raise SpecError(f"{spec.name}: adaptive seeds need a round decider (orchestrator.results.adaptive)")
            return submit_rounds(chosen, runs, decider, dry_run=dry_run, follow_s=follow_s)
        runs = smoke_seeds(spec, runs)
    if follow_s is None:
        return chosen.launch(runs, force=force, smoke=smoke, dry_run=dry_run)
    from orchestrator.launch.slurm import SlurmLauncher

    if not isinstance(chosen, SlurmLauncher) or force or smoke or dry_run:
        raise SpecError("--follow needs --executor slurm, without --force, --smoke or --dry-run")
    return chosen.follow(runs, follow_s)


__all__ = ["EXECUTORS", "Launcher", "Outcome", "Selection", "launcher", "select", "submit"]
