"""Label shapes of the datasets whose size is fixed by their definition (no torch, no disk).

`orchestrate profile` counts GFLOPs and params of every cell before anything trains,
on a machine that may hold neither the datasets nor the checkpoints. The heads' widths
are the one thing it needs from the data, and for these datasets they are known in
advance. Datasets whose classes come from files (imagefolder, hierarchical_csv,
multilabel) may declare them (`label_shape: {classes: 14}` in the dataset's config, e.g.
in a site file); otherwise their shape is read from disk when the files are there.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainers.config import DatasetConfig

# FGVC-Aircraft: the 100 variants are the classes; family or manufacturer is the super level.
FGVC_SUPER_LEVELS = {"family": 70, "manufacturer": 30}
SINGLE_CLASSES = {"digits": 10, "cub200": 200, "fgvc_aircraft": 100, "foodx251": 251}
# The label structure of layouts that have one of their own.
LAYOUT_TASKS = {"hierarchical_csv": "hierarchical", "multilabel": "multilabel"}
# Task views a dataset offers besides its own single-label one: (super classes, labels).
DIGITS_SUPER = 2  # "0-4", "5-9"
DIGITS_LABELS = 4  # even, five_or_more, prime, loop


@dataclass(frozen=True)
class LabelShape:
    """What the model's heads need: the task and its class counts."""

    task: str
    """single, hierarchical or multilabel."""
    num_classes: int
    """Classes (single), sub-classes without the novel slot (hierarchical) or labels (multilabel)."""
    num_super: int = 0
    """Super classes (hierarchical)."""
    novel_slot: bool = False
    """Hierarchical: one more sub-class output for novel/unseen sub-classes."""

    def describe(self) -> str:
        """`200`, `2 / 10+novel`, `4 labels`."""
        if self.task == "hierarchical":
            return f"{self.num_super} / {self.num_classes}{'+novel' if self.novel_slot else ''}"
        if self.task == "multilabel":
            return f"{self.num_classes} labels"
        return str(self.num_classes)


def label_shape(dataset: DatasetConfig) -> LabelShape | None:
    """The label shape of a dataset config: declared (`label_shape:`), known from the dataset's
    definition, or None when only its files can tell. A `level` view is single-label."""
    shape = _own_label_shape(dataset)
    if dataset.level is None or shape is None or shape.task != "hierarchical":
        return shape
    if dataset.level == "super":
        return LabelShape("single", shape.num_super)
    return LabelShape("single", shape.num_classes + int(shape.novel_slot))


def _own_label_shape(dataset: DatasetConfig) -> LabelShape | None:
    task = dataset.task or LAYOUT_TASKS.get(dataset.name, "single")
    declared = dataset.label_shape
    if declared is not None:
        return LabelShape(task, declared.classes, declared.super_classes, declared.novel_slot)
    if dataset.name == "combined":
        parts = [label_shape(part) for part in dataset.parts]
        if task != "single" or not parts or any(p is None or p.task != "single" for p in parts):
            return None
        return LabelShape("single", sum(p.num_classes for p in parts if p is not None))
    if dataset.name not in SINGLE_CLASSES:
        return None
    classes = SINGLE_CLASSES[dataset.name]
    if task == "single":
        return LabelShape("single", classes)
    novel = len(dataset.novel_subclasses)
    if task == "hierarchical" and dataset.name == "digits":
        return LabelShape("hierarchical", classes - novel, DIGITS_SUPER, novel > 0)
    if task == "hierarchical" and dataset.name == "fgvc_aircraft":
        supers = FGVC_SUPER_LEVELS.get(dataset.super_level or "family")
        return None if supers is None else LabelShape("hierarchical", classes - novel, supers, novel > 0)
    if task == "multilabel" and dataset.name == "digits":
        return LabelShape("multilabel", DIGITS_LABELS)
    return None


def num_classes(dataset: DatasetConfig) -> int | None:
    """Single-label class count (combined: the sum of its parts); None if unknown or not single-label."""
    shape = label_shape(dataset)
    return shape.num_classes if shape is not None and shape.task == "single" else None
