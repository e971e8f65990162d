"""`orchestrate`: the command line. argparse keeps `--help` fast (no torch, no pandas at import)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from orchestrator.plan import RunSpec, plan
from orchestrator.spec import SpecError, SweepSpec, load_spec

console = Console(highlight=False)
PLAN_ROWS_SHOWN = 40


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `orchestrate` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SpecError as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished runs are kept; submit again to continue")
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrate", description="Image-classification ablation sweeps: plan, submit, collect."
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("plan", help="show the runs a sweep expands to")
    _spec_args(p)
    p.add_argument("--all", action="store_true", help="list every run, however many")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("submit", help="run what is not done yet")
    _spec_args(p)
    p.add_argument("--executor", choices=("local", "debug"), default="local", help="where runs execute")
    p.add_argument("--force", action="store_true", help="redo every run (old run folders are archived)")
    p.add_argument("--smoke", action="store_true", help="a few batches per cell into <output>/smoke/")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="state of every run of a sweep")
    _spec_args(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("collect", help="results -> runs.csv and ablation tables")
    p.add_argument("target", nargs="?", help="sweep file or output folder (default: every sweep under results/)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides (with a sweep file)")
    p.add_argument("--smoke", action="store_true", help="collect the smoke runs instead")
    p.set_defaults(func=cmd_collect)
    return parser


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="sweep YAML file")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. defaults.epochs=1 grid.seed=[0]")


def _load(args: argparse.Namespace) -> tuple[SweepSpec, list[RunSpec]]:
    spec = load_spec(args.spec, args.overrides)
    return spec, plan(spec)


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the grid: axes, counts per ablation row, and the runs."""
    spec, runs = _load(args)
    console.print(f"[bold]{spec.name}[/]: {len(runs)} runs -> {spec.output_path}")
    for axis, values in spec.grid.items():
        console.print(f"  {axis} ({len(values)}): {', '.join(map(str, values))}")
    rows = Counter(run.ablation for run in runs)
    console.print(f"  ablations ({len(rows)}): " + "; ".join(f"{name} x{n}" for name, n in rows.items()))
    shown = runs if args.all else runs[:PLAN_ROWS_SHOWN]
    table = RichTable("#", "run_id", "ablation")
    table.add_column("name", overflow="fold")
    for index, run in enumerate(shown):
        table.add_row(str(index), run.run_id, run.ablation, run.name)
    console.print(table)
    if len(shown) < len(runs):
        console.print(f"... {len(runs) - len(shown)} more (--all lists them)")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    """Run every planned run that is not complete yet."""
    from orchestrator import launch

    spec, runs = _load(args)
    outcome = launch.submit(spec, runs, args.executor, force=args.force, smoke=args.smoke, console=console)
    return 1 if outcome.failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    """Counts and a table of run states, from the run folders."""
    from orchestrator import store

    spec, runs = _load(args)
    records = store.inspect(runs, store.sweep_root(spec))
    counts = Counter(record.state.value for record in records)
    console.print(f"[bold]{spec.name}[/]: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    table = RichTable("run_id", "name", "state", "error")
    for record in records:
        table.add_row(record.run.run_id, record.run.name, record.state.value, record.status.get("error", ""))
    console.print(table)
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    """Collect one sweep (file or folder) or every sweep under results/."""
    from orchestrator import collect

    if args.target is None:
        targets = collect.sweeps_under(Path("results"))
        if not targets:
            raise SpecError("results/: no sweep output found (submit a sweep first)")
    else:
        targets = collect.resolve_target(Path(args.target), args.overrides)
    for spec, root in targets:
        written = collect.write_tables(spec, root, smoke=args.smoke)
        console.print(written.markdown, markup=False)
        console.print(f"[green]tables:[/] {written.table_path}\n[green]runs:[/]   {written.runs_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
