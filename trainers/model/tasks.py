"""What a run's model predicts: the label structure of its dataset, as heads of known width.

A TaskSpec is small and JSON-able: it is derived once from the dataset splits, shapes
the heads (trainers.model.heads), picks the loss (trainers.model.losses) and the metrics
(trainers.loop.metrics), and is saved with the best checkpoint so `eval` and `predict`
rebuild the exact model without reading the training data again.

The model always returns one tensor [batch, sum of head widths]: the heads' logits
concatenated in `heads` order. `split_outputs` cuts it back into named parts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

Kind = Literal["single", "hierarchical", "multilabel"]
NOVEL = "novel"


@dataclass(frozen=True)
class TaskSpec:
    """Label structure of a run (see trainers.datasets.base for the targets' shapes)."""

    kind: Kind
    class_names: tuple[str, ...]
    """Classes (single), sub classes (hierarchical, without the novel slot) or label names."""
    super_class_names: tuple[str, ...] = ()
    novel_slot: bool = False

    @property
    def heads(self) -> tuple[tuple[str, int], ...]:
        """(name, width) of each head, in output order."""
        if self.kind == "hierarchical":
            return (("super", len(self.super_class_names)), ("sub", len(self.class_names) + int(self.novel_slot)))
        return (("logits", len(self.class_names)),)

    @property
    def num_outputs(self) -> int:
        """Width of the model's output tensor."""
        return sum(width for _, width in self.heads)

    def level_names(self, level: str) -> list[str]:
        """Class names of one head's outputs (`sub` includes the novel slot)."""
        if level == "super":
            return list(self.super_class_names)
        names = list(self.class_names)
        return [*names, NOVEL] if (level == "sub" and self.novel_slot) else names

    def split_outputs(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model output [n, num_outputs] cut into one [n, width] part per head."""
        parts = torch.split(outputs, [width for _, width in self.heads], dim=1)
        return {name: part for (name, _), part in zip(self.heads, parts, strict=True)}

    def as_dict(self) -> dict[str, Any]:
        """JSON form (saved beside the best checkpoint)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        """Inverse of as_dict."""
        return cls(
            kind=data["kind"],
            class_names=tuple(data["class_names"]),
            super_class_names=tuple(data.get("super_class_names", ())),
            novel_slot=bool(data.get("novel_slot", False)),
        )


def task_of(splits: Any) -> TaskSpec:
    """The TaskSpec of a DatasetSplits (single-label when it predates the `task` field)."""
    return TaskSpec(
        kind=getattr(splits, "task", "single"),
        class_names=tuple(splits.class_names),
        super_class_names=tuple(getattr(splits, "super_class_names", ()) or ()),
        novel_slot=bool(getattr(splits, "novel_slot", False)),
    )


def single(num_classes: int) -> TaskSpec:
    """A single-label task with classes named 0..n-1 (complexity counts, tests)."""
    return TaskSpec("single", tuple(str(i) for i in range(num_classes)))
