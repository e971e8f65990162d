"""Collect and table rendering on fixture run folders (no training)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from orchestrator import store
from orchestrator.results import collect, reader, tables
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir
from trainers.rundir import State


def fake_run(spec: SweepSpec, run: RunSpec, top1: float, gflops: float = 1.0, params_m: float = 2.0) -> None:
    """A finished run folder as the trainer would leave it."""
    path = store.run_path(store.sweep_root(spec), run.run_id)
    store.prepare(run, path)
    metrics = {
        "test": {"top1": top1, "macro_f1": top1 - 0.01},
        "complexity": {"gflops": gflops, "params_m": params_m},
        "provenance": {"git_commit": "abcdef1234567890"},
    }
    rundir.write_json(path / rundir.METRICS, metrics)
    rundir.update_status(path, State.COMPLETED)


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    spec = load_spec(write_spec())
    return spec, plan(spec)


def test_frame_has_one_row_per_run(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    fake_run(spec, runs[0], 0.9)
    frame = reader.collect_frame(store.sweep_root(spec), runs)
    assert len(frame) == len(runs)
    assert list(frame.columns[:6]) == ["run_id", "name", "ablation", "backbone", "dataset", "seed"]
    done = frame[frame["state"] == "completed"]
    assert done["test.top1"].tolist() == [0.9]
    assert (frame[frame["state"] == "missing"]["in_plan"]).all()


def test_table_mean_std_delta_and_missing(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    # Baseline: seeds 0.90, 0.92; + Aug: 0.95 (1 of 2 seeds); + Aug + Dropout: none.
    fake_run(spec, runs[0], 0.90)
    fake_run(spec, runs[1], 0.92)
    fake_run(spec, runs[2], 0.95, gflops=1.1, params_m=2.2)
    frame = reader.collect_frame(store.sweep_root(spec), runs)
    [table] = tables.ablation_tables(spec, frame, runs)
    assert table.columns == ["digits", "GFLOPs", "Params (M)"]
    (base_name, base), (aug_name, aug), (_, drop) = ((row.label, row.cells) for row in table.rows)
    assert base_name == "Baseline" and aug_name == "+ Aug"
    assert base[0].mean == pytest.approx(91.0) and base[0].std == pytest.approx(1.41421356, rel=1e-6)
    assert base[0].delta is None and base[0].n == 2
    assert aug[0].mean == pytest.approx(95.0) and aug[0].delta == pytest.approx(4.0)
    assert aug[0].n == 1 and aug[0].n_expected == 2 and not aug[0].best, "issue 13: one seed is not significant"
    assert aug[1].delta == pytest.approx(10.0) and aug[1].relative
    assert drop[0].n == 0
    text = tables.render([table], "md", {"sweep": "tiny"})
    assert "| Baseline | 91.00 ± 1.41 | 1.00 | 2.000 |" in text
    assert "| + Aug | 95.00 (+4.00) (1/2 seeds, no interval) | 1.10 (+10.00%) | 2.200 (+10.00%) |" in text
    assert "| + Aug + Dropout | - | - | - |" in text


def test_single_seed_has_no_std(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(), ["grid.seed=[3]"])
    runs = plan(spec)
    fake_run(spec, runs[0], 0.5)
    fake_run(spec, runs[1], 0.25)
    [table] = tables.ablation_tables(spec, reader.collect_frame(store.sweep_root(spec), runs), runs)
    text = tables.render([table], "md", {"sweep": "t"})
    assert "| Baseline | 50.00 (1 seed, no interval) | 1.00 | 2.000 |" in text, "issue 13: no bold, says 1 seed"
    assert "| + Aug | 25.00 (-25.00) (1 seed, no interval) | 1.00 | 2.000 |" in text, "same model: no delta"


def test_write_tables_from_spec_and_from_folder(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    for run in runs:
        fake_run(spec, run, 0.8)
    store.write_snapshot(spec, store.sweep_root(spec))
    written = collect.write_tables(spec, spec.output_path)
    assert written.table_path == spec.output_path / "tables" / "table.md"
    assert len(pd.read_csv(written.runs_path)) == len(runs)
    [(snap_spec, root)] = collect.sweeps_under(spec.output_path.parent)
    assert root == spec.output_path and list(snap_spec.ablations) == list(spec.ablations)
    again = collect.write_tables(snap_spec, root)
    assert again.markdown == written.markdown
    assert "Code version(s): abcdef1234." in written.markdown
