"""Best-checkpoint selection and early stopping on a chosen validation metric (report 000:
stop when val loss has not improved for `patience` epochs; evaluate the best epoch)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trainers import rules
from trainers.config import EarlyStoppingConfig
from trainers.loop.metrics import lookup

PREFIX = "val_"


@dataclass(frozen=True)
class Selection:
    """Which validation metric is better in which direction, and how long to wait."""

    metric: str
    mode: str
    patience: int | None
    min_delta: float

    @classmethod
    def from_config(cls, cfg: EarlyStoppingConfig, kind: str) -> Selection:
        """The selection of `cfg`, its metric checked against the validation metrics of the run's
        task (`kind`) by `plan`'s rule (rules.check_metric)."""
        rules.check_metric_for(cfg.metric, kind)
        key = cfg.metric.removeprefix(PREFIX)
        mode = cfg.mode if cfg.mode != "auto" else ("min" if key.endswith("loss") else "max")
        return cls(cfg.metric, mode, cfg.patience, cfg.min_delta)

    @property
    def key(self) -> str:
        """The dotted key inside the validation metrics."""
        return self.metric.removeprefix(PREFIX)

    def value(self, val: dict[str, Any]) -> float | None:
        """The metric in one epoch's validation results: None without a validation split (no
        images scored), NaN when the split was scored but the metric is not a number (a diverged
        model's loss)."""
        if not val.get("n_images"):
            return None
        value = lookup(val, self.key)
        return math.nan if value is None else value

    def improved(self, value: float | None, best: float | None) -> bool:
        """Whether `value` beats `best` by more than min_delta; ties keep the earlier epoch.
        Without a validation split (None) the latest epoch counts as best. NaN never improves:
        it would otherwise become the best and reset the patience of a run that diverged."""
        if value is None:
            return True
        if math.isnan(value):
            return False
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta
