"""`orchestrate`: the command line. argparse keeps `--help` fast (no torch, no pandas at import)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from orchestrator.plan import RunSpec, plan
from orchestrator.spec import SpecError, SweepSpec, load_spec

console = Console(highlight=False)
PLAN_ROWS_SHOWN = 40


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `orchestrate` console script."""
    parser = _parser()
    # Overrides may come after options too (`submit x.yaml --dry-run k=v`), as Hydra users type them.
    args, extra = parser.parse_known_args(argv)
    unknown = [item for item in extra if "=" not in item or item.startswith("-")]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        return int(args.func(args))
    except SpecError as exc:
        _error(str(exc))
        return 2
    except RuntimeError as exc:  # SlurmError and submitit's submission failures
        _error(f"{type(exc).__name__}: {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished runs are kept; submit again to continue")
        return 130


def _error(message: str) -> None:
    """One line on stderr; markup off so `[1]` in a field path is printed as is."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"error: {message}", markup=False)


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
    p.add_argument(
        "--executor",
        choices=("local", "debug", "slurm"),
        default="local",
        help="local: one process per run on this machine; debug: in this process; slurm: job arrays",
    )
    p.add_argument("--profile", help="cluster profile: slurm/profiles/NAME.yaml or a path (slurm executor)")
    p.add_argument("--dry-run", action="store_true", help="print what would be submitted, submit nothing")
    p.add_argument("--force", action="store_true", help="redo every run (old run folders are archived)")
    p.add_argument("--smoke", action="store_true", help="a few batches per cell into <output>/smoke/")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="state of every run of a sweep")
    _spec_args(p)
    p.add_argument("--watch", action="store_true", help="refresh until no run is pending or running")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between refreshes with --watch")
    p.add_argument("--all", action="store_true", help="list every run, not only unfinished ones")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("cancel", help="cancel the sweep's SLURM jobs that are still pending or running")
    _spec_args(p)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("collect", help="results -> runs.csv and ablation tables")
    p.add_argument("target", nargs="?", help="sweep file or output folder (default: every sweep under results/)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides (with a sweep file)")
    p.add_argument("--smoke", action="store_true", help="collect the smoke runs instead")
    p.add_argument("--no-report", action="store_true", help="tables only, no report/index.html (plots)")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("profile", help="GFLOPs and params of every cell's model (meta device, no data)")
    _spec_args(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("eval", help="score a finished run's best checkpoint on a labelled dataset")
    p.add_argument("run_dir", help="the run's folder (results/<sweep>/runs/<run_id>)")
    p.add_argument(
        "--dataset", help="dataset name or YAML mapping, e.g. '{name: imagefolder, root: DIR}' (default: the run's)"
    )
    p.add_argument("--split", choices=("test", "val", "train"), default="test", help="split to score (default test)")
    p.add_argument("--name", help="output folder name under RUN_DIR/eval/ (default: <dataset>-<split>)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="label unlabelled images with a finished run's best checkpoint (.tsv)")
    p.add_argument("run_dir", help="the run's folder")
    p.add_argument("images_dir", help="folder of images (searched recursively)")
    p.add_argument("--out", help="TSV file to write (default: RUN_DIR/predictions/<folder name>.tsv)")
    p.add_argument("--threshold", type=float, help="multilabel decision threshold (default: the run's)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("datasets", help="registered datasets; describe one (class counts, imbalance, file sizes)")
    p.add_argument("action", choices=("list", "describe"))
    p.add_argument("dataset", nargs="?", help="name, YAML mapping, site:NAME, or a sweep file (all its datasets)")
    p.add_argument("fields", nargs="*", help="dataset fields as key=value, e.g. task=hierarchical val_fraction=0.2")
    p.add_argument("--root", help="dataset root folder")
    p.add_argument("--site", help="site file for site:NAME (default $ORCHESTRATE_SITE)")
    p.add_argument("--out", help="output folder (default results/datasets/<dataset>)")
    p.set_defaults(func=cmd_datasets)
    return parser


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="sweep YAML file")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. defaults.epochs=1 grid.seed=[0]")
    p.add_argument("--skip-data-check", action="store_true", help="plan/submit: do not check dataset files here")


def _load(args: argparse.Namespace, check_data: bool = False) -> tuple[SweepSpec, list[RunSpec]]:
    spec = load_spec(args.spec, args.overrides)
    runs = plan(spec)
    if check_data and not args.skip_data_check:
        from orchestrator.datasets_cmd import check_datasets  # roots, annotation files, listed images

        check_datasets(spec, runs, args.spec)
    return spec, runs


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the grid: axes, counts per ablation row, and the runs."""
    spec, runs = _load(args, check_data=True)
    console.print(f"[bold]{spec.name}[/]: {len(runs)} runs -> {spec.output_path}")
    for axis, values in spec.grid.items():
        labels = [_axis_value(value) for value in values]
        console.print(f"  {axis} ({len(values)}): {', '.join(labels)}", markup=False)
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
    if spec.budget is not None:
        from orchestrator import profile_cmd  # torch only when the spec has a budget to check

        profile_cmd.check_budget(spec, runs, console)
    return 0


def _axis_value(value: Any) -> str:
    """A grid value as the plan shows it: datasets by their label or name, not their whole mapping."""
    if isinstance(value, dict) and "name" in value:
        return str(value.get("label") or value["name"])
    return str(value)


def cmd_submit(args: argparse.Namespace) -> int:
    """Run every planned run that is not complete yet."""
    from orchestrator import launch

    spec, runs = _load(args, check_data=True)
    outcome = launch.submit(
        spec,
        runs,
        args.executor,
        force=args.force,
        smoke=args.smoke,
        profile=args.profile,
        dry_run=args.dry_run,
        console=console,
    )
    return 1 if outcome.failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    """Counts and a table of unfinished or failed runs, from run folders and SLURM."""
    import time

    from rich.live import Live

    from orchestrator import status, store

    spec, runs = _load(args)
    root = store.sweep_root(spec)
    current = status.sweep_status(runs, root)
    if not args.watch:
        console.print(_status_view(spec.name, current, args.all))
        return 0
    with Live(_status_view(spec.name, current, args.all), console=console, auto_refresh=False) as live:
        while not current.finished:
            time.sleep(args.interval)  # a refresh period for a human, not synchronisation
            current = status.sweep_status(runs, root)
            live.update(_status_view(spec.name, current, args.all), refresh=True)
    return 0


def _status_view(name: str, current: Any, show_all: bool) -> Any:
    from rich.console import Group

    counts = ", ".join(f"{n} {state}" for state, n in sorted(current.counts.items()))
    parts: list[Any] = [f"[bold]{name}[/]: {len(current.runs)} runs: {counts}"]
    if current.warning:
        parts.append(f"[yellow]warning:[/] {current.warning}")
    shown = [r for r in current.runs if show_all or r.state != "completed"]
    table = RichTable("run_id", "state", "job", "name")
    table.add_column("error / log", overflow="fold")
    for row in shown[: None if show_all else PLAN_ROWS_SHOWN]:
        table.add_row(row.run.run_id, row.state, row.job_id or "", row.run.name, row.detail)
    if shown:
        parts.append(table)
    if not show_all and len(shown) > PLAN_ROWS_SHOWN:
        parts.append(f"... {len(shown) - PLAN_ROWS_SHOWN} more (--all lists every run)")
    return Group(*parts)


def cmd_cancel(args: argparse.Namespace) -> int:
    """scancel the sweep's arrays that still have pending or running tasks."""
    from orchestrator import slurm, slurm_launch, store

    spec, _ = _load(args)
    if not slurm.available():
        raise SpecError("cancel: sbatch/squeue not found (not on a SLURM login node)")
    root = store.sweep_root(spec)
    _, live = slurm_launch.runs_in_slurm(root)
    arrays = sorted({job_id.split("_", 1)[0] for job_id in live})
    slurm.cancel(arrays)
    console.print(f"{spec.name}: cancelled {len(live)} pending/running jobs in {len(arrays)} array(s)")
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
        written = collect.write_tables(spec, root, smoke=args.smoke, report=not args.no_report)
        print(written.markdown)  # plain: rich would re-wrap the Markdown table
        console.print(f"[green]tables:[/] {', '.join(str(p) for p in written.files)}")
        console.print(f"[green]runs:[/]   {written.runs_path}")
        if written.report_path is not None:
            console.print(f"[green]report:[/] {written.report_path}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """GFLOPs and params of every (backbone, dataset, ablation) cell; checks the spec's budget."""
    from orchestrator import profile_cmd

    spec, runs = _load(args)
    profile_cmd.run_profile(spec, runs, console)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Metrics of a run's best checkpoint on a labelled dataset, into RUN_DIR/eval/<name>/."""
    from orchestrator import modes_cmd

    return modes_cmd.run_eval(args.run_dir, args.dataset, args.split, args.name, console)


def cmd_predict(args: argparse.Namespace) -> int:
    """Predictions of a run's best checkpoint for a folder of images, as a .tsv."""
    from orchestrator import modes_cmd

    return modes_cmd.run_predict(args.run_dir, args.images_dir, args.out, args.threshold, console)


def cmd_datasets(args: argparse.Namespace) -> int:
    """`datasets list`, or `datasets describe DATASET`: counts, imbalance, file sizes, bar chart."""
    from orchestrator import datasets_cmd

    if args.action == "list":
        return datasets_cmd.run_list(console)
    if not args.dataset:
        raise SpecError("datasets describe: name a dataset, e.g. `orchestrate datasets describe digits`")
    return datasets_cmd.run_describe(args.dataset, args.fields, args.root, args.site, args.out, console)


if __name__ == "__main__":
    sys.exit(main())
