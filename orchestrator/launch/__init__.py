"""Launching: which runs still need doing, and handing them to a local worker or to SLURM job arrays;
the SLURM command wrappers, the submitted job, and sweep status."""

from __future__ import annotations

from rich.console import Console

from orchestrator.launch.base import Launcher, Outcome, Selection, select
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec

EXECUTORS = ("local", "debug", "slurm")


def launcher(spec: SweepSpec, executor: str, console: Console, profile: str | None = None) -> Launcher:
    """The Launcher of an executor: local (one process per run), debug (in this process) or slurm."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if executor == "slurm":
        from orchestrator.launch.slurm import SlurmLauncher

        return SlurmLauncher(spec, console, profile)
    from orchestrator.launch.local import LocalLauncher

    return LocalLauncher(spec, console, debug=executor == "debug")


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
    """Launch what is not done yet: which runs completed and failed (local), or were submitted (slurm)."""
    chosen = launcher(spec, executor, console or Console(), profile)
    return chosen.launch(runs, force=force, smoke=smoke, dry_run=dry_run)


__all__ = ["EXECUTORS", "Launcher", "Outcome", "Selection", "launcher", "select", "submit"]
