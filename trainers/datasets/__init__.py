"""Datasets by name. Importing this package registers the built-in datasets.

The label-structure contract (single / hierarchical / multilabel targets) is described
in trainers/datasets/base.py.
"""

from trainers.datasets import digits, imagefolder  # noqa: F401  (registration side effect)
from trainers.datasets.base import TASKS, DatasetSplits, LabeledImages, Task, stratified_split
from trainers.datasets.registry import available, build_splits, register

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
