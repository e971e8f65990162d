"""Adaptive seeds on any launcher: run a round, decide, run the next, until every delta has stopped.

Local launchers run a round to the end before returning, and so does SLURM with `--follow`: the
loop decides (a RoundDecider: orchestrator/results/adaptive.py, which `orchestrate submit` passes
in; recorded in adaptive.json) and submits the next round. SLURM without `--follow` submits the
current round and returns; the next `submit` decides it once its runs have finished, and submits
the round after.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from orchestrator import store
from orchestrator.launch import judge, quarantine, retries
from orchestrator.launch.base import Launcher, Outcome
from orchestrator.store.run_states import RunRecord
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec


class RoundDecider(Protocol):
    """What decides the rounds (results.adaptive): launch runs rounds, it never reads their numbers."""

    def advance(
        self,
        spec: SweepSpec,
        runs: list[RunSpec],
        root: Path,
        settled: Callable[[list[RunRecord]], set[str]] | None = None,
    ) -> dict[str, Any] | None:
        """Decide the current round once its runs finished and record it; None while runs are to finish.
        `settled`: of the failed runs given, those the retry policy will not run again."""

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
    outcome: Outcome | None = None  # the last round's launch in this call
    while True:
        record = (
            None if dry_run else decider.advance(spec, runs, root, gave_up(chosen, root))
        )  # a dry run decides nothing
        if record is not None:
            print_round(record, console)
            if record["finished"]:
                break
        if outcome is not None and (record is None or not _ran(outcome)):
            # a round ran to the end and still is not decidable, or ran nothing new: never loop on it
            console.print(
                f"[yellow]{spec.name}[/]: {_why_stopped(record)}; see `orchestrate status`, submit again later"
            )
            break
        todo = decider.scheduled(spec, runs, root)
        if slurm and follow_s is not None:
            outcome = chosen.follow(todo, follow_s)  # type: ignore[attr-defined]
        else:
            outcome = chosen.launch(todo, dry_run=dry_run)
        _merge(total, outcome)
        if dry_run or (slurm and follow_s is None):
            break
    return total


def _ran(outcome: Outcome) -> bool:
    """Whether a launch ran or submitted anything (a round whose runs are all done or left by the retry
    policy runs nothing: deciding it again changes nothing)."""
    return bool(outcome.completed or outcome.failed or outcome.submitted or outcome.held)


def _why_stopped(record: dict[str, Any] | None) -> str:
    """Why the rounds stop before every delta has: the one line `submit` prints."""
    if record is None:
        return (
            "the round's runs have not all finished, or a baseline cell has no finished run yet "
            "(its failed runs run again under the retry policy)"
        )
    return "rows with no seed finished for them and their baseline wait for their failed runs, and none ran again"


def gave_up(chosen: Launcher, root: Path) -> Callable[[list[RunRecord]], set[str]]:
    """Of the failed runs given, those the retry policy will not run again (judge.decide, as the SLURM
    launcher decides; locally the same policy from status.json): a row whose every run is so stops as
    'failed' instead of waiting for them. `submit --retry-all` gives none up."""

    def settled(records: list[RunRecord]) -> set[str]:
        if getattr(chosen, "retry_all", False) or not records:
            return set()
        policy = getattr(chosen, "policy", None) or retries.policy_for(chosen.spec)
        config = getattr(chosen, "config", chosen.spec.slurm)
        plans = judge.failed_before(records, root)
        wide = quarantine.sweep_wide_keys(root)
        fresh = bool(getattr(chosen, "fresh", False))
        out = set()
        for record in records:
            judged = plans.get(record.run.run_id)
            if judged is not None and judged.unrecorded:
                continue  # its end is not recorded yet: judged again later, not given up
            if not judge.decide(policy, judged, record, config, None, wide, fresh=fresh).retry:
                out.add(record.run.run_id)
        return out

    return settled


def check_options(force: bool, smoke: bool) -> None:
    """--force would redo finished rounds under decisions already made: refused (fail closed)."""
    if force and not smoke:
        raise SpecError(
            "--force with adaptive seeds: move the sweep's adaptive.json and runs/ aside to start the rounds again"
        )


def print_round(record: dict[str, object], console: Console) -> None:
    """`round 2 (5 seeds): 2 resolved, 1 stopped at max, 1 futile, 3 open; next: 24 runs scheduled`."""
    verdicts = record.get("verdicts")
    shown = [v for v in verdicts.values() if isinstance(v, dict)] if isinstance(verdicts, dict) else []
    states = [v.get("state") for v in shown]
    schedule = record.get("schedule")
    total = sum(schedule.values()) if isinstance(schedule, dict) else 0
    parts = [f"{states.count('resolved')} resolved", f"{states.count('max')} stopped at max"]
    parts += [f"{states.count('futile')} futile"] if "futile" in states else []
    parts += [f"{states.count('failed')} failed (no finished run)"] if "failed" in states else []
    waiting = sum(1 for v in shown if v.get("state") == "open" and v.get("n") == 0)  # no pair yet: no seeds added
    parts.append(f"{states.count('open') - waiting} open")
    parts += [f"{waiting} waiting for failed runs"] if waiting else []
    tail = "every delta has stopped" if record.get("finished") else f"next: {total} runs scheduled in all"
    console.print(f"adaptive round {record.get('round')} ({record.get('look')} seeds): {', '.join(parts)}; {tail}")


def _merge(total: Outcome, outcome: Outcome) -> None:
    total.completed.extend(outcome.completed)
    total.failed.extend(outcome.failed)
    total.submitted.update(outcome.submitted)
    total.held = outcome.held
    total.cancelled = total.cancelled or outcome.cancelled
