"""Datasets by name: file layouts (trainers.datasets.index and one module per layout,
torch-free) and the torch side that decodes them (base, registry).

The label-structure contract (single / hierarchical / multilabel targets) is described
in trainers/datasets/base.py. This package imports nothing heavy itself, so the login
node may import `trainers.datasets.check` without torch; the names below load lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainers.datasets.base import TASKS, DatasetSplits, LabeledImages, Task, stratified_split
    from trainers.datasets.registry import available, build_splits, register

_LAZY = {
    "TASKS": "base",
    "DatasetSplits": "base",
    "LabeledImages": "base",
    "Task": "base",
    "stratified_split": "splits",
    "available": "registry",
    "build_splits": "registry",
    "register": "registry",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trainers.datasets' has no attribute {name!r}")
    return getattr(importlib.import_module(f"trainers.datasets.{_LAZY[name]}"), name)


__all__ = [
    "TASKS",
    "DatasetSplits",
    "LabeledImages",
    "Task",
    "available",
    "build_splits",
    "register",
    "stratified_split",
]
