"""`tables: [{tex_notes: ...}]` shortens or drops the notes under the .tex table; a partial table names
the runs that are not in it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from test_json_output import finish

from orchestrator import store
from orchestrator.results import collect
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec
from trainers import rundir
from trainers.rundir import State


def _collected(write_spec: Callable[..., Path], tex_notes: str) -> tuple[str, str, list[str]]:
    spec = load_spec(write_spec(tables=[{"name": "t", "tex_notes": tex_notes}]))
    runs = plan(spec)
    for run in runs[:4]:
        finish(spec, run, 0.8)
    failed = store.run_path(store.sweep_root(spec), runs[4].run_id)
    store.prepare(runs[4], failed)
    rundir.update_status(failed, State.FAILED)
    written = collect.write_tables(spec, spec.output_path, report=False)
    tex = (spec.output_path / "tables" / "t.tex").read_text()
    return written.markdown, tex, [runs[4].name, runs[5].name]


@pytest.mark.parametrize("tex_notes", ["full", "short", "none"])
def test_tex_notes_full_short_none(write_spec: Callable[..., Path], tex_notes: str) -> None:
    markdown, tex, _ = _collected(write_spec, tex_notes)
    legend, later = "Cells: top-1 (\\%) as mean", "n per cell: 2 seeds"
    assert "Cells: top-1 (%) as mean" in markdown and later in markdown  # other formats keep every note
    assert (legend in tex) == (tex_notes != "none")
    assert (later in tex) == (tex_notes == "full")
    assert ("partial table" in tex) == (tex_notes != "none")
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 1


def test_partial_table_names_its_failed_and_missing_runs(write_spec: Callable[..., Path]) -> None:
    markdown, tex, (failed, missing) = _collected(write_spec, "full")
    line = next(line for line in markdown.splitlines() if "partial table" in line)
    assert "2 run(s) not in it" in line
    assert f"failed (1): {failed}" in line and f"missing (1): {missing}" in line
    assert f"failed (1): {failed}" in tex
