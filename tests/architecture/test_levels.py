"""The suite's levels hold: every test file sits in a level folder, the folder's markers are set,
and a quick test cannot train (tests/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import LEVEL_MARKS, TESTS, TRAINING_GUARD

LEVELS = {"unit", "training", "e2e", "cluster", "architecture"}


def test_every_test_file_is_in_a_level_folder() -> None:
    stray = [str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py") if p.relative_to(TESTS).parts[0] not in LEVELS]
    assert not stray, f"put these under one of {sorted(LEVELS)}: {stray}"
    assert set(LEVEL_MARKS) <= LEVELS


def test_a_quick_test_that_trains_fails_with_its_name(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from trainers.config import TrainConfig
    from trainers.loop.run import TEST_TRAINING_GUARD, run_training

    assert TEST_TRAINING_GUARD == TRAINING_GUARD and os.environ[TRAINING_GUARD] == request.node.nodeid
    cfg = TrainConfig.model_validate({"model": {"backbone": "test_resnet"}, "data": {"dataset": "digits"}})
    with pytest.raises(RuntimeError, match="trains: move it to tests/training"):
        run_training(cfg, tmp_path)
    assert not any(tmp_path.iterdir()), "refused before anything was written"


@pytest.mark.slow
def test_slow_tests_may_train(request: pytest.FixtureRequest) -> None:
    assert TRAINING_GUARD not in os.environ


def test_one_conftest() -> None:
    """Tests import from `conftest` (the top one); a second conftest.py below tests/ is also imported as
    `conftest`, so whichever pytest loads last would answer those imports (CI failed that way once)."""
    assert sorted(TESTS.rglob("conftest.py")) == [TESTS / "conftest.py"]
