"""collect's index change file (results.index_file): a read that re-read a few folders writes only
their rows beside the index; a change file that does not fit its index is ignored and its folders
are read again; the rows always equal what a cold read gives."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tables_fixture import finished_sweep

from orchestrator import store
from orchestrator.results import collect, index_file, reader
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec
from trainers import rundir

SPEC = """
name: changes
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid: {{backbone: [resnet10t], dataset: [digits], seed: [0, 1, 2, 3]}}
modifiers: {{aug: {{data.augment: {{rotate_deg: 10}}}}}}
ablations: {{Baseline: [], + Aug: [aug]}}
"""


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    return finished_sweep(write_spec(SPEC))


def _paths(spec: SweepSpec) -> tuple[Path, Path]:
    index = spec.output_path / collect.INDEX_FILE
    return index, index_file.changes_path(index)


def _top1(spec: SweepSpec, run: RunSpec, value: float) -> None:
    path = store.run_path(spec.output_path, run.run_id) / rundir.METRICS
    metrics = json.loads(path.read_text())
    metrics["test"]["top1"] = value
    rundir.write_text(path, json.dumps(metrics))


def _cold(spec: SweepSpec, runs: list[RunSpec]) -> Any:
    """The frame a read without any index gives (the truth every cached read must equal)."""
    return reader.read_sweep(spec.output_path, runs, None).frame


def _read(spec: SweepSpec, runs: list[RunSpec]) -> reader.Collected:
    return reader.read_sweep(spec.output_path, runs, _paths(spec)[0])


def test_a_second_read_writes_only_the_rows_it_read_again(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    index, changes = _paths(spec)
    _read(spec, runs)
    assert index.is_file() and not changes.exists()
    whole = index.read_bytes()
    _top1(spec, runs[2], 0.5)
    again = _read(spec, runs)
    assert again.read_runs == 1
    assert index.read_bytes() == whole, "the index file is not written again"
    written = json.loads(changes.read_text())
    assert written["generation"] == json.loads(whole)["generation"]
    folder = store.run_path(spec.output_path, runs[2].run_id).name
    assert folder in written["names"]
    assert written["names"] == [json.loads(whole)["names"][p] for p in written["positions"]]
    third = _read(spec, runs)
    assert third.frame.set_index("run_id").at[runs[2].run_id, "test.top1"] == 0.5
    assert third.frame.drop(columns="path").equals(_cold(spec, runs).drop(columns="path"))


def test_changes_fold_into_the_index_once_they_are_many(
    sweep: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = sweep
    index, changes = _paths(spec)
    _read(spec, runs)
    monkeypatch.setattr(index_file, "CHANGES_MIN", len(runs))
    monkeypatch.setattr(index_file, "CHANGES_SHARE", 10**6)
    generation = json.loads(index.read_text())["generation"]
    _top1(spec, runs[0], 0.5)
    _read(spec, runs)
    assert changes.is_file() and json.loads(index.read_text())["generation"] == generation
    monkeypatch.setattr(index_file, "CHANGES_MIN", 0)  # the next change is one too many
    _top1(spec, runs[1], 0.25)
    folded = _read(spec, runs)
    assert not changes.exists()
    assert json.loads(index.read_text())["generation"] != generation, "a whole index, a new generation"
    values = folded.frame.set_index("run_id")["test.top1"]
    assert (values[runs[0].run_id], values[runs[1].run_id]) == (0.5, 0.25)
    assert _read(spec, runs).frame.drop(columns="path").equals(_cold(spec, runs).drop(columns="path"))


def test_a_new_column_writes_the_whole_index(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    index, changes = _paths(spec)
    _read(spec, runs)
    path = store.run_path(spec.output_path, runs[0].run_id) / rundir.METRICS
    metrics = json.loads(path.read_text())
    metrics["test"]["top5"] = 0.99
    rundir.write_text(path, json.dumps(metrics))
    again = _read(spec, runs)
    assert "test.top5" in again.frame.columns
    assert not changes.exists() and "test.top5" in json.loads(index.read_text())["columns"]


def _set_metric(spec: SweepSpec, run: RunSpec, section: str, key: str, value: float | None) -> None:
    """Set (None: remove) one value of a run's metrics.json."""
    path = store.run_path(spec.output_path, run.run_id) / rundir.METRICS
    metrics = json.loads(path.read_text())
    if value is None:
        metrics[section].pop(key)
    else:
        metrics[section][key] = value
    rundir.write_text(path, json.dumps(metrics))


def test_a_column_no_run_has_any_more_leaves_with_its_last_run(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    """A cached read drops a metric that left the files (rewritten without it, or its run folder
    moved away) as a cold read never had it: the same frame, no empty column."""
    spec, runs = sweep
    _set_metric(spec, runs[0], "test", "top5", 0.99)
    _set_metric(spec, runs[1], "test", "top3", 0.98)
    assert {"test.top5", "test.top3"} <= set(_read(spec, runs).frame.columns)
    _set_metric(spec, runs[0], "test", "top5", None)  # rewritten without it
    folder = store.run_path(spec.output_path, runs[1].run_id)
    folder.rename(spec.output_path / "moved-away")  # its only run gone from runs/
    again = _read(spec, runs)
    assert "test.top5" not in again.frame.columns and "test.top3" not in again.frame.columns
    assert again.frame.drop(columns="path").equals(_cold(spec, runs).drop(columns="path"))


def _change_file_after_one_change(spec: SweepSpec, runs: list[RunSpec]) -> tuple[Path, dict[str, Any]]:
    """A cold read, runs[3]'s top-1 set to 0.5, a second read: the change file and its document."""
    _, changes = _paths(spec)
    _read(spec, runs)
    _top1(spec, runs[3], 0.5)
    _read(spec, runs)
    return changes, json.loads(changes.read_text())


def _other_generation(doc: dict[str, Any]) -> None:
    doc["generation"] = "0" * len(doc["generation"])


def _other_folder(doc: dict[str, Any]) -> None:
    doc["positions"][:2] = reversed(doc["positions"][:2])  # two rows, each at the other's folder


def _out_of_range(doc: dict[str, Any]) -> None:
    doc["positions"][0] = 10**6


def _repeated(doc: dict[str, Any]) -> None:
    doc["positions"] = [doc["positions"][0]] * len(doc["positions"])


def _flag_position(doc: dict[str, Any]) -> None:
    doc["positions"][0] = True


def _fewer_positions(doc: dict[str, Any]) -> None:
    doc["positions"] = doc["positions"][1:]


def _other_columns(doc: dict[str, Any]) -> None:
    doc["columns"] = list(reversed(doc["columns"]))


def _no_positions(doc: dict[str, Any]) -> None:
    del doc["positions"]


@pytest.mark.parametrize(
    "edit",
    [
        _other_generation,
        _other_folder,
        _out_of_range,
        _repeated,
        _flag_position,
        _fewer_positions,
        _other_columns,
        _no_positions,
    ],
)
def test_a_change_file_that_does_not_fit_is_ignored(
    sweep: tuple[SweepSpec, list[RunSpec]], edit: Callable[[dict[str, Any]], None]
) -> None:
    spec, runs = sweep
    changes, doc = _change_file_after_one_change(spec, runs)
    edit(doc)
    changes.write_text(json.dumps(doc))
    loaded = index_file.load_index(_paths(spec)[0])
    assert loaded.in_changes == set(), "no row of it is taken"
    again = _read(spec, runs)
    assert again.read_runs >= 1, "the changed folder is read again from its files"
    assert again.frame.drop(columns="path").equals(_cold(spec, runs).drop(columns="path"))
    assert again.frame.set_index("run_id").at[runs[3].run_id, "test.top1"] == 0.5


def test_a_changed_row_that_breaks_a_rule_is_read_again(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    """The change file's rows pass the index's own checks: an edited 402.58% top-1 is not shown."""
    spec, runs = sweep
    changes, doc = _change_file_after_one_change(spec, runs)
    column = doc["columns"].index("test.top1")
    doc["values"][column] = [4.0258] * len(doc["positions"])
    changes.write_text(json.dumps(doc))
    loaded = index_file.load_index(_paths(spec)[0])
    assert loaded.in_changes and all(loaded.signatures[p] is None for p in loaded.in_changes)
    again = _read(spec, runs)
    assert again.read_runs == len(doc["positions"])
    assert again.frame.drop(columns="path").equals(_cold(spec, runs).drop(columns="path"))
