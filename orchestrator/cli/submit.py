"""`orchestrate submit`: the checks that can only run here (models on the meta device, the budget),
the sweep's lock, then the launcher; `--dry-run --json` shows what would run."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from orchestrator import textsafe
from orchestrator.cli import jsonflag
from orchestrator.cli.commands import console, emit, load_sweep
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec

CANCELLED = 3
"""The exit status of a submit that `orchestrate cancel` stopped (0 says the sweep ran its course)."""

if TYPE_CHECKING:
    from orchestrator.cli import jsonout
    from orchestrator.launch.rounds import RoundDecider


def cmd_submit(args: argparse.Namespace) -> int:
    """Run every planned run that is not complete yet, as the sweep's only submitter (a lock)."""
    if jsonflag.wanted(args):  # the checks' output goes to stderr, the object alone to stdout
        return emit(lambda: (_submit_json(args), 0))
    spec, runs = load_sweep(args, check_data=True)
    with _sweep_lock(spec, args), _sigterm_as_ctrl_c(args.executor):
        return _submit(spec, runs, args)


@contextmanager
def _sigterm_as_ctrl_c(executor: str) -> Iterator[None]:
    """A local submit ends on SIGTERM (`timeout`, `kill`, a session's end) as on Ctrl-C: its workers
    are stopped and it says so in a line (exit 130); by default it vanished without a word, exit 143."""
    if executor != "local" or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sweep_lock(spec: SweepSpec, args: argparse.Namespace) -> AbstractContextManager[object]:
    """The sweep folder's lock (launch/lock.py), held until submit returns (with --follow, until
    the queue is drained); none for --dry-run, which writes nothing."""
    from orchestrator import store
    from orchestrator.launch import lock

    return nullcontext() if args.dry_run else lock.hold(store.sweep_root(spec, args.smoke))


def _submit_checks(spec: SweepSpec, runs: list[RunSpec], args: argparse.Namespace) -> None:
    """Every model built on the meta device, and the budget: fail closed before anything runs."""
    from orchestrator.checks import models

    models.check_models(runs, args.spec)  # torch: every distinct model built once on the meta device
    if spec.budget is not None:
        from orchestrator.cli import profile

        frame = profile.check_budget(spec, runs, console, where=args.spec)
        over = int(frame["over_budget"].sum())
        if over and not args.over_budget:
            raise SpecError(f"{args.spec}: budget: {over} cell(s) over budget; fix them or pass --over-budget")
        if spec.budget.max_gpu_hours is not None and not args.smoke:
            _check_hours(spec, runs, spec.budget.max_gpu_hours, args.over_budget, args.spec)


def _submit_json(args: argparse.Namespace) -> jsonout.DryRunOut:
    """`submit --dry-run --json`: the same checks, then what would run (nothing is written or submitted)."""
    from orchestrator.cli import jsonout
    from orchestrator.sweep import site

    if not args.dry_run:
        raise SpecError("submit: --json needs --dry-run (a real submission prints its progress for people)")
    spec, runs = load_sweep(args, check_data=True)
    _submit_checks(spec, runs, args)
    profile = site.profile_file(args.profile, spec.source.parent if spec.source else None)
    return jsonout.dry_run_object(spec, runs, args.executor, force=args.force, smoke=args.smoke, profile=profile)


def _round_decider(spec: SweepSpec) -> RoundDecider | None:
    """results.adaptive for a sweep with adaptive seeds (imported only then: it loads the statistics)."""
    if spec.seeds is None:
        return None
    from orchestrator.results import adaptive

    return adaptive


def _submit(spec: SweepSpec, runs: list[RunSpec], args: argparse.Namespace) -> int:
    from orchestrator import launch
    from orchestrator.sweep import site

    _submit_checks(spec, runs, args)
    if getattr(args, "clear_quarantine", False) and not args.dry_run:
        _clear_quarantine(spec)
    outcome = launch.submit(
        spec,
        runs,
        args.executor,
        force=args.force,
        smoke=args.smoke,
        profile=site.profile_file(args.profile, spec.source.parent if spec.source else None),
        dry_run=args.dry_run,
        console=console,
        workers=args.workers,
        follow_s=args.interval if args.follow else None,
        retry_all=getattr(args, "retry_all", False),
        decider=_round_decider(spec),
        slurm_jobs_gone=args.slurm_jobs_gone,
    )
    return CANCELLED if outcome.cancelled else 1 if outcome.failed else 0


def _clear_quarantine(spec: SweepSpec) -> None:
    """submit --clear-quarantine: every node may run the sweep's jobs again."""
    from orchestrator import store
    from orchestrator.launch import quarantine

    root = store.sweep_root(spec)
    if not root.exists():
        return
    count = quarantine.clear(root)
    console.print(f"quarantine cleared ({count} node(s) had failures recorded)")


def _check_hours(spec: SweepSpec, runs: list[RunSpec], limit_h: float, override: bool, where: str) -> None:
    """budget.max_gpu_hours: the estimate of the whole sweep (measured or site-declared throughput), failing
    closed when a cell is unknown."""
    from orchestrator.results import cost

    costs = cost.estimate(spec, runs)
    console.print(textsafe.terminal(cost.summary(costs)), markup=False)
    _, problem = cost.hours_verdict(costs, limit_h)
    if problem is None:
        return
    if not override:
        raise SpecError(f"{where}: budget.max_gpu_hours: {problem}; or pass --over-budget")
    console.print(f"[yellow]over budget (--over-budget)[/]: {textsafe.rich(problem)}")
