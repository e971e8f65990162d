"""Adaptive seeds on any launcher: run a round, decide, run the next, until every delta has stopped.

Local launchers run a round to the end before returning, and so does SLURM with `--follow`: the
loop decides (a RoundDecider: orchestrator/results/adaptive.py, which `orchestrate submit` passes
in; recorded in adaptive.json) and submits the next round. SLURM without `--follow` submits the
current round and returns; the next `submit` decides it once its runs have finished, and submits
the round after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from orchestrator import store
from orchestrator.launch.base import Launcher, Outcome
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec


class RoundDecider(Protocol):
    """What decides the rounds (results.adaptive): launch runs rounds, it never reads their numbers."""

    def advance(self, spec: SweepSpec, runs: list[RunSpec], root: Path) -> dict[str, Any] | None:
        """Decide the current round once its runs finished and record it; None while runs are to finish."""

    def scheduled(self, spec: SweepSpec, runs: list[RunSpec], root: Path) -> list[RunSpec]:
        """The runs scheduled so far, in plan order."""


def submit_rounds(
    chosen: Launcher, runs: list[RunSpec], decider: RoundDecider, *, dry_run: bool, follow_s: float | None
) -> Outcome:
    """Rounds of an adaptive-seeds sweep on `chosen`, decided by `decider`; the outcome of every round launched."""
    from orchestrator.launch.slurm import SlurmLauncher

    spec, console = chosen.spec, chosen.console
    root = store.sweep_root(spec)
    slurm = isinstance(chosen, SlurmLauncher)
    total = Outcome()
    launched = False
    while True:
        record = None if dry_run else decider.advance(spec, runs, root)  # a dry run decides nothing
        if record is not None:
            print_round(record, console)
            if record["finished"]:
                break
        elif launched:  # a round ran to the end and still is not decidable: never loop on it
            console.print(
                f"[yellow]{spec.name}[/]: the round's runs have not all finished, or a baseline cell has no finished "
                "run yet (its failed runs run again); see `orchestrate status`, submit again later"
            )
            break
        todo = decider.scheduled(spec, runs, root)
        if slurm and follow_s is not None:
            outcome = chosen.follow(todo, follow_s)  # type: ignore[attr-defined]
        else:
            outcome = chosen.launch(todo, dry_run=dry_run)
        _merge(total, outcome)
        launched = True
        if dry_run or (slurm and follow_s is None):
            break
    return total


def check_options(force: bool, smoke: bool) -> None:
    """--force would redo finished rounds under decisions already made: refused (fail closed)."""
    if force and not smoke:
        raise SpecError(
            "--force with adaptive seeds: move the sweep's adaptive.json and runs/ aside to start the rounds again"
        )


def print_round(record: dict[str, object], console: Console) -> None:
    """`round 2 (5 seeds): 2 resolved, 1 stopped at max, 3 open; next: 24 runs scheduled`."""
    verdicts = record.get("verdicts")
    states = [v.get("state") for v in verdicts.values()] if isinstance(verdicts, dict) else []
    schedule = record.get("schedule")
    total = sum(schedule.values()) if isinstance(schedule, dict) else 0
    parts = [f"{states.count('resolved')} resolved", f"{states.count('max')} stopped at max"]
    parts.append(f"{states.count('open')} open")
    tail = "every delta has stopped" if record.get("finished") else f"next: {total} runs scheduled in all"
    console.print(f"adaptive round {record.get('round')} ({record.get('look')} seeds): {', '.join(parts)}; {tail}")


def _merge(total: Outcome, outcome: Outcome) -> None:
    total.completed.extend(outcome.completed)
    total.failed.extend(outcome.failed)
    total.submitted.update(outcome.submitted)
    total.held = outcome.held
