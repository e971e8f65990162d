"""Issue 22, items 8, 9, 10 and 14: hostile run folders are named problems, never tracebacks, hangs
or silent wrong numbers; a completed run with a broken metrics.json is run again."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deadline import deadline
from tables_fixture import FOUR_RUNS_SPEC, finished_sweep

from orchestrator import store
from orchestrator.cli.main import main
from orchestrator.launch import base, status
from orchestrator.results import collect, reader, run_files
from orchestrator.store import run_states
from orchestrator.sweep import bounded
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SpecError, SweepSpec
from trainers import rundir
from trainers.rundir import State


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    return finished_sweep(write_spec(FOUR_RUNS_SPEC.replace("{name}", "hostile")), epochs=2)


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A read that blocks (a FIFO opened for reading waits for a writer) fails the test instead."""
    with deadline(60):
        yield


def folder(spec: SweepSpec, run: RunSpec) -> Path:
    return store.run_path(spec.output_path, run.run_id)


def metrics_of(spec: SweepSpec, run: RunSpec) -> dict[str, object]:
    return json.loads((folder(spec, run) / rundir.METRICS).read_text())


def problems_for(spec: SweepSpec, run: RunSpec) -> list[str]:
    written = collect.write_tables(spec, spec.output_path)
    return [p.reason for p in written.problems if p.run_id == run.run_id]


def value_of(spec: SweepSpec, run: RunSpec, column: str) -> object:
    frame = reader.read_sweep(spec.output_path, plan(spec)).frame.set_index("run_id")
    return frame.at[run.run_id, column] if column in frame.columns else None


# ----------------------------------------------------------------- item 8: tracebacks -> problems


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"test": {"top1": ' + "9" * 30 + "}}", "an integer of 30 digits"),
        ('{"test": {"top1": ' + "9" * 5000 + "}}", "an integer of 5000 digits"),
        ('{"test": {"top1": 0.9}, "complexity": {"gflops": "abc"}}', 'complexity.gflops = "abc" is not a number'),
        ('{"test": {"top1": 0.9}, "timing": {"wall_s": "abc"}}', 'timing.wall_s = "abc" is not a number'),
        ('{"test": {"top1": 0.9}, "timing": {"wall_s": 1e300}}', "timing.wall_s = 1e+300 is larger than 1e15"),
        ('{"test": {"top1": 0.9}, "provenance": {"num_processes": "4"}}', 'num_processes = "4" is not an integer'),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_bad_values_are_named_problems(sweep: tuple[SweepSpec, list[RunSpec]], text: str, reason: str) -> None:
    spec, runs = sweep
    (folder(spec, runs[0]) / rundir.METRICS).write_text(text)
    assert any(reason in p for p in problems_for(spec, runs[0])), problems_for(spec, runs[0])
    assert main(["collect", str(spec.output_path), "--no-report"]) == 0
    assert main(["status", str(spec.source)]) == 0


def test_report_survives_text_where_times_and_counts_go(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    bad = {"test": {"top1": 0.9}, "timing": {"wall_s": "abc"}, "provenance": {"num_processes": "x"}}
    rundir.write_json(folder(spec, runs[0]) / rundir.METRICS, bad)
    written = collect.write_tables(spec, spec.output_path, report=True)
    assert written.report_path is not None and written.report_path.is_file()


def test_corrupt_manifest_is_named_by_status_and_refused_by_submit(
    sweep: tuple[SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, _runs = sweep
    (spec.output_path / store.MANIFEST_FILE).write_text('{"runs": {"x": ')
    assert main(["status", str(spec.source)]) == 0
    out = capsys.readouterr().out
    assert "manifest.json: truncated or invalid JSON" in out and "Traceback" not in out
    with pytest.raises(store.ManifestError, match=r"manifest\.json: truncated .* check squeue"):
        store.read_manifest(spec.output_path, strict=True)
    (spec.output_path / store.MANIFEST_FILE).write_text('{"runs": {"a": {"job_id": "1; rm"}}, "arrays": []}')
    manifest = store.read_manifest(spec.output_path)
    assert manifest["runs"] == {} and manifest["arrays"] == {}
    assert "2 entries not of its shape" in (store.manifest_problem(spec.output_path) or "")


def test_a_folder_or_fifo_named_like_a_submission_record(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, _ = sweep
    (spec.output_path / "submissions" / "zzzz.yaml").mkdir()
    os.mkfifo(spec.output_path / "submissions" / "zzzzz.yaml")
    assert main(["collect", str(spec.output_path), "--no-report"]) == 0
    assert collect.load_snapshot(spec.output_path).name == "hostile"


def test_pid_out_of_range_is_a_problem_not_an_overflow(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    path = folder(spec, runs[1])
    rundir.update_status(path, State.RUNNING, host=os.uname().nodename, pid=10**30)
    record = run_states.inspect(runs, spec.output_path)[1]
    assert record.problem == "status.json: an integer of 31 digits"  # os.kill(10**30, 0) was an OverflowError
    rundir.write_json(path / rundir.STATUS, {"state": "running", "host": os.uname().nodename, "pid": 2**40})
    record = run_states.inspect(runs, spec.output_path)[1]
    assert record.problem is not None and "pid 1099511627776 is not a process id" in record.problem
    assert base.is_stale(record) is False and record.state is State.MISSING
    assert runs[1].run_id in {r.run.run_id for r in base.select(run_states.inspect(runs, spec.output_path)).todo}
    assert status.sweep_status(runs, spec.output_path).counts["unknown"] == 1


def test_over_long_csv_field_in_a_smoke_history(tmp_path: Path) -> None:
    (tmp_path / rundir.HISTORY).write_text("epoch,train_images_per_s\n1," + "9" * 200_000 + "\n")
    assert run_files.throughput(tmp_path) is None
    with pytest.raises(bounded.Unreadable, match=r"history\.csv: invalid CSV \(field larger than field limit"):
        bounded.read_csv_rows(tmp_path / rundir.HISTORY)


def test_state_that_is_not_text(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    (folder(spec, runs[0]) / rundir.STATUS).write_text('{"state": {"a": 1}}')
    assert "unknown state {'a': 1}" in (run_states.inspect(runs, spec.output_path)[0].problem or "")


# ------------------------------------------------------------- item 9: no silent wrong numbers


def test_duplicate_key_is_a_problem_not_the_last_value(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    (folder(spec, runs[0]) / rundir.METRICS).write_text('{"test": {"top1": 0.1, "top1": 0.99}}')
    assert any('key "top1" written twice' in p for p in problems_for(spec, runs[0]))
    assert value_of(spec, runs[0], "test.top1") is None or value_of(spec, runs[0], "test.top1") != 0.99


def test_another_runs_metrics_is_not_counted(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    copied = {"run_id": runs[1].run_id, **metrics_of(spec, runs[1])}
    rundir.write_json(folder(spec, runs[0]) / rundir.METRICS, copied)
    assert any(f'written by run "{runs[1].run_id}"' in p for p in problems_for(spec, runs[0]))
    assert run_states.inspect(runs, spec.output_path)[0].state is State.MISSING  # run again
    rundir.write_json(folder(spec, runs[0]) / rundir.METRICS, {"run_id": runs[0].run_id, **metrics_of(spec, runs[1])})
    assert problems_for(spec, runs[0]) == []


def test_symlinked_run_folder_or_metrics_is_not_read(sweep: tuple[SweepSpec, list[RunSpec]], tmp_path: Path) -> None:
    spec, runs = sweep
    (folder(spec, runs[0]) / rundir.METRICS).unlink()
    (folder(spec, runs[0]) / rundir.METRICS).symlink_to(folder(spec, runs[1]) / rundir.METRICS)
    assert any("metrics.json is a symbolic link" in p for p in problems_for(spec, runs[0]))
    alias = spec.output_path / "runs" / "zz-alias"
    alias.symlink_to(folder(spec, runs[1]))
    written = collect.write_tables(spec, spec.output_path)
    assert any(p.run_id == "zz-alias" and "symbolic link" in p.reason for p in written.problems)


def test_same_size_same_mtime_rewrite_is_read_again(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    path = folder(spec, runs[0]) / rundir.METRICS
    index = spec.output_path / collect.INDEX_FILE
    reader.read_sweep(spec.output_path, runs, index)
    before = os.stat(path)
    text = path.read_text()
    assert '"top1": 0.9,' in text
    path.write_text(text.replace('"top1": 0.9,', '"top1": 0.2,'))  # same length
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size
    again = reader.read_sweep(spec.output_path, runs, index)
    assert again.read_runs == 1
    assert again.frame.set_index("run_id").at[runs[0].run_id, "test.top1"] == 0.2


def test_an_edited_index_cannot_put_numbers_in_a_table(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    index = spec.output_path / collect.INDEX_FILE
    reader.read_sweep(spec.output_path, runs, index)
    data = json.loads(index.read_text())
    column = data["columns"].index("test.top1")
    data["values"][column] = [4.0258] * len(data["names"])
    index.write_text(json.dumps(data))
    frame = reader.read_sweep(spec.output_path, runs, index).frame
    assert frame["test.top1"].max() <= 1.0
    assert "402.58" not in collect.write_tables(spec, spec.output_path).markdown


@pytest.mark.parametrize("value", ['"1e3"', "true", '"12"', "[1]"])
def test_gflops_that_are_not_numbers_are_not_read_as_numbers(
    sweep: tuple[SweepSpec, list[RunSpec]], value: str
) -> None:
    spec, runs = sweep
    (folder(spec, runs[0]) / rundir.METRICS).write_text(
        '{"test": {"top1": 0.9}, "complexity": {"gflops": ' + value + ', "params_m": 2.0}}'
    )
    problems = problems_for(spec, runs[0])
    if value != "[1]":  # a list is no scalar value: it is not read at all
        assert any("complexity.gflops" in p and "is not a number" in p for p in problems), problems
    frame = reader.read_sweep(spec.output_path, runs).frame.set_index("run_id")
    assert frame.at[runs[0].run_id, "complexity.params_m"] == 2.0
    assert str(frame.at[runs[0].run_id, "complexity.gflops"]) in ("nan", "None")  # not 1000.0, not 1.0


def test_metrics_keys_cannot_set_a_rows_own_columns(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    rundir.update_status(folder(spec, runs[0]), State.FAILED, error="x")
    rundir.write_json(folder(spec, runs[0]) / rundir.METRICS, {"state": "completed", "test": {"top1": 0.9}})
    frame = reader.read_sweep(spec.output_path, runs).frame.set_index("run_id")
    assert frame.at[runs[0].run_id, "state"] == "failed"


# ------------------------------------------------------------------------ item 10: no hangs, bounded


@pytest.mark.parametrize("name", [rundir.METRICS, rundir.STATUS, rundir.HISTORY, rundir.CONFIG])
def test_fifo_in_a_run_folder_never_blocks(sweep: tuple[SweepSpec, list[RunSpec]], name: str) -> None:
    spec, runs = sweep
    path = folder(spec, runs[0]) / name
    path.unlink()
    os.mkfifo(path)
    assert any(f"{name} is a FIFO, not a file" in p for p in problems_for(spec, runs[0])) or name == rundir.HISTORY
    assert main(["status", str(spec.source)]) == 0
    assert run_states.epochs_done(folder(spec, runs[0])) == (0 if name == rundir.HISTORY else 2)
    assert run_files.throughput(folder(spec, runs[0])) is None
    written = collect.write_tables(spec, spec.output_path, report=name == rundir.HISTORY)
    assert written.runs_path.is_file()


def test_dev_zero_and_sparse_giants_are_not_read(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    metrics = folder(spec, runs[0]) / rundir.METRICS
    metrics.unlink()
    metrics.symlink_to("/dev/zero")
    history = folder(spec, runs[1]) / rundir.HISTORY
    with history.open("r+b") as handle:
        handle.truncate(1 << 30)  # 1 GiB, sparse
    start = time.perf_counter()
    written = collect.write_tables(spec, spec.output_path)
    assert time.perf_counter() - start < 30
    assert any("metrics.json is a symbolic link" in p.reason for p in written.problems)
    assert run_states.epochs_done(folder(spec, runs[1])) == 0
    with pytest.raises(bounded.Unreadable, match=r"history\.csv: 1,073,741,824 bytes, more than the 64 MiB"):
        bounded.read_bytes(history)
    with pytest.raises(bounded.Unreadable, match=r"zero is a device, not a file"):
        bounded.read_bytes(Path("/dev/zero"))


def test_alias_bomb_in_an_unplanned_runs_config(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, _runs = sweep
    stray = spec.output_path / "runs" / "stray"
    stray.mkdir()
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    (stray / rundir.CONFIG).write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    written = collect.write_tables(spec, spec.output_path)
    assert time.perf_counter() - start < 30
    assert any(p.run_id == "stray" and "a YAML alias" in p.reason for p in written.problems)


def test_deep_yaml_spec_is_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("name: x\ndefaults: " + "[" * 3000 + "]" * 3000 + "\n")
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: invalid YAML: nested too deeply") and err.count("\n") == 1


# ------------------------------------------------------------- item 14: broken results run again


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"test": {"top1": 0.9', "truncated or invalid JSON"),
        ('{"test": {"top1": 4.2}}', "test.top1 = 4.2 is outside [0, 1]"),
        ('{"complexity": {"gflops": 1.0}}', "has no test scores"),
        (None, "no metrics.json"),
    ],
)
def test_completed_run_with_broken_metrics_is_run_again(
    sweep: tuple[SweepSpec, list[RunSpec]], text: str | None, reason: str
) -> None:
    spec, runs = sweep
    metrics = folder(spec, runs[0]) / rundir.METRICS
    if text is None:
        metrics.unlink()
    else:
        metrics.write_text(text)
    record = run_states.inspect(runs, spec.output_path)[0]
    assert record.state is State.MISSING and record.problem is not None
    assert record.problem.startswith("completed, but") and reason in record.problem
    assert runs[0].run_id in {r.run.run_id for r in base.select(run_states.inspect(runs, spec.output_path)).todo}
    assert status.sweep_status(runs, spec.output_path).counts["unknown"] == 1


def test_corrupt_snapshot_is_a_spec_error(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, _ = sweep
    snapshot = spec.output_path / store.SWEEP_FILE
    snapshot.unlink()
    os.mkfifo(snapshot)
    with pytest.raises(SpecError, match=r"sweep\.yaml is a FIFO, not a file"):
        collect.load_snapshot(spec.output_path)


def test_sweep_yaml_edited_after_submit_is_named(
    sweep: tuple[SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, _runs = sweep
    snapshot = spec.output_path / store.SWEEP_FILE
    assert store.snapshot_problem(spec.output_path) is None
    snapshot.write_text(snapshot.read_text().replace("+ Aug", "+ Better"))  # relabels a row
    with pytest.raises(SpecError, match=r"sweep\.yaml was changed after submit wrote it"):
        collect.load_snapshot(spec.output_path)
    assert main(["collect", str(spec.output_path), "--no-report"]) == 2
    assert main(["status", str(spec.source)]) == 0
    assert "sweep.yaml was changed after submit wrote it" in capsys.readouterr().out


@pytest.mark.parametrize("make", ["fifo", "garbage"])
def test_profile_csv_that_is_no_csv(sweep: tuple[SweepSpec, list[RunSpec]], make: str) -> None:
    spec, _ = sweep
    path = spec.output_path / "profile.csv"
    if make == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b'a,"b\n' + bytes(range(256)))
    assert main(["collect", str(spec.output_path), "--no-report"]) == 0
