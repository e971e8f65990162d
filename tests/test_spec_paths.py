"""Paths in a sweep file are relative to the file; the run id never holds a cwd-relative string."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

SPEC = """
name: paths
defaults:
  model: {pretrained_path: ckpt/model.pth}
  data: {dataset: {name: imagefolder, root: data/images}}
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
    for cwd in (tmp_path, elsewhere):
        monkeypatch.chdir(cwd)
        runs = plan(load_spec(Path(folder / "s.yaml").relative_to(cwd) if cwd == tmp_path else folder / "s.yaml"))
        mapped = runs[1].config
        assert mapped.model.class_map_path == str(folder / "maps" / "map.json")
        assert mapped.model.pretrained_path == str(folder / "ckpt" / "model.pth")
        assert mapped.data.dataset.root == str(folder / "data" / "images")
        ids.append([run.run_id for run in runs])
    assert ids[0] == ids[1]
    # A command-line override is relative to the working directory, as a shell user expects.
    spec = load_spec(folder / "s.yaml", ["modifiers.mapped.model.class_map_path=other.json"])
    assert plan(spec)[1].config.model.class_map_path == str(elsewhere / "other.json")
