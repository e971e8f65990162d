"""`orchestrate`: the parser and the entry point. argparse keeps `--help` fast (no torch, no pandas at import)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from orchestrator import textsafe
from orchestrator.cli import commands, jsonflag, submit, terminal
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.spec import MAX_RUNS


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `orchestrate` console script."""
    parser = build_parser()
    # Overrides may come after options too (`submit x.yaml --dry-run k=v`), as Hydra users type them.
    args, extra = parser.parse_known_args(argv)
    unknown = [item for item in extra if "=" not in item or item.startswith("-")]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit (a traceback there)
        return code
    except SpecError as exc:
        _error(str(exc))
        return 2
    except RuntimeError as exc:  # SlurmError and submitit's submission failures
        _error(f"{type(exc).__name__}: {exc}")
        return 1
    except KeyboardInterrupt:
        # On stderr: stdout may be a `--json` object that a script is reading.
        hint = ": finished runs are kept; submit again to continue" if args.func is submit.cmd_submit else ""
        terminal.make_console(stderr=True).print(f"[yellow]interrupted[/]{hint}")
        return 130
    except BrokenPipeError:  # `orchestrate plan SPEC | head -1`: the reader has all it wanted
        from orchestrator.cli.process import silence_stdout

        silence_stdout()
        return 1


def _error(message: str) -> None:
    """One line on stderr; markup off so `[1]` in a field path is printed as is."""
    terminal.make_console(stderr=True).print(f"error: {textsafe.terminal(message)}", markup=False, soft_wrap=True)


def build_parser() -> argparse.ArgumentParser:
    """The whole `orchestrate` parser (the docs site generates its command reference from it)."""
    parser = argparse.ArgumentParser(
        prog="orchestrate", description="Image-classification ablation sweeps: plan, submit, collect."
    )
    parser.add_argument("--version", action=_VersionAction, help="print the tool's version and exit")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for add in (_add_plan, _add_submit, _add_status, _add_cancel, _add_collect, _add_profile):
        add(sub)
    for add in (_add_eval, _add_predict, _add_datasets, _add_init, _add_schema, _add_examples):
        add(sub)
    p = sub.add_parser(
        "completion",
        help="print a shell completion script",
        epilog="example: orchestrate completion bash > ~/.local/share/bash-completion/completions/orchestrate",
    )
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete in")
    p.set_defaults(func=_completion)
    for name in jsonflag.COMMANDS:  # `--json` on the commands whose output scripts read
        jsonflag.add_flag(sub.choices[name])
    for name, command in sub.choices.items():  # every --help shows its defaults and an example
        command.formatter_class = HelpFormatter
        command.epilog = command.epilog or EXAMPLES[name]
    return parser


EXAMPLES: dict[str, str] = {
    "plan": "example: orchestrate plan sweeps/demo.yaml grid.seed=[0,1] --all",
    "submit": "examples: orchestrate submit sweeps/demo.yaml                (this machine)\n"
    "          orchestrate submit sweeps/demo.yaml --executor slurm --profile mycluster --follow",
    "status": "example: orchestrate status sweeps/demo.yaml --watch",
    "cancel": "example: orchestrate cancel sweeps/demo.yaml",
    "collect": "example: orchestrate collect sweeps/demo.yaml   (or a results folder, e.g. results/demo)",
    "profile": "example: orchestrate profile sweeps/demo.yaml",
    "eval": "example: orchestrate eval results/demo/runs/<run_id> --dataset '{name: imagefolder, root: ~/data/new}'",
    "predict": "example: orchestrate predict results/demo/runs/<run_id> ~/photos --out labels.tsv",
    "datasets": "examples: orchestrate datasets list\n"
    "          orchestrate datasets describe imagefolder --root ~/data/shapes",
}
"""One runnable example per command that has none in its own `add_parser` call (shown under --help)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks, and says every option's default where its help does not:
    a forgotten `--executor slurm` should be visible in `submit --help` (it trains here by default)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        silent = action.default in (None, False, argparse.SUPPRESS) or action.default == []
        if silent or "default" in text or action.option_strings == []:
            return text
        return f"{text} (default %(default)s)"


# init, schema and completion import their modules when run: scaffold scans image folders
# (numpy) and completion needs shtab; the other commands should not pay for them at start-up.
SCHEMA_KINDS = ("sweep", "site", "profile")
"""`orchestrate schema KIND` (orchestrator.cli.scaffold.SCHEMAS has one builder per kind)."""


def _completion(args: argparse.Namespace) -> int:
    from orchestrator.cli import completion

    return completion.cmd_completion(args, build_parser())


def _init(args: argparse.Namespace) -> int:
    from orchestrator.cli import scaffold

    return scaffold.cmd_init(args)


def _schema(args: argparse.Namespace) -> int:
    from orchestrator.cli import scaffold

    return scaffold.cmd_schema(args)


class _VersionAction(argparse.Action):
    """`--version`: the installed distribution's version, looked up only when asked (keeps --help fast)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"orchestrate {tool_version()}")
        parser.exit()


def tool_version() -> str:
    """Version of the installed distribution that provides the `orchestrator` package."""
    from importlib import metadata

    for dist in metadata.packages_distributions().get("orchestrator", []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown (not installed; running from a source tree)"


def _add_init(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="write a commented first sweep for an ImageFolder dataset (plans clean as written)",
        epilog="example: orchestrate init --root ~/data/shapes --out sweeps/shapes.yaml",
    )
    layouts = ("imagefolder",)
    p.add_argument("--dataset", choices=layouts, default="imagefolder", help="dataset layout (default %(default)s)")
    p.add_argument("--root", required=True, help="dataset folder: ROOT/<class>/<image> or ROOT/train/<class>/...")
    p.add_argument("--name", help="sweep name (default: the folder's name)")
    p.add_argument("--out", help="sweep file to write (default NAME.yaml here; never overwritten)")
    p.add_argument("--backbone", default="resnet18", help="timm model name (default %(default)s)")
    p.set_defaults(func=_init)


def _add_schema(sub: Any) -> None:
    p = sub.add_parser(
        "schema",
        help="JSON Schema of sweep, site or profile files (for editors: yaml-language-server)",
        epilog="example: orchestrate schema sweep --out orchestrate-sweep.schema.json",
    )
    p.add_argument("kind", nargs="?", choices=SCHEMA_KINDS, default="sweep", help="(default %(default)s)")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=_schema)


def _add_examples(sub: Any) -> None:
    p = sub.add_parser(
        "examples",
        help="print where the shipped example sweep, site and profiles are, or copy them into a folder",
        epilog="example: orchestrate examples ~/first && orchestrate plan ~/first/sweeps/demo.yaml",
    )
    p.add_argument("dest", nargs="?", help="copy them here (sweeps/, sites/, slurm/profiles/); never overwrites")
    p.set_defaults(func=commands.cmd_examples)


def _add_plan(sub: Any) -> None:
    p = sub.add_parser("plan", help="show the runs a sweep expands to")
    _spec_args(p)
    p.add_argument("--all", action="store_true", help="list every run, however many")
    p.add_argument(
        "--detect", type=_positive, metavar="DELTA", help="seeds per cell to detect this delta (table units)"
    )
    p.add_argument(
        "--variance-from",
        metavar="FOLDER",
        help="with --detect or adaptive seeds: the spread of a finished sweep (its output folder, with sweep.yaml)",
    )
    p.set_defaults(func=commands.cmd_plan)


def _add_submit(sub: Any) -> None:
    p = sub.add_parser("submit", help="run what is not done yet")
    _spec_args(p)
    p.add_argument(
        "--executor",
        choices=("local", "debug", "slurm"),
        default="local",
        help="local: warm worker processes on this machine; debug: in this process; slurm: job arrays",
    )
    p.add_argument(
        "--workers", type=_count, help="local: runs at once, each in a warm worker (default: one per GPU, else 1)"
    )
    p.add_argument(
        "--profile",
        help="cluster profile (slurm executor): a NAME on the profile search path (docs: your cluster) or a file path",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be submitted, submit nothing")
    p.add_argument("--force", action="store_true", help="redo every run (old run folders are archived)")
    p.add_argument("--smoke", action="store_true", help="a few batches of every planned run into <output>/smoke/")
    p.add_argument("--over-budget", action="store_true", help="submit even if cells exceed the spec's budget")
    p.add_argument(
        "--follow",
        action="store_true",
        help="slurm: stay in the foreground, topping the queue up within your limits; adaptive seeds: every round",
    )
    p.add_argument("--interval", type=_seconds, default=30.0, help="seconds between queue checks with --follow")
    p.add_argument(
        "--retry-all",
        action="store_true",
        help="slurm: also resubmit runs the retry policy leaves (user errors, past --deadline, "
        "retry.max_attempts used up), after a fix",
    )
    p.add_argument(
        "--clear-quarantine",
        action="store_true",
        help="slurm: forget the sweep's quarantined nodes (quarantine.json) before submitting",
    )
    p.add_argument(
        "--slurm-jobs-gone",
        action="store_true",
        help="local: the sweep's SLURM jobs have all ended; train their runs here although no squeue can say so",
    )
    p.set_defaults(func=submit.cmd_submit)


def _add_status(sub: Any) -> None:
    p = sub.add_parser("status", help="state of every run of a sweep")
    _spec_args(p)
    p.add_argument("--watch", action="store_true", help="refresh until no run is pending or running")
    p.add_argument("--interval", type=_seconds, default=10.0, help="seconds between refreshes with --watch")
    p.add_argument("--all", action="store_true", help="list every run, not only unfinished ones")
    p.add_argument("--smoke", action="store_true", help="the smoke runs (`submit --smoke`) instead")
    p.set_defaults(func=commands.cmd_status)


def _add_cancel(sub: Any) -> None:
    p = sub.add_parser("cancel", help="cancel the sweep's SLURM jobs that are still pending or running")
    _spec_args(p)
    p.add_argument("--smoke", action="store_true", help="the smoke runs' jobs (`submit --smoke`) instead")
    p.set_defaults(func=commands.cmd_cancel)


def _add_collect(sub: Any) -> None:
    p = sub.add_parser("collect", help="results -> runs.csv and ablation tables")
    p.add_argument("target", nargs="?", help="sweep file or output folder (default: every sweep under results/)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides (with a sweep file)")
    p.add_argument("--smoke", action="store_true", help="collect the smoke runs instead")
    p.add_argument("--no-report", action="store_true", help="tables only, no report/index.html (plots)")
    _max_runs_arg(p)
    p.set_defaults(func=commands.cmd_collect)


def _add_profile(sub: Any) -> None:
    p = sub.add_parser("profile", help="GFLOPs and params of every cell's model (meta device, no data)")
    _spec_args(p)
    p.set_defaults(func=commands.cmd_profile)


def _add_eval(sub: Any) -> None:
    p = sub.add_parser("eval", help="score a finished run's tested model on a labelled dataset")
    p.add_argument("run_dir", help="the run's folder (results/<sweep>/runs/<run_id>)")
    p.add_argument(
        "--dataset", help="dataset name or YAML mapping, e.g. '{name: imagefolder, root: DIR}' (default: the run's)"
    )
    p.add_argument("--split", choices=("test", "val", "train"), default="test", help="split to score (default test)")
    p.add_argument("--name", help="output folder name under RUN_DIR/eval/ (default: <dataset>-<split>)")
    _checkpoint_arg(p)
    p.set_defaults(func=commands.cmd_eval)


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="label unlabelled images with a finished run's tested model (.tsv)")
    p.add_argument("run_dir", help="the run's folder")
    p.add_argument("images_dir", help="folder of images (searched recursively)")
    p.add_argument("--out", help="TSV file to write (default: RUN_DIR/predictions/<folder name>.tsv)")
    p.add_argument("--threshold", type=_probability, help="multilabel decision threshold (default: the run's)")
    _checkpoint_arg(p)
    p.set_defaults(func=commands.cmd_predict)


def _checkpoint_arg(p: Any) -> None:
    p.add_argument(
        "--checkpoint",
        choices=("run", "best", "last"),
        default="run",
        help="model to load: run = the one the run's test metrics come from (its checkpoint_for_test, "
        "default); best = best validation epoch; last = final epoch",
    )


def _add_datasets(sub: Any) -> None:
    p = sub.add_parser("datasets", help="registered datasets; describe one (class counts, imbalance, file sizes)")
    p.add_argument("action", choices=("list", "describe"))
    p.add_argument("dataset", nargs="?", help="name, YAML mapping, site:NAME, or a sweep file (all its datasets)")
    p.add_argument("fields", nargs="*", help="dataset fields as key=value, e.g. task=hierarchical val_fraction=0.2")
    p.add_argument("--root", help="dataset root folder")
    p.add_argument("--site", help="site file for site:NAME (default $ORCHESTRATE_SITE)")
    p.add_argument("--out", help="output folder (default results/datasets/<dataset>)")
    p.set_defaults(func=commands.cmd_datasets)


def _positive(text: str) -> float:
    """A finite number > 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number above 0")
    return value


MAX_INTERVAL_S = 86_400.0


def _count(text: str) -> int:
    """A whole number >= 1 (argparse type): `--workers 0` or `-3` ran one worker without a word, and
    `--max-runs -1` refused every sweep as exceeding "the cap of -1"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _seconds(text: str) -> float:
    """Seconds between polls (argparse type): 1 to a day (nan and -1 failed in time.sleep, 1e308
    overflowed it, 0 polled without pause)."""
    value = _positive(text)
    if not 1 <= value <= MAX_INTERVAL_S:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 1 and {MAX_INTERVAL_S:,.0f} seconds")
    return value


def _probability(text: str) -> float:
    """A number strictly between 0 and 1 (argparse type), as the trainer config's threshold."""
    value = _positive(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number between 0 and 1")
    return value


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="sweep YAML file")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. defaults.epochs=1 grid.seed=[0]")
    p.add_argument("--skip-data-check", action="store_true", help="plan/submit: do not check dataset files here")
    _max_runs_arg(p)


def _max_runs_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-runs",
        type=_count,
        default=MAX_RUNS,
        help=f"refuse a sweep planning more runs than this (default {MAX_RUNS:,})",
    )


if __name__ == "__main__":
    from orchestrator.cli import console

    console()
