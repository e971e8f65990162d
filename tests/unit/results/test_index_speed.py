"""The fast paths of collect's index and reader (issue 28) keep the exact rules they replace:
each run file is read once per collect, the index is checked a column at a time with the same
verdicts as value by value, and clean_metrics' remembered verdicts keep 1, 1.0 and True apart."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tables_fixture import finished_sweep

from orchestrator import store
from orchestrator.results import collect, index_checks, reader
from orchestrator.sweep import bounded
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec
from trainers import contract, rundir

SPEC = """
name: speed
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid: {{backbone: [resnet10t], dataset: [digits], seed: [0, 1, 2]}}
modifiers: {{aug: {{data.augment: {{rotate_deg: 10}}}}}}
ablations: {{Baseline: [], + Aug: [aug]}}
"""


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    return finished_sweep(write_spec(SPEC))


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    reads: Counter[str] = Counter()
    original = bounded.read_bytes_and_stat

    def counted(path: Path, limit: int | None = None) -> tuple[bytes | None, os.stat_result | None]:
        reads[f"{path.parent.name}/{path.name}"] += 1
        return original(path, limit)

    monkeypatch.setattr(bounded, "read_bytes_and_stat", counted)  # read_bytes reads through it
    return reads


def test_a_cold_collect_reads_each_run_file_once(
    sweep: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = sweep
    reads = _count_reads(monkeypatch)
    collected = reader.read_sweep(spec.output_path, runs, spec.output_path / collect.INDEX_FILE)
    assert collected.read_runs == len(runs)
    per_file = {key: n for key, n in reads.items() if key.endswith((rundir.CONFIG, rundir.STATUS, rundir.METRICS))}
    assert len(per_file) == 3 * len(runs)
    assert set(per_file.values()) == {1}, "hashed and parsed from the same bytes"


def test_a_file_changed_after_the_index_is_read_from_its_new_bytes(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    index = spec.output_path / collect.INDEX_FILE
    reader.read_sweep(spec.output_path, runs, index)
    path = store.run_path(spec.output_path, runs[0].run_id) / rundir.METRICS
    path.write_text('{"test": {"top1": 0.25}}')
    again = reader.read_sweep(spec.output_path, runs, index)
    assert again.read_runs == 1
    assert again.frame.set_index("run_id").at[runs[0].run_id, "test.top1"] == 0.25
    path.write_text('{"test": {"top1": 0.2')  # broken after indexing: named, never a traceback
    broken = reader.read_sweep(spec.output_path, runs, index)
    assert [p.run_id for p in broken.problems] == [runs[0].run_id]
    assert "truncated or invalid JSON" in broken.problems[0].reason
    assert reader.read_sweep(spec.output_path, runs, index).read_runs == 0, "the broken read is indexed too"


def test_an_unreadable_file_is_named_from_the_read_that_hashed_it(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    path = store.run_path(spec.output_path, runs[0].run_id) / rundir.STATUS
    path.unlink()
    path.mkdir()
    collected = reader.read_sweep(spec.output_path, runs, spec.output_path / collect.INDEX_FILE)
    reasons = [(p.run_id, p.reason) for p in collected.problems]
    assert reasons == [(runs[0].run_id, "status.json is a folder, not a file")]


# (column, value, valid): the per-value rule the column-wise check must agree with
VALUES: list[tuple[str, Any, bool]] = [
    ("test.top1", 0.5, True),
    ("test.top1", 1.5, False),
    ("test.top1", math.nan, False),
    ("test.top1", "text", False),
    ("test.top1", True, False),
    ("test.loss", 7.0, True),
    ("test.loss", -1.0, False),
    ("timing.wall_s", math.inf, False),
    ("timing.rss_scope", "process", True),
    ("complexity.counter", "fvcore", True),
    ("complexity.gflops", "1e3", False),
    ("provenance.num_processes", 2, True),
    ("provenance.num_processes", 0, False),
    ("provenance.num_processes", 2.0, False),
    ("provenance.num_processes", True, False),
    ("provenance.git_dirty", True, True),
    ("provenance.git_dirty", math.inf, False),
    ("test.top1", 1, True),
    ("test.top1", 2, False),
    ("test.n_images", 10**16, False),
    ("provenance.host", "node1", True),
    ("started_at", 1.7e9, True),
    ("started_at", math.nan, False),
]


@pytest.mark.parametrize(("column", "value", "valid"), VALUES, ids=[f"{c}={v!r}" for c, v, _ in VALUES])
def test_the_column_wise_check_keeps_the_value_rule(column: str, value: Any, valid: bool) -> None:
    columns = ["run_id", column]
    good = 0.25 if column.startswith(("test.", "started")) else None
    values = [["r"] * 52, [good] * 50 + [value, None]]  # the last folder's read had no such column
    kinds = [set(map(type, column)) for column in values]
    assert index_checks.bad_values(columns, values, kinds) == (set() if valid else {50})
    assert index_checks.cached_ok(column, value) is valid


def test_an_index_entry_of_another_shape_is_dropped(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    index = spec.output_path / collect.INDEX_FILE
    reader.read_sweep(spec.output_path, runs, index)
    data = json.loads(index.read_text())
    top1 = data["columns"].index("test.top1")
    data["values"][top1][0] = [1]  # a list value
    data["problems"]["1"] = [3]  # a problem that is no text
    data["values"][data["columns"].index("state")][2] = "finished"  # no state a read gives
    data["values"][data["columns"].index("run_id")][3] = data["names"][4]  # another folder's row
    index.write_text(json.dumps(data))
    assert reader.read_sweep(spec.output_path, runs, index).read_runs == 4
    data["files"][1]["stat"].pop()  # a file of another shape: no index at all
    index.write_text(json.dumps(data))
    assert reader.read_sweep(spec.output_path, runs, index).read_runs == len(runs)


def test_remembered_metric_verdicts_keep_types_apart() -> None:
    for _ in range(2):  # the second pass answers from the remembered verdicts
        clean, problems = contract.clean_metrics(
            {"provenance.num_processes": 1, "test.n_images": 1, "test.top1": True, "provenance.git_dirty": True}
        )
        assert clean == {"provenance.num_processes": 1, "test.n_images": 1.0, "provenance.git_dirty": True}
        assert type(clean["provenance.num_processes"]) is int and type(clean["test.n_images"]) is float
        assert problems == ["metrics.json: test.top1 = true is not a number"]


def test_absent_and_unreadable_files_round_trip_through_the_index(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    """A folder without metrics.json and one whose status.json is a folder keep their rows, their
    problems and the frame a read without index gives."""
    spec, runs = sweep
    index = spec.output_path / collect.INDEX_FILE
    (store.run_path(spec.output_path, runs[0].run_id) / rundir.METRICS).unlink()
    status = store.run_path(spec.output_path, runs[1].run_id) / rundir.STATUS
    status.unlink()
    status.mkdir()
    assert reader.read_sweep(spec.output_path, runs, index).read_runs == len(runs)
    again = reader.read_sweep(spec.output_path, runs, index)
    assert again.read_runs == 0
    fresh = reader.read_sweep(spec.output_path, runs)
    assert again.frame.equals(fresh.frame) and again.problems == fresh.problems
    assert {p.run_id for p in again.problems} == {runs[0].run_id, runs[1].run_id}
