"""The complexity budget of a sweep, torch-free: which model a cell's complexity belongs to
(`complexity_key`: a hash of what shapes the model) and the budget rule (`exceeds`, `over_budget`).
Counting FLOPs needs torch and lives in orchestrator/checks/complexity.py.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

from orchestrator.sweep.spec import BudgetSpec
from trainers.config import TrainConfig

if TYPE_CHECKING:
    import pandas as pd

# What shapes the model, and nothing else: the cache key of `profile` and of profile.csv, so
# every seed, optimizer, loss (L2-SP included), dropout rate and smoke variant of a cell shares
# one entry. A whitelist: a config field added later never splits the cache by accident.
_MODEL_KEYS = ("backbone", "head", "insert")
_SKIP_DATASET = ("max_samples", "max_bad_fraction", "val_fraction", "test_fraction", "split_seed", "label")


def complexity_key(config: TrainConfig) -> str:
    """Short hash of the config fields that can change the model's shapes or FLOPs."""
    data = config.model_dump(mode="json")
    model = {key: data["model"][key] for key in _MODEL_KEYS}
    if config.regime == "pretrained_eval":
        # The checkpoint's own head: its width is read from the file.
        model.update(regime=config.regime, pretrained_path=config.model.pretrained_path)
        model["class_map_path"] = config.model.class_map_path
    dataset = data["data"]["dataset"]
    _strip_dataset(dataset)
    shaped = {"model": model, "image_size_px": data["data"]["image_size_px"], "dataset": dataset}
    canonical = json.dumps(shaped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _strip_dataset(dataset: Any) -> None:
    if not isinstance(dataset, dict):
        return
    for key in _SKIP_DATASET:
        dataset.pop(key, None)
    for part in dataset.get("parts") or ():
        _strip_dataset(part)


def over_budget(frame: pd.DataFrame, budget: BudgetSpec | None) -> pd.Series:
    """Rows whose relative GFLOPs or params increase exceeds the budget."""
    flags = frame["gflops_delta_pct"].isna() & False
    if budget is None:
        return flags
    gflops = frame["gflops_delta_pct"].map(lambda d: exceeds(d, budget.max_gflops_increase_pct))
    params = frame["params_delta_pct"].map(lambda d: exceeds(d, budget.max_params_increase_pct))
    return flags | gflops.astype(bool) | params.astype(bool)


def exceeds(delta_pct: float | None, limit_pct: float | None) -> bool:
    """The budget rule: a relative increase above the limit (rounding noise of 1e-9 % tolerated)."""
    if delta_pct is None or limit_pct is None or math.isnan(delta_pct):
        return False
    return delta_pct > limit_pct + 1e-9
