"""Datasets by name. Importing this package registers the built-in datasets."""

from trainers.datasets import digits, imagefolder  # noqa: F401  (registration side effect)
from trainers.datasets.base import DatasetSplits, LabeledImages, stratified_split
from trainers.datasets.registry import available, build_splits, register

__all__ = [
    "DatasetSplits",
    "LabeledImages",
    "available",
    "build_splits",
    "register",
    "stratified_split",
]
