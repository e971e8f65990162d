"""orchestrator.store.placement: is an output folder inside a dataset's folder, paths resolved once."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.store import placement
from orchestrator.sweep.errors import SpecError
from trainers.config import DatasetConfig


def test_inside_means_below_the_root_not_beside_it(tmp_path: Path) -> None:
    ds = DatasetConfig(name="imagefolder", root=str(tmp_path / "ds"))
    assert placement.data_holding(tmp_path / "ds" / "a" / "out", [ds]) is not None
    assert placement.data_holding(tmp_path / "ds", [ds]) is not None
    assert placement.data_holding(tmp_path / "ds-out", [ds]) is None  # a shared prefix is not a parent
    assert placement.data_holding(tmp_path, [ds]) is None  # a parent of the dataset holds no image of it


def test_parts_of_a_combined_dataset_and_links_count(tmp_path: Path) -> None:
    (tmp_path / "cub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "cub")
    combined = DatasetConfig(
        name="combined", parts=({"name": "digits"}, {"name": "cub200", "root": str(tmp_path / "cub")})
    )
    with pytest.raises(SpecError, match=r"--out .*inside the folder of dataset 'cub200'"):
        placement.check_outside_data(tmp_path / "link" / "report", [combined], "--out")


def test_a_symlink_loop_is_compared_not_raised(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    ds = DatasetConfig(name="imagefolder", root=str(tmp_path / "ds"))
    assert placement.data_holding(tmp_path / "loop" / "out", [ds]) is None
