"""Checkpoint and class-map paths in a sweep file are relative to the file: the run id never
holds a string whose meaning depends on the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

SPEC = """
name: paths
defaults:
  model: {pretrained_path: ckpt/model.pth}
modifiers:
  mapped: {model.class_map_path: maps/map.json, regime: pretrained_eval}
ablations:
  Baseline: []
  Mapped: [mapped]
"""


def test_spec_paths_resolve_against_the_spec_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "sweeps"
    folder.mkdir()
    (folder / "s.yaml").write_text(SPEC)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ids = []
    for cwd, spec_path in ((tmp_path, Path("sweeps/s.yaml")), (elsewhere, folder / "s.yaml")):
        monkeypatch.chdir(cwd)
        runs = plan(load_spec(spec_path))
        mapped = runs[1].config
        assert mapped.model.class_map_path == str(folder / "maps" / "map.json")
        assert mapped.model.pretrained_path == str(folder / "ckpt" / "model.pth")
        ids.append([run.run_id for run in runs])
    assert ids[0] == ids[1]
