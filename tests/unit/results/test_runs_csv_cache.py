"""results.runs_csv_cache: a second collect formats only the rows it read again (and the runs never
started), takes the other lines from runs.csv, and writes the bytes a cold collect writes; a record
that does not fit (edited, another index save, other columns) only costs formatting every line."""

from __future__ import annotations

import json
import random
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.results import collect, index_file, runs_csv, runs_csv_cache
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec

SEEDS = 6


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    """A sweep whose last seed never started (missing rows after the folders' rows), with a device
    name that runs.csv must quote (a comma, a quote and a line break)."""
    grid = {"backbone": ["resnet10t"], "dataset": ["digits"], "seed": list(range(SEEDS))}
    spec = load_spec(write_spec(grid=grid))
    runs = plan(spec)
    rng = random.Random(0)
    for run in runs:
        if run.seed != SEEDS - 1:
            fake_run(spec, run, round(0.8 + 0.02 * rng.random(), 6), device='GPU "a",\nb')
    return spec, runs


@pytest.fixture
def formatted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows runs_csv_cache formats (its own view of runs_csv: usage.csv's rows are not counted)."""
    rows: list[int] = []

    def row_lines(frame: pd.DataFrame, bounds: tuple[int, int]) -> list[str]:
        lines = runs_csv.row_lines(frame, bounds)
        if frame.shape[1] > 2:  # not the run-id check of the kept lines
            rows.append(len(lines))
        return lines

    view = types.SimpleNamespace(**{name: getattr(runs_csv, name) for name in ("csv_text", "header_line", "__file__")})
    view.row_lines = row_lines
    monkeypatch.setattr(runs_csv_cache, "runs_csv", view)
    monkeypatch.setenv("ORCHESTRATE_COLLECT_WORKERS", "1")  # the worker's calls in this process
    return rows


def _runs_csv(spec: SweepSpec) -> bytes:
    written = collect.write_tables(spec, store.sweep_root(spec))
    return written.runs_path.read_bytes()


def _cold(spec: SweepSpec) -> bytes:
    root = store.sweep_root(spec)
    index = root / collect.INDEX_FILE
    for path in (index, index_file.changes_path(index), root / runs_csv_cache.FILE):
        path.unlink(missing_ok=True)
    return _runs_csv(spec)


def _change(spec: SweepSpec, runs: list[RunSpec], count: int, **values: Any) -> None:
    for run in [r for r in runs if r.seed != SEEDS - 1][:count]:
        fake_run(spec, run, 0.5 + 0.01 * run.seed, **values)


def test_a_second_collect_formats_only_the_rows_read_again(
    sweep: tuple[SweepSpec, list[RunSpec]], formatted: list[int]
) -> None:
    spec, runs = sweep
    started = len(runs) - len(runs) // SEEDS
    _runs_csv(spec)
    assert sum(formatted) == len(runs)  # the first collect formats every row
    _change(spec, runs, 2)
    formatted.clear()
    second = _runs_csv(spec)
    # The rows read again (the 2 changed, and any hashed again within RACY_NS of a write) and the
    # runs never started; never all of the started ones.
    assert len(runs) - started + 2 <= sum(formatted) < len(runs)
    assert second == _cold(spec)
    assert b'"GPU ""a"",\nb"' in second  # a quoted cell with a line break, taken whole from the old text


@pytest.mark.parametrize(
    "spoil",
    [
        lambda record: {**record, "state": "0" * 16},  # rows of another index save
        lambda record: {**record, "lengths": [n + 1 for n in record["lengths"]]},  # lines cut elsewhere
        lambda record: {**record, "lengths": record["lengths"][:-1]},
        lambda record: {**record, "lengths": [0] * len(record["lengths"])},  # every line empty
        lambda record: {**record, "lengths": [-(10**6), *record["lengths"][1:]]},  # an index before the text
        lambda record: {**record, "lengths": [sum(record["lengths"][:2]), 1, *record["lengths"][2:]]},
        lambda record: {**record, "digest": "0" * 32},  # runs.csv is not the one recorded
        lambda record: {**record, "shape": "x"},
        lambda record: [record],
    ],
)
def test_a_record_that_does_not_fit_formats_every_line(
    sweep: tuple[SweepSpec, list[RunSpec]], formatted: list[int], spoil: Callable[[Any], Any]
) -> None:
    spec, runs = sweep
    _runs_csv(spec)
    record_path = store.sweep_root(spec) / runs_csv_cache.FILE
    record_path.write_text(json.dumps(spoil(json.loads(record_path.read_text()))))
    _change(spec, runs, 1)
    formatted.clear()
    second = _runs_csv(spec)
    assert sum(formatted) == len(runs)
    assert second == _cold(spec)


def test_new_columns_or_dtypes_format_every_line(sweep: tuple[SweepSpec, list[RunSpec]], formatted: list[int]) -> None:
    """A changed run that adds a metric (a new column) or turns a column's dtype (an int among floats
    missing elsewhere) changes other rows' lines too."""
    spec, runs = sweep
    _runs_csv(spec)
    _change(spec, runs, 1, extra_test={"top5": 0.99})
    formatted.clear()
    second = _runs_csv(spec)
    assert sum(formatted) == len(runs)
    assert second == _cold(spec)
    _change(spec, runs, 1, processes=2, extra_test={"top5": 0.98})
    assert _runs_csv(spec) == _cold(spec)


def test_a_missing_or_garbled_record_or_runs_csv(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    root = store.sweep_root(spec)
    _runs_csv(spec)
    (root / runs_csv_cache.FILE).write_bytes(b"\xff{not json")
    _change(spec, runs, 1)
    assert _runs_csv(spec) == _cold(spec)
    (root / runs_csv_cache.FILE).unlink()
    _change(spec, runs, 2)
    assert _runs_csv(spec) == _cold(spec)


def test_a_relabelled_row_is_relabelled_in_runs_csv(
    sweep: tuple[SweepSpec, list[RunSpec]], write_spec: Callable[..., Path], formatted: list[int]
) -> None:
    """Renaming an ablation row keeps its run ids: the index's cached rows held the old name, so
    runs.csv said '+ Aug' where the tables (and a cold collect) said the new name."""
    spec, runs = sweep
    first = _runs_csv(spec)
    old_name = next(iter(spec.ablations))
    source = spec.source
    assert source is not None
    path = Path(source)
    path.write_text(path.read_text().replace(f"{old_name}:", "Renamed baseline:", 1))
    relabelled = load_spec(path)
    assert [r.run_id for r in plan(relabelled)] == [r.run_id for r in runs]
    formatted.clear()
    second = _runs_csv(relabelled)
    assert b"Renamed baseline" in second and b"Renamed baseline" not in first
    assert sum(formatted) == len(runs)  # the plan's facts changed: every line formatted
    assert second == _cold(relabelled)
