"""`orchestrate eval RUN_DIR` and `orchestrate predict RUN_DIR IMAGES_DIR` (report 003's
eval and pred modes) on a finished run. The work happens in `trainers.loop.modes`, imported
only when one of these commands runs (it needs torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, cast

from rich.console import Console

from orchestrator import textsafe
from orchestrator.sweep.spec import SpecError
from trainers import contract

SHOWN_UNREADABLE = 5
"""How many of the files `predict` could not decode it names."""


def _run_dir(path: str) -> Path:
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise SpecError(f"{run_dir}: no such run folder")
    return run_dir


def _dataset(text: str | None) -> dict[str, Any] | None:
    """`--dataset` as the DatasetConfig mapping evaluate_run takes (see datasets.parse_dataset)."""
    from orchestrator.cli.datasets import parse_dataset

    return None if text is None else parse_dataset(text, (), None).model_dump(mode="json", exclude_unset=True)


def _which(checkpoint: str) -> Literal["run", "best", "last"]:
    """--checkpoint, checked against the three models a run has (argparse checks it too)."""
    if checkpoint not in ("run", "best", "last"):
        raise SpecError(f"--checkpoint {checkpoint!r}: choose run, best or last")
    return cast(Literal["run", "best", "last"], checkpoint)


def run_eval(
    run_dir: str, dataset: str | None, split: str, name: str | None, console: Console, checkpoint: str = "run"
) -> int:
    """Evaluate and print the main scores and where the files went."""
    from pydantic import ValidationError

    from trainers.loop.modes import evaluate_run

    try:
        folder, metrics = evaluate_run(_run_dir(run_dir), _dataset(dataset), split, name, _which(checkpoint))
    except (FileNotFoundError, FileExistsError, ValueError, ValidationError) as exc:
        raise SpecError(f"eval {run_dir}: {exc}") from None
    result = contract.EvalMetrics.model_validate(metrics)
    test = result.test
    scores = {"top1": test.top1, "macro_f1": test.macro_f1, "loss": test.loss}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if v is not None)
    model = f"{result.checkpoint} model, epoch {result.checkpoint_epoch}"
    what = textsafe.rich(f"{result.split} of {result.dataset.get('name')}")
    skipped = metrics.get("skipped_images") or 0
    unread = f", {skipped} unreadable skipped" if skipped else ""
    console.print(f"{what} ({test.n_images or 0} images{unread}, {textsafe.rich(model)}): {shown}")
    console.print(f"[green]metrics:[/] {textsafe.rich(folder / 'metrics.json')}")
    return 0


def run_predict(
    run_dir: str, images_dir: str, out: str | None, threshold: float | None, console: Console, checkpoint: str = "run"
) -> int:
    """Predict and print where the .tsv went."""
    from trainers.loop.modes import misread_by_default, predict_images

    try:
        target = Path(out) if out else None
        path, count, unreadable = predict_images(
            _run_dir(run_dir), Path(images_dir), target, threshold, _which(checkpoint)
        )
        misread = misread_by_default(path)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise SpecError(f"predict {run_dir}: {exc}") from None
    console.print(f"{count} images -> [green]{textsafe.rich(path)}[/]")
    if unreadable:
        shown = ", ".join(unreadable[:SHOWN_UNREADABLE]) + (", ..." if len(unreadable) > SHOWN_UNREADABLE else "")
        console.print(f"[yellow]{len(unreadable)} unreadable image file(s) skipped (no row):[/] {textsafe.rich(shown)}")
    if misread:
        _print_read_recipe(path, misread, console)
    return 0


def _print_read_recipe(path: Path, misread: list[str], console: Console) -> None:
    """Which names of the .tsv pandas' defaults read as missing values, numbers or bools (a class
    named NA or 1, an empty `labels` cell), and the read that returns them as written."""
    import pandas as pd

    from trainers.loop.modes import read_recipe

    shown = ", ".join(map(repr, misread[:SHOWN_UNREADABLE])) + (", ..." if len(misread) > SHOWN_UNREADABLE else "")
    recipe = read_recipe(list(pd.read_csv(path, sep="\t", nrows=0).columns))
    console.print(
        f'[yellow]pandas.read_csv(path, sep="\\t") reads {len(misread)} name(s) of this file as missing values '
        f"or numbers ({textsafe.rich(shown)}; '' is an empty labels cell); read it as written with:[/] "
        f"{textsafe.rich(recipe)}"
    )
