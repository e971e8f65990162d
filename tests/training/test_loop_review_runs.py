"""Review of the training loop inside real (tiny, CPU) runs: each test pins a bug a researcher was hurt by."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from config_helpers import tiny_config

import trainers
from trainers import rundir
from trainers.loop import epoch as epoch_module
from trainers.loop.build import Parts

pytestmark = pytest.mark.filterwarnings("ignore:stratified split impossible")


def test_a_run_whose_model_diverges_to_nan_finishes_and_tests_the_best_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # digits has 10 classes, so validation computes top-5: NaN logits made scikit-learn raise
    # "Input contains NaN" and the whole run failed, its good first epoch with it.
    scored = epoch_module.evaluate  # type: ignore[attr-defined]
    epochs: list[None] = []

    def diverged_in_epoch_2(parts: Parts, loader: Any) -> dict[str, Any]:
        """The epoch's validation, with the model's weights blown up to NaN in the second epoch."""
        epochs.append(None)
        if len(epochs) == 2:
            with torch.no_grad():
                for param in parts.model.parameters():
                    param.fill_(math.nan)
        return scored(parts, loader)

    monkeypatch.setattr(epoch_module, "evaluate", diverged_in_epoch_2)
    cfg = tiny_config(epochs=2, early_stopping={"metric": "val_loss", "patience": 5})
    metrics = trainers.run(cfg, tmp_path / "run")
    with (tmp_path / "run" / rundir.HISTORY).open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["val_loss"] == "nan" and rows[0]["val_loss"] != "nan"
    assert metrics["best_epoch"] == 1
    assert math.isfinite(metrics["test"]["loss"]) and "top5" in metrics["test"]


def test_a_pretrained_model_scored_as_is_reports_no_trainable_parameter(tmp_path: Path) -> None:
    # regime pretrained_eval trains nothing, but metrics.json said its checkpoint head (test_resnet's
    # fc) was trainable: a table of trainable parameters per regime showed it beside the linear probe.
    torch.manual_seed(0)
    weights = tmp_path / "test_resnet-10.pth"
    torch.save(timm.create_model("test_resnet", num_classes=10).state_dict(), weights)
    metrics = trainers.run(tiny_config(regime="pretrained_eval", model__pretrained_path=str(weights)), tmp_path / "run")
    counted = metrics["complexity"]
    assert counted["params_trainable"] == 0 and counted["params"] > 0
    assert metrics["epochs_trained"] == 0
