"""One small function per command: load the spec, call the stage that does the work, print.

Only the other command modules (submit.py) import it; the work lives in orchestrator.sweep, .launch, .results.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import textsafe
from orchestrator.cli import jsonflag, terminal
from orchestrator.cli.views import PLAN_ROWS_SHOWN, axis_value, status_view
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec, plan, smoke_plan, smoke_seeds
from orchestrator.sweep.spec import SweepSpec, load_spec

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.cli import jsonout, jsonout_plan, power
    from orchestrator.launch.unconfirmed import Cancelled

# Start-up time: the modules a command alone needs (preflight, site, jsonout's models, pandas
# through results/) are imported inside it, so `status` does not pay for `plan`'s checks.
# Markup is on for our own `[green]` labels: every user- or file-derived string goes through
# textsafe.rich (markup escaped, terminal sequences removed) or is printed with markup=False.
console = terminal.make_console()


def emit(build: Callable[[], tuple[Any, int]]) -> int:
    """`--json`: jsonout.emit, its output models imported only now."""
    from orchestrator.cli import jsonout

    return jsonout.emit(build)


def load_sweep(args: argparse.Namespace, check_data: bool = False) -> tuple[SweepSpec, list[RunSpec]]:
    spec = load_spec(args.spec, args.overrides, max_runs=args.max_runs)
    return spec, _planned(spec, args, check_data)


def _planned(spec: SweepSpec, args: argparse.Namespace, check_data: bool) -> list[RunSpec]:
    """The spec's runs; with `check_data`, preflight and the tables checked."""
    runs = plan(spec)
    if check_data:
        from orchestrator.checks import preflight
        from orchestrator.store import placement

        # Paths alone, so also under --skip-data-check: outputs inside a dataset become its images.
        placement.check_sweep_output(spec.output_path, runs, args.spec)
        preflight.check(spec, runs, args.spec, data=not args.skip_data_check)
        _check_tables(spec, runs, args.spec)
    return runs


def _check_tables(spec: SweepSpec, runs: list[RunSpec], where: str) -> None:
    """Table definitions (rows, columns, group, split) are checked now, not after the training."""
    from orchestrator.results.tables import resolve_layout

    for table in spec.tables:
        resolve_layout(table, spec, f"{where}: tables.{table.name}")


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the grid: axes, counts per ablation row, and the runs."""
    if jsonflag.wanted(args):
        return emit(lambda: (_plan_json(args), 0))
    spec, runs, source = _load_plan(args)
    _print_plan(spec, runs, args)
    _plan_checks(spec, runs, args, source)
    return 0


def _load_plan(args: argparse.Namespace) -> tuple[SweepSpec, list[RunSpec], power.Source | None]:
    """The spec, its checked plan and the `--variance-from` sweep: the flag (a usage error without --detect
    or adaptive seeds) and its folder are checked first, before the plan is made or printed."""
    spec = load_spec(args.spec, args.overrides, max_runs=args.max_runs)
    source = None
    if args.variance_from is not None:
        from orchestrator.cli import power

        source = power.variance_source(args.variance_from, args.detect, spec)
    return spec, _planned(spec, args, check_data=True), source


def _plan_json(args: argparse.Namespace) -> jsonout_plan.PlanOut:
    """`plan --json`: the checks print to stderr (emit redirects stdout), then the object with the budget's
    verdict (the lines alone left a script to parse stderr to learn a sweep was over its budget)."""
    from orchestrator.checks import preflight
    from orchestrator.cli import jsonout_plan
    from orchestrator.results import cost

    spec, runs, source = _load_plan(args)
    frame = _plan_checks(spec, runs, args, source)
    costs = cost.estimate(spec, runs)
    budget = None if spec.budget is None else jsonout_plan.budget_object(spec, frame, costs)
    return jsonout_plan.plan_object(spec, runs, preflight.warnings(spec, args.spec), costs, budget)


def _print_plan(spec: SweepSpec, runs: list[RunSpec], args: argparse.Namespace) -> None:
    """The plan for people: axes, rows, the first runs, the cost estimate."""
    from orchestrator.checks import preflight

    console.print(f"[bold]{spec.name}[/]: {len(runs)} runs -> {textsafe.rich(spec.output_path)}")
    for line in preflight.warnings(spec, args.spec):
        console.print(textsafe.terminal(f"warning: {line}"), style="yellow", markup=False, soft_wrap=True)
    for axis, values in spec.grid.items():
        labels = [axis_value(value) for value in values]
        console.print(textsafe.terminal(f"  {axis} ({len(values)}): {', '.join(labels)}"), markup=False)
    rows = Counter(run.ablation for run in runs)
    console.print(f"  ablations ({len(rows)}): " + "; ".join(f"{textsafe.rich(name)} x{n}" for name, n in rows.items()))
    shown = runs if args.all else runs[:PLAN_ROWS_SHOWN]
    table = terminal.table("#", "run_id", "ablation")
    table.add_column("name", overflow="fold")
    for index, run in enumerate(shown):
        table.add_row(str(index), run.run_id, textsafe.rich(run.ablation), textsafe.rich(run.name))
    console.print(table)
    if len(shown) < len(runs):
        console.print(f"... {len(runs) - len(shown)} more (--all lists them)")
    _print_cost(spec, runs)


def _plan_checks(
    spec: SweepSpec, runs: list[RunSpec], args: argparse.Namespace, source: power.Source | None
) -> pd.DataFrame | None:
    """Adaptive seeds, `--detect` (with the `--variance-from` sweep, checked by _load_plan) and the budget:
    printed after the plan; a budget that fails raises. The budget's profile frame (None without a budget)."""
    if spec.seeds is not None or args.detect is not None:
        from orchestrator.cli import power

        if spec.seeds is not None:
            power.print_adaptive(spec, runs, console, source)
        if args.detect is not None:
            power.print_detect(spec, runs, args.detect, console, source)
    if spec.budget is not None:
        from orchestrator.cli import profile  # torch only when the spec has a budget to check

        return profile.check_budget(spec, runs, console, where=args.spec)
    return None


def _print_cost(spec: SweepSpec, runs: list[RunSpec]) -> None:
    """Estimated device-hours per cell (from smoke measurements or the site's declared throughput), and the total."""
    from orchestrator.results import cost

    costs = cost.estimate(spec, runs)
    if any(c.source is not None for c in costs):
        table = terminal.table("cell", "runs", "images/s", "source", "estimate")
        for item in costs:
            hours = "unknown" if item.hours is None else f"{cost.hours_text(item.hours)} {item.unit}"
            speed = "-" if item.images_per_s is None else f"{item.images_per_s:.0f}"
            device = f" ({item.note})" if item.source == cost.SITE and item.hours is not None else ""
            source = (item.source or "-") + device
            table.add_row(textsafe.rich(item.cell), str(item.runs), speed, textsafe.rich(source), hours)
        console.print(table)
    for note, n in Counter(c.note for c in costs if c.hours is None).items():
        console.print(textsafe.terminal(f"  unknown ({n} cell{'s' if n != 1 else ''}): {note}"), markup=False)
    console.print(textsafe.terminal(cost.summary(costs)), markup=False)


def cmd_status(args: argparse.Namespace) -> int:
    """Counts and a table of unfinished or failed runs, from run folders and SLURM."""
    import time

    from rich.live import Live

    from orchestrator.launch import retries, status

    if jsonflag.wanted(args):
        return emit(lambda: _status_json(args))
    spec, root, current = _status(args)
    runs = [row.run for row in current.runs]
    name = spec.name + (" (smoke)" if args.smoke else "")
    if not args.watch:
        console.print(status_view(name, current, args.all))
        _print_problems(current.problems, "runs whose status is unreadable or unknown")
        return _status_code(current)
    with Live(status_view(name, current, args.all), console=console, auto_refresh=False) as live:
        while not current.finished:
            time.sleep(args.interval)  # a refresh period for a human, not synchronisation
            current = status.sweep_status(runs, root, retries.policy_for(spec).quarantine_after)
            live.update(status_view(name, current, args.all), refresh=True)
    return _status_code(current)


def _status_code(current: Any) -> int:
    """1 when squeue could not be asked (as a failed SLURM command exits: the runs' states are shown,
    but pending or running in the queue is unknown), else 0; unreadable run files are listed, not fatal."""
    return 1 if current.queue_unknown else 0


def _status_json(args: argparse.Namespace) -> tuple[jsonout.StatusOut, int]:
    from orchestrator.cli import jsonout

    spec, root, current = _status(args)
    return jsonout.status_object(spec, root, current), _status_code(current)


def _status(args: argparse.Namespace) -> tuple[SweepSpec, Path, Any]:
    """The sweep, its output folder and the state of every run scheduled so far."""
    from orchestrator import store
    from orchestrator.launch import retries, status
    from orchestrator.results import adaptive

    spec, runs = load_sweep(args)
    root = store.sweep_root(spec, smoke=args.smoke)
    # What `submit --smoke` ran (smoke variants; adaptive seeds: of the first round's seeds), else the
    # runs scheduled so far (adaptive seeds: the rounds').
    runs = smoke_plan(smoke_seeds(spec, runs)) if args.smoke else adaptive.scheduled(spec, runs, root)
    return spec, root, status.sweep_status(runs, root, retries.policy_for(spec).quarantine_after)


def cmd_cancel(args: argparse.Namespace) -> int:
    """Ask a running `submit --follow` of the sweep to stop, then scancel the sweep's arrays that still have
    pending or running tasks, and by job name the arrays sbatch did not confirm (then forgotten, so that no
    later submit adopts them); say whether a submit holds the sweep's lock."""
    from orchestrator import store
    from orchestrator.launch import cancels
    from orchestrator.launch import slurmcli as slurm
    from orchestrator.launch.slurm import runs_in_slurm

    spec, _ = load_sweep(args)
    if not slurm.available():
        raise SpecError("cancel: sbatch/squeue not found (not on a SLURM login node)")
    root = store.sweep_root(spec, smoke=args.smoke)
    cancels.request(root)  # first: a submit beside us sees it before its next sbatch, a follow at its next poll
    done = cancels.stop(root, runs_in_slurm(root)[1])
    what = spec.name + (" (smoke)" if args.smoke else "")
    console.print(f"{what}: cancelled {done.jobs} pending/running jobs in {len(done.arrays)} array(s)")
    _print_unconfirmed(what, done.unconfirmed)
    console.print(textsafe.terminal(f"{what}: {cancels.beside(root)}"), markup=False, soft_wrap=True)
    return 0


def _print_unconfirmed(what: str, done: Cancelled) -> None:
    """What cancel did to the arrays sbatch did not confirm (nothing printed when there were none)."""
    if not done.names:
        return
    names = ", ".join(done.names)
    console.print(
        textsafe.terminal(
            f"{what}: cancelled unconfirmed array(s) {names} ({done.runs} runs) by job name (`scancel --name`); "
            + (
                f"kept in the manifest while {done.kept}: a `submit --follow` forgets them at its next poll and "
                "stops; a plain submit's next submit settles them (no live job: forgotten)"
                if done.kept
                else "forgotten: a later submit submits their runs again and adopts no cancelled job"
            )
        ),
        markup=False,
        soft_wrap=True,
    )


def cmd_collect(args: argparse.Namespace) -> int:
    """Collect one sweep (file or folder) or every sweep under results/.

    Broken run folders never stop it: they are listed as problems and left out of the numbers.
    Exits 1 when no run of a sweep has a usable value, saying why; a sweep with no completed run
    at all gets one line and no files.
    """
    from orchestrator.results import collect

    if args.target is None:
        targets = collect.sweeps_under(Path("results"), args.max_runs)
        if not targets:
            raise SpecError("results/: no sweep output found (submit a sweep first)")
    else:
        targets = collect.resolve_target(Path(args.target), args.overrides, args.max_runs)
    if jsonflag.wanted(args):
        return emit(lambda: _collect_json(targets, args))
    code = 0
    for spec, root in targets:
        try:
            written = collect.write_tables(spec, root, smoke=args.smoke, report=not args.no_report)
        except collect.NothingFinished as exc:
            console.print(textsafe.terminal(exc), style="yellow", markup=False, soft_wrap=True)
            code = 1
            continue
        code = max(code, _print_collected(spec, written))
    return code


def _collect_json(targets: list[tuple[SweepSpec, Path]], args: argparse.Namespace) -> tuple[jsonout.CollectOut, int]:
    """`collect --json`: one entry per sweep; exit 1 when a sweep has nothing usable, as without --json."""
    from orchestrator.cli import jsonout
    from orchestrator.results import collect

    entries = []
    for spec, root in targets:
        try:
            written = collect.write_tables(spec, root, smoke=args.smoke, report=not args.no_report)
        except collect.NothingFinished as exc:
            entries.append(jsonout.collect_nothing(spec, root, str(exc)))
            continue
        error = None if written.usable else f"{spec.name}: nothing usable to tabulate"
        entries.append(jsonout.collect_written(spec, root, written, error))
    return jsonout.CollectOut(sweeps=entries), int(any(entry.error for entry in entries))


def _print_collected(spec: SweepSpec, written: Any) -> int:
    """One collected sweep for people: its tables in Markdown, the files written, the problems; 1 when
    nothing was usable."""
    print(textsafe.terminal(written.markdown, newlines=True))  # plain: rich would re-wrap the Markdown table
    console.print(f"[green]tables:[/] {', '.join(textsafe.rich(p) for p in written.files)}")
    console.print(f"[green]runs:[/]   {textsafe.rich(written.runs_path)}")
    for line in written.usage_lines:
        console.print(textsafe.terminal(line), markup=False, soft_wrap=True)
    if written.usage_path is not None:
        console.print(f"[green]usage:[/]  {textsafe.rich(written.usage_path)}")
    if written.report_path is not None:
        console.print(f"[green]report:[/] {textsafe.rich(written.report_path)}")
    _print_problems(list(written.problems))
    if written.usable == 0:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(written.counts.items())) or "no runs"
        console.print(
            f"[red]error:[/] {spec.name}: nothing usable to tabulate ({textsafe.rich(counts)}, "
            f"{len(written.problems)} problems)"
        )
        return 1
    return 0


def _print_problems(problems: list[Any], heading: str = "left out of the numbers") -> None:
    """The problems section: one line per broken run or value (run id, name, reason)."""
    if not problems:
        return
    console.print(f"[yellow]problems ({len(problems)}), {heading}:[/]")
    for problem in problems:
        console.print(textsafe.terminal(f"  {problem}"), markup=False, soft_wrap=True)


def cmd_profile(args: argparse.Namespace) -> int:
    """GFLOPs and params of every (backbone, dataset, ablation) cell (backbone names checked first, as `plan`
    checks them); checks the spec's budget."""
    from orchestrator.cli import profile

    if jsonflag.wanted(args):
        return emit(lambda: (profile.profile_json(*load_sweep(args), console, args.spec), 0))
    spec, runs = load_sweep(args)
    profile.run_profile(spec, runs, console, args.spec)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Metrics of a run's tested model (or --checkpoint) on a labelled dataset, into RUN_DIR/eval/<name>/."""
    from orchestrator.cli import modes as modes_cmd

    return modes_cmd.run_eval(args.run_dir, args.dataset, args.split, args.name, console, args.checkpoint)


def cmd_predict(args: argparse.Namespace) -> int:
    """Predictions of a run's tested model (or --checkpoint) for a folder of images, as a .tsv."""
    from orchestrator.cli import modes as modes_cmd

    return modes_cmd.run_predict(args.run_dir, args.images_dir, args.out, args.threshold, console, args.checkpoint)


def cmd_datasets(args: argparse.Namespace) -> int:
    """`datasets list`, or `datasets describe DATASET`: counts, imbalance, file sizes, bar chart."""
    from orchestrator.cli import datasets as datasets_cmd

    if args.action == "list":
        return datasets_cmd.run_list(console, jsonflag.wanted(args))
    if not args.dataset:
        raise SpecError("datasets describe: name a dataset, e.g. `orchestrate datasets describe digits`")
    return datasets_cmd.run_describe(
        args.dataset, args.fields, args.root, args.site, args.out, console, jsonflag.wanted(args)
    )


def cmd_examples(args: argparse.Namespace) -> int:
    """Print the shipped example files, or copy them into `dest` (never overwriting)."""
    from orchestrator import examples

    if args.dest is None:
        for name in examples.FILES:
            console.print(str(examples.path(name)), markup=False)
        return 0
    try:
        copied = examples.copy_to(Path(args.dest).expanduser())
    except OSError as exc:  # FileExistsError from copy_to's checks; a folder it cannot make
        raise SpecError(str(exc) if isinstance(exc, FileExistsError) else f"{args.dest}: {exc.strerror}") from None
    for target in copied:
        console.print(f"wrote {textsafe.terminal(target)}", markup=False)
    return 0
