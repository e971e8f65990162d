"""Plan-time dataset check, importable on the login node (no torch or PIL; scikit-learn only to carve
the test split of a small dataset, CARVED_AT_PLAN_BELOW).

`orchestrate plan` and `submit` call `check_dataset` once per distinct dataset of a
sweep, so a missing root, a missing annotation file or an image that is listed but
absent is a one-line error before anything is submitted, not a crash in a job.
"""

from __future__ import annotations

import math

from trainers.config import DatasetConfig
from trainers.datasets.index import (
    IN_MEMORY,
    ResolvedSplits,
    available,
    build_index,
    check_unique,
    dataset_tag,
    resolve_splits,
    task_of,
)

IN_MEMORY_TASKS = {"digits": ("single", "hierarchical", "multilabel")}
CARVED_AT_PLAN_BELOW = 2_000
"""A test split carved from fewer training images than this is carved at plan too, to see that it
holds an image (scikit-learn's import, about 0.3 s). From a larger pool it always does: the
stratified split gives it ceil(test_fraction x images), and each class its share."""


def check_dataset(ds: DatasetConfig) -> None:
    """Raise FileNotFoundError or ValueError (naming the dataset and path) when `ds` cannot be
    read: unknown name or task, missing root, annotation file or listed image, an image listed twice
    or in two splits; or when its train or test split, as the trainer carves them, would hold no
    image."""
    if ds.name == "combined":
        if not ds.parts:
            raise ValueError(f"dataset {ds.name!r} needs `parts` (e.g. [cub200, fgvc_aircraft] as site entries)")
        if task_of(ds) != "single":
            raise ValueError(f"dataset {ds.name!r}: only the single-label task is offered")
        for number, part in enumerate(ds.parts):
            try:
                if part.name in (*IN_MEMORY, "combined"):
                    raise ValueError(f"{part.name!r} cannot be a part")
                if task_of(part) != "single":
                    raise ValueError(f"parts must be single-label, not {task_of(part)!r}")
                check_dataset(part)
            except (ValueError, FileNotFoundError) as exc:
                raise type(exc)(f"dataset 'combined' part {number}: {exc}") from None
        return
    if ds.name in IN_MEMORY:
        task = task_of(ds)
        if task not in IN_MEMORY_TASKS[ds.name]:
            raise ValueError(f"dataset {ds.name!r}: task {task!r} not offered")
        if ds.novel_subclasses and task != "hierarchical":
            raise ValueError(f"dataset {ds.name!r}: novel_subclasses needs task: hierarchical")
        return
    if ds.name not in available():
        raise ValueError(f"unknown dataset {ds.name!r}; registered: {', '.join(available())}")
    index = build_index(ds)
    # Here too, not only when the job resolves its splits: FoodX's CSVs with a repeated row, or an
    # Aircraft image in two split files, planned and submitted, then failed in every job.
    check_unique(dataset_tag(ds), {name: part.ids for name, part in index.parts.items()})
    official = index.parts.get("test")
    if official is not None and len(official) == 0:
        raise ValueError(f"{dataset_tag(ds)}: the official test split holds no image (under {ds.root})")
    pool = index.parts.get("train", index.parts.get("all"))
    if official is None and pool is not None and len(pool) < CARVED_AT_PLAN_BELOW:
        check_not_empty(ds, resolve_splits(ds, index))  # the index read once (it lists every image)


def check_not_empty(ds: DatasetConfig, splits: ResolvedSplits) -> None:
    """ValueError when the train or test split would hold no image: every run of the dataset would
    train and then have nothing to score (a folder of one image per class planned, trained 9 runs,
    and `collect` had nothing to tabulate). An empty val split is allowed (the last epoch is kept).
    `plan` and `orchestrate init` both refuse with it, so the two say the same."""
    for name in ("train", "test"):
        if len(splits.split(name)) == 0:
            how = splits.info.get("policy", {}).get(name, "official")
            outcome = "train" if name == "train" else "report a test score"
            raise ValueError(
                f"{dataset_tag(ds)}: the {name} split would hold no image ({split_origin(ds, name, how)}; "
                f"{len(splits.train)} train images in {len(splits.class_names)} classes), so no run could "
                f"{outcome}; {_remedy(ds, name, how)}"
            )


def split_origin(ds: DatasetConfig, name: str, policy: str) -> str:
    """How split `name` is made, from its policy (`resolve_splits`' info), in words: `carved 20% of
    the training images`, `the training images left after carving`, `its test/ folder`."""
    how, _, rest = policy.partition(" ")
    if how == "carved":
        return f"carved {float(rest.split()[0]):.0%} of the training images"
    if how == "rest":
        return "the training images left after carving"
    return f"its {name}/ folder" if ds.name == "imagefolder" else f"its official {name} split"


def _remedy(ds: DatasetConfig, name: str, policy: str) -> str:
    """What makes split `name` hold an image: more images (per class, for a carved split's share),
    a carved fraction above 0, or the split shipped as its own folder or file."""
    own = f"a {name}/ folder" if ds.name == "imagefolder" else f"an official {name} split"
    if not policy.startswith("carved "):
        return f"add images or {own}"
    fraction = float(policy.split()[1])
    if fraction <= 0:
        return f"set {name}_fraction above 0 or add {own}"
    per_class = math.ceil(round(1 / fraction, 6))  # rounded: float noise must not add a whole image
    return (
        f"add images (a carved split takes its share of each class: {per_class} or more per class gives "
        f"each class a {name} image) or {own}"
    )


__all__ = ["check_dataset", "check_not_empty", "split_origin"]
