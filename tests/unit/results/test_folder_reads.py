"""collect's folder reads on several processes give the rows, columns, problems and index of a read
in this process, and a folder whose files keep their indexed stat is not opened."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.results import collect, folder_reads, index_file, reader
from orchestrator.results import index as index_of
from orchestrator.sweep import bounded, forked
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir

SPEC = """
name: pool
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid: {{backbone: [resnet10t], dataset: [digits], seed: [0, 1, 2, 3, 4, 5]}}
modifiers: {{aug: {{data.augment: {{rotate_deg: 10}}}}}}
ablations: {{Baseline: [], + Aug: [aug]}}
"""


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    spec = load_spec(write_spec(SPEC))
    runs = plan(spec)
    store.write_snapshot(spec, spec.output_path)
    for index, run in enumerate(runs):
        fake_run(spec, run, 0.80 + 0.01 * index)
    broken = store.run_path(spec.output_path, runs[3].run_id) / rundir.METRICS
    broken.write_text('{"test": {"top1": 0.9')
    extra = store.run_path(spec.output_path, runs[5].run_id) / rundir.METRICS
    extra.write_text(json.dumps({"test": {"top1": 0.5, "only_here": 0.25}}))  # a column only one run has
    return spec, runs


def _read(spec: SweepSpec, runs: list[RunSpec], workers: str, monkeypatch: pytest.MonkeyPatch) -> reader.Collected:
    monkeypatch.setenv(folder_reads.WORKERS_ENV, workers)
    monkeypatch.setattr(folder_reads, "CHUNK", 2)  # several tasks, finished out of order
    index = spec.output_path / collect.INDEX_FILE
    index.unlink(missing_ok=True)
    return reader.read_sweep(spec.output_path, runs, index)


def test_two_workers_read_what_one_reads(
    sweep: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = sweep
    serial = _read(spec, runs, "1", monkeypatch)
    serial_index = json.loads((spec.output_path / collect.INDEX_FILE).read_text())
    pooled = _read(spec, runs, "2", monkeypatch)
    pooled_index = json.loads((spec.output_path / collect.INDEX_FILE).read_text())
    assert pooled.read_runs == serial.read_runs == len(runs)
    assert pooled.frame.drop(columns="path").equals(serial.frame.drop(columns="path"))
    assert list(pooled.frame.columns) == list(serial.frame.columns) and "test.only_here" in serial.frame.columns
    assert pooled.problems == serial.problems and len(serial.problems) == 1
    assert pooled_index["columns"] == serial_index["columns"]
    assert _without_hash_times(pooled_index) == _without_hash_times(serial_index), "the same index but for them"


def _without_hash_times(index: dict[str, Any]) -> dict[str, Any]:
    """The index without the times its files were hashed at (every 5th stat number of a file) and
    its generation and save token (random per write)."""
    files = [{**f, "stat": [v for j, v in enumerate(f["stat"]) if j % 5 != 4]} for f in index["files"]]
    return {**index, "files": files, "generation": None, "state": None}


def test_a_pool_that_breaks_leaves_the_rest_to_this_process(
    sweep: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = sweep
    serial = _read(spec, runs, "1", monkeypatch)

    def broken(chunks: Iterator[list[object]]) -> Iterator[list[object]]:
        yield next(chunks)  # one chunk from the workers, then the pool is gone
        raise OSError("fork: resource temporarily unavailable")

    monkeypatch.setattr(forked, "pooled", broken)
    pooled = _read(spec, runs, "2", monkeypatch)
    assert pooled.frame.drop(columns="path").equals(serial.frame.drop(columns="path"))


def test_unchanged_folders_are_not_opened(
    sweep: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = sweep
    index = spec.output_path / collect.INDEX_FILE
    reader.read_sweep(spec.output_path, runs, index)
    _settled(index)
    opened: list[str] = []
    original = bounded.read_bytes_and_stat

    def counted(path: Path, limit: int | None = None) -> tuple[bytes | None, os.stat_result | None]:
        opened.append(str(path))
        return original(path, limit)

    monkeypatch.setattr(bounded, "read_bytes_and_stat", counted)  # read_bytes reads through it
    again = reader.read_sweep(spec.output_path, runs, index)
    assert again.read_runs == 0
    assert [p for p in opened if "/runs/" in p] == [], "no run file opened"


def _settled(index: Path) -> None:
    """The index as if hashed long after its files' last change (ctime + 10 s): their stat decides."""
    data = json.loads(index.read_text())
    for files in data["files"]:
        stat = files["stat"]
        stat[4::5] = [ctime + 10**10 for ctime in stat[3::5]]
    index.write_text(json.dumps(data))


def test_stats_taken_ahead_by_a_worker_decide_what_one_process_decides(
    sweep: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second collect's lstats of every run file, taken by a worker while the index is parsed, send
    the same folders to be read again as this process's own lstats: a rewritten metrics.json, a
    status.json gone, a config.yaml replaced by a symlink; the others are not read."""
    spec, runs = sweep
    index = spec.output_path / collect.INDEX_FILE
    reader.read_sweep(spec.output_path, runs, index)
    _settled(index)
    settled = index.read_bytes()
    folders = [store.run_path(spec.output_path, run.run_id) for run in runs]
    (folders[0] / rundir.METRICS).write_text(json.dumps({"test": {"top1": 0.125}}))
    (folders[1] / rundir.STATUS).unlink()
    config = folders[2] / rundir.CONFIG
    config.rename(folders[2] / "config.real")
    config.symlink_to(folders[2] / "config.real")
    ahead: list[str] = []
    original = forked.later

    def counted(task: Callable[[], object], workers: int) -> Callable[[], object]:
        if getattr(task, "func", None) is index_of.folder_stats:
            ahead.append(str(workers))
        return original(task, workers)

    monkeypatch.setattr(forked, "later", counted)
    got = {}
    for workers in ("1", "2"):
        index.write_bytes(settled)
        index_file.changes_path(index).unlink(missing_ok=True)  # the first read's rows, for that index
        monkeypatch.setenv(folder_reads.WORKERS_ENV, workers)
        got[workers] = reader.read_sweep(spec.output_path, runs, index)
    assert ahead == ["2"], "the stats were taken ahead, by a worker, with two workers only"
    assert got["1"].read_runs == got["2"].read_runs == 3
    assert got["2"].frame.drop(columns="path").equals(got["1"].frame.drop(columns="path"))
    assert got["2"].problems == got["1"].problems
    assert any("symbolic link" in p.reason and p.run_id == runs[2].run_id for p in got["1"].problems)
    by_id = got["2"].frame.set_index("run_id")
    assert by_id.at[runs[0].run_id, "test.top1"] == 0.125 and by_id.at[runs[1].run_id, "state"] == "missing"


def test_runs_csv_usage_and_index_written_by_workers_are_the_bytes_one_process_writes(
    sweep: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, _ = sweep
    index = spec.output_path / collect.INDEX_FILE
    workers_seen: list[int] = []
    original = forked.later

    def counted(task: Callable[[], object], workers: int) -> Callable[[], object]:
        workers_seen.append(workers)
        return original(task, workers)

    monkeypatch.setattr(forked, "later", counted)

    def written(workers: str) -> tuple[bytes, bytes, dict[str, object]]:
        monkeypatch.setenv(folder_reads.WORKERS_ENV, workers)
        index.unlink(missing_ok=True)
        done = collect.write_tables(spec, spec.output_path)
        return (
            done.runs_path.read_bytes(),
            (done.runs_path.parent / "usage.csv").read_bytes(),
            _without_hash_times(json.loads(index.read_text())),
        )

    serial = written("1")
    pooled = written("2")
    assert workers_seen == [1, 1, 1, 2, 2, 2], "index, runs.csv and usage.csv: here, then on workers"
    assert pooled == serial
    assert serial[0].count(b"\n") == len(json.loads(index.read_text())["names"]) + 1


@pytest.mark.parametrize("positions", [[1, 3], [2, 3]], ids=["apart", "consecutive"])
def test_rows_by_column_fill_the_index_as_each_row_would(positions: list[int]) -> None:
    rows = [{"a": 1, "c": 2}, {"c": 3, "a": 4, "d": 5}]  # keys in another order, one more
    index = index_of.Index(["a", "b"], names=list("vwxyz"), values=[list("AAAAA"), list("BBBBB")])
    index.set_rows(positions, folder_reads.by_column(rows))
    assert index.columns == ["a", "b", "c", "d"], "new columns in the order rows first have them"
    expected = {"a": list("AAAAA"), "b": list("BBBBB"), "c": [None] * 5, "d": [None] * 5}
    for i, row in zip(positions, rows, strict=True):
        for column, values in expected.items():
            values[i] = row.get(column)  # a column the row lacks is None there
    assert dict(zip(index.columns, index.values, strict=True)) == expected
    same_keys = [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert folder_reads.by_column(same_keys) == {"a": [1, 3], "b": [2, 4]}
