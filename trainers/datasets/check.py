"""Plan-time dataset check, importable on the login node (no torch, PIL or scikit-learn).

`orchestrate plan` and `submit` call `check_dataset` once per distinct dataset of a
sweep, so a missing root, a missing annotation file or an image that is listed but
absent is a one-line error before anything is submitted, not a crash in a job.
"""

from __future__ import annotations

from trainers.config import DatasetConfig
from trainers.datasets.index import IN_MEMORY, available, build_index, task_of

IN_MEMORY_TASKS = {"digits": ("single", "hierarchical", "multilabel")}


def check_dataset(ds: DatasetConfig) -> None:
    """Raise FileNotFoundError or ValueError (naming the dataset and path) when `ds` cannot be
    read: unknown name or task, missing root, annotation file or listed image."""
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
    build_index(ds)


__all__ = ["check_dataset"]
