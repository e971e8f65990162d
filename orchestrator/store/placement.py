"""Where outputs may go: never inside a dataset's folder.

A folder-per-class dataset reads every image below its root, recursively. An output written
there becomes training data on the next read: `datasets describe --out DATA/a/report` put its
class_counts.png into class `a`, and a sweep whose `output_dir` lies inside its ImageFolder root
gains a class named after the output folder, holding collect's report figures. Both paths are
resolved once (`~`, `..` and symlinks, as the trainer opens them) before they are compared, so a
link into the dataset is caught as well.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec
from trainers.config import DatasetConfig


def real(path: Path | str) -> Path:
    """`path` absolute, `~` expanded and symlinks resolved; never raises (a symlink loop or a missing
    part is left as written, where os.path.realpath stops)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def dataset_roots(ds: DatasetConfig) -> Iterator[tuple[DatasetConfig, str]]:
    """Every root folder a dataset reads, with the dataset that reads it: its own and, for `combined`,
    its parts' (named in the error, so the user sees which of them the folder is in)."""
    if ds.root is not None:
        yield ds, ds.root
    for part in ds.parts:
        yield from dataset_roots(part)


def data_holding(folder: Path | str, datasets: Iterable[DatasetConfig]) -> tuple[DatasetConfig, Path] | None:
    """The first dataset (and its resolved root) whose folder holds `folder` or is it, else None."""
    target = real(folder)
    for ds in datasets:
        for reader, root in dataset_roots(ds):
            resolved = real(root)
            if target == resolved or resolved in target.parents:
                return reader, resolved
    return None


def check_outside_data(folder: Path | str, datasets: Iterable[DatasetConfig], what: str) -> None:
    """SpecError naming `what` (the option or spec field) and the dataset when `folder` lies inside a
    dataset's root: what is written there would be read back as images of the dataset."""
    found = data_holding(folder, datasets)
    if found is None:
        return
    ds, root = found
    raise SpecError(
        f"{what} {real(folder)} is inside the folder of dataset {ds.display_name!r} ({root}): "
        "files written there would be read as its images; choose a folder outside it"
    )


def check_sweep_output(output: Path, runs: Sequence[RunSpec], where: str) -> None:
    """SpecError when the sweep's output folder lies inside the folder of one of its runs' datasets
    (run folders, checkpoints and collect's report figures would join the training images)."""
    # A row's seeds share one frozen dataset config: one comparison per distinct config and roots.
    distinct = {id(run.config.data.dataset): run.config.data.dataset for run in runs}
    by_roots = {tuple(root for _, root in dataset_roots(ds)): ds for ds in distinct.values()}
    check_outside_data(output, by_roots.values(), f"{where}: output_dir")
