"""`orchestrate datasets list|describe --json`: the models of their output (schema_version as in
orchestrator.cli.jsonout)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orchestrator.cli.datasets_chart import readable
from orchestrator.cli.jsonout import SCHEMA_VERSION, Out, abs_path

if TYPE_CHECKING:
    import pandas as pd


class DatasetEntry(Out):
    """One registered dataset."""

    name: str
    tasks: list[str]
    """Label structures; the first is the default."""
    files: dict[str, str]
    """Default file names (override with `layout:`)."""
    source: Literal["files", "scikit-learn", "combined"]


class DatasetsListOut(Out):
    """`orchestrate datasets list --json`."""

    schema_version: int = SCHEMA_VERSION
    command: Literal["datasets list"] = "datasets list"
    datasets: list[DatasetEntry]


class DatasetDescription(Out):
    """One described dataset: the tables `describe` prints, as records."""

    name: str
    display_name: str
    task: str
    classes: list[str]
    split_sizes: dict[str, int]
    """train / val / test -> images."""
    split: Any
    """The split policy, as recorded in split.json."""
    counts: list[dict[str, Any]]
    """Class counts and percentages per split (one record per class and level)."""
    imbalance: list[dict[str, Any]]
    file_sizes: list[dict[str, Any]] | None
    """Image file-size statistics per class; null for in-memory datasets."""
    files: list[str]


class DatasetsDescribeOut(Out):
    """`orchestrate datasets describe --json`."""

    schema_version: int = SCHEMA_VERSION
    command: Literal["datasets describe"] = "datasets describe"
    datasets: list[DatasetDescription]


def records(frame: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    """A frame as JSON records (numpy numbers become numbers, NaN becomes null)."""
    from pandas.api.types import is_numeric_dtype

    if frame is None:
        return None
    # A class folder name that is not UTF-8 as its escape, as on screen and in the CSV (pandas'
    # to_json failed on its lone surrogates: a traceback).
    frame = frame.apply(lambda column: column if is_numeric_dtype(column) else column.map(readable))
    loaded: list[dict[str, Any]] = json.loads(frame.to_json(orient="records", double_precision=15))
    return loaded


def dataset_description(ds: Any, report: Any, written: Iterable[Path]) -> DatasetDescription:
    """One dataset's description from the report `describe` printed."""
    view = report.view
    return DatasetDescription(
        name=ds.name,
        display_name=ds.display_name,
        task=view.task,
        classes=[readable(c) for c in view.class_names],
        split_sizes={s: len(view.targets[s]) for s in ("train", "val", "test")},
        split=json.loads(json.dumps(view.info.get("policy", view.info), default=str)),
        counts=records(report.counts) or [],
        imbalance=records(report.imbalance) or [],
        file_sizes=records(report.sizes),
        files=[abs_path(p) or "" for p in written],
    )
