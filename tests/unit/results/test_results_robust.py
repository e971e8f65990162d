"""Broken run folders (issue 13): collect never raises, names the broken run, tabulates the others."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tables_fixture import finished_sweep

from orchestrator import store
from orchestrator.cli.main import main
from orchestrator.launch import base
from orchestrator.results import collect, reader, tables
from orchestrator.results import index as row_index
from orchestrator.store import run_states
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SpecError, SweepSpec
from trainers import rundir
from trainers.rundir import State

SPEC = """
name: robust
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid: {{backbone: [resnet10t], dataset: [digits], seed: [0, 1, 2]}}
modifiers: {{aug: {{data.augment: {{rotate_deg: 10}}}}}}
ablations: {{Baseline: [], + Aug: [aug]}}
tables: [{{complexity: false, formats: [md, tex, html, csv]}}]
"""


def _metrics(path: Path, text: str | bytes) -> None:
    (path / rundir.METRICS).write_bytes(text.encode() if isinstance(text, str) else text)


def _top1(value: str) -> Callable[[Path], None]:
    return lambda path: _metrics(path, '{"test": {"top1": ' + value + ', "macro_f1": 0.5}}')


# (case, how the + Aug seed-0 folder is broken, what the problem says)
CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("metrics truncated", lambda p: _metrics(p, '{"test": {"top1": 0.9'), "metrics.json: truncated or invalid JSON"),
    ("metrics not utf-8", lambda p: _metrics(p, b'{"test": {"top1": "\xff\xfe"}}'), "metrics.json: not UTF-8"),
    ("metrics a list", lambda p: _metrics(p, "[0.9]"), "metrics.json: a JSON list, not an object"),
    ("top-1 a string", _top1('"0.9"'), 'test.top1 = "0.9" is not a number'),
    ("top-1 NaN", _top1("NaN"), "test.top1 = nan is not finite"),
    ("top-1 null", _top1("null"), "test.top1 = null is not a number"),
    ("top-1 infinity", _top1("Infinity"), "test.top1 = inf is not finite"),
    ("top-1 1e308", _top1("1e308"), "test.top1 = 1e+308 is outside [0, 1]"),
    ("top-1 true", _top1("true"), "test.top1 = true is not a number"),
    ("top-1 missing", lambda p: _metrics(p, '{"test": {"macro_f1": 0.5}}'), "completed without a usable test.top1"),
    ("status truncated", lambda p: (p / rundir.STATUS).write_text('{"state": "compl'), "status.json: truncated"),
    ("unknown state", lambda p: (p / rundir.STATUS).write_text('{"state": "zombie"}'), "unknown state 'zombie'"),
    ("config invalid", lambda p: (p / rundir.CONFIG).write_text("run_id: [\n"), "config.yaml: invalid YAML at line"),
    ("config missing", lambda p: (p / rundir.CONFIG).unlink(), "no config.yaml"),
]


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    return finished_sweep(write_spec(SPEC))


def _victim(runs: list[RunSpec]) -> RunSpec:
    return next(r for r in runs if r.ablation == "+ Aug" and r.seed == 0)


@pytest.mark.parametrize(("case", "breaks", "reason"), CASES, ids=[c[0] for c in CASES])
def test_broken_run_is_named_and_the_others_tabulated(
    sweep: tuple[SweepSpec, list[RunSpec]], case: str, breaks: Callable[[Path], None], reason: str
) -> None:
    spec, runs = sweep
    victim = _victim(runs)
    breaks(store.run_path(spec.output_path, victim.run_id))
    written = collect.write_tables(spec, spec.output_path)
    named = [p for p in written.problems if p.run_id == victim.run_id]
    assert named, f"{case}: the broken run is not named in {written.problems}"
    assert reason in named[0].reason and named[0].name == victim.name, named
    assert written.usable == len(runs) - 1
    [table] = tables.ablation_tables(spec, reader.collect_frame(spec.output_path, runs), runs)
    aug = next(row for row in table.rows if row.label == "+ Aug").cells[0]
    assert aug.n == 2 and aug.broken == 1, f"{case}: {aug}"
    assert "(2/3 seeds, 1 broken)" in written.markdown, "counted apart from missing"
    assert f"{victim.run_id} {victim.name}" in written.markdown, "the table's footnote names it"
    for path in written.files:
        assert victim.run_id in path.read_text() or path.suffix == ".csv", path


def test_a_run_folder_that_is_a_file_and_an_unplanned_broken_folder(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    (spec.output_path / "runs" / "notafolder").write_text("x")
    stray = spec.output_path / "runs" / "0123456789ab"
    stray.mkdir()
    (stray / rundir.CONFIG).write_bytes(b"name: \xff\n")
    written = collect.write_tables(spec, spec.output_path)
    reasons = {p.run_id: p.reason for p in written.problems}
    assert reasons == {"notafolder": "not a folder", "0123456789ab": "config.yaml: not UTF-8 text (byte 6)"}
    assert written.usable == len(runs)


def test_collect_exit_codes_and_problems_section(
    sweep: tuple[SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, runs = sweep
    victim = _victim(runs)
    _metrics(store.run_path(spec.output_path, victim.run_id), "[]")
    assert main(["collect", str(spec.output_path), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "problems (1)" in out and f"{victim.run_id} {victim.name}: metrics.json: a JSON list" in out
    assert "Traceback" not in out
    for run in runs:
        _metrics(store.run_path(spec.output_path, run.run_id), '{"test": {"top1": "high"}}')
    assert main(["collect", str(spec.output_path), "--no-report"]) == 1
    out = capsys.readouterr().out
    assert "robust: nothing usable to tabulate (6 completed, 6 problems)" in out


def test_unknown_state_is_resubmittable_and_status_says_so(
    sweep: tuple[SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, runs = sweep
    victim = _victim(runs)
    (store.run_path(spec.output_path, victim.run_id) / rundir.STATUS).write_text('{"state": "zombie"}')
    records = run_states.inspect(runs, spec.output_path)
    record = next(r for r in records if r.run.run_id == victim.run_id)
    assert record.state is State.MISSING and "unknown state 'zombie'" in str(record.problem)
    assert [r.run.run_id for r in base.select(records).todo] == [victim.run_id], "submit runs it again"
    assert main(["status", str(spec.source)]) == 0
    out = capsys.readouterr().out
    assert "unknown" in out and f"{victim.run_id} {victim.name}: status.json: unknown state 'zombie'" in out


def test_truncated_sweep_yaml_is_an_error_not_a_default_sweep(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, _ = sweep
    path = spec.output_path / store.SWEEP_FILE
    text = path.read_text()
    path.write_text(text[: text.rindex("\n", 0, text.index("ablations")) + 1])  # cut at a line end: valid YAML
    with pytest.raises(SpecError, match=r"sweep.yaml: truncated \(.* holds more of it\)"):
        collect.resolve_target(spec.output_path, [])
    path.write_text(text[: len(text) // 2])
    with pytest.raises(SpecError, match=r"sweep.yaml: (truncated|unreadable)"):
        collect.resolve_target(spec.output_path, [])


def test_empty_history_and_broken_runs_in_the_report(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    victim = _victim(runs)
    _metrics(store.run_path(spec.output_path, victim.run_id), "{")
    for run in runs[:2]:
        (store.run_path(spec.output_path, run.run_id) / rundir.HISTORY).write_text("")
    written = collect.write_tables(spec, spec.output_path, report=True)
    assert written.report_path is not None
    html = written.report_path.read_text()
    assert 'id="problems"' in html and f"{victim.run_id} {victim.name}: metrics.json: truncated" in html


def test_second_collect_reads_only_changed_run_folders(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    root, index = spec.output_path, spec.output_path / collect.INDEX_FILE
    first = reader.read_sweep(root, runs, index)
    assert first.read_runs == len(runs) and index.is_file()
    assert reader.read_sweep(root, runs, index).read_runs == 0
    changed = store.run_path(root, runs[0].run_id)
    rundir.write_json(changed / rundir.METRICS, {"test": {"top1": 0.5, "macro_f1": 0.4}})
    again = reader.read_sweep(root, runs, index)
    assert again.read_runs == 1
    assert again.frame.set_index("run_id").loc[runs[0].run_id, "test.top1"] == 0.5
    assert again.frame.equals(reader.read_sweep(root, runs).frame), "cached rows equal rows read afresh"
    index.write_text("{not json")
    assert reader.read_sweep(root, runs, index).read_runs == len(runs), "a broken index is rebuilt"


def test_index_hashes_a_file_again_only_when_its_stat_moved(tmp_path: Path) -> None:
    """A file hashed well after its last change keeps its digest while its stat holds (no read);
    a same-size rewrite with the mtime set back moves the ctime, and it is hashed again."""
    for name in (rundir.CONFIG, rundir.STATUS, rundir.METRICS):
        (tmp_path / name).write_text('{"a": 1}\n')
    first = row_index.signature(str(tmp_path))
    assert all(isinstance(f, list) and len(f) == 6 for f in first)
    settled = [[*f[:2], "d" * 32, *f[3:5], f[4] + row_index.RACY_NS] for f in first]
    assert row_index.signature(str(tmp_path), settled) == settled, "an unchanged stat is not read again"
    racy = [[*f[:5], f[4] + row_index.RACY_NS - 1] for f in settled]
    assert row_index.signature(str(tmp_path), racy)[0][2] == first[0][2], "hashed just after a change: read again"
    path = tmp_path / rundir.METRICS
    before = os.stat(path)
    path.write_text('{"a": 2}\n')  # same size, and the mtime put back
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    again = row_index.signature(str(tmp_path), settled)
    assert again[:2] == settled[:2] and again[2][2] not in ("d" * 32, first[2][2])


def test_metric_values_are_scores_and_complexity_keeps_its_descriptions() -> None:
    flat = reader.flatten(
        {
            "test": {"top1": 0.9, "loss": 0.3, "macro_f1": 1.5, "top5": False},
            "complexity": {"gflops": 1.2, "counter": "torch.utils.flop_counter.FlopCounterMode", "params_m": -1},
            "provenance": {"device": "cpu"},
        }
    )
    clean, problems = reader.clean_metrics(flat)
    assert clean == {
        "test.top1": 0.9,
        "test.loss": 0.3,
        "complexity.gflops": 1.2,
        "complexity.counter": "torch.utils.flop_counter.FlopCounterMode",
        "provenance.device": "cpu",
    }
    assert problems == [
        "metrics.json: test.macro_f1 = 1.5 is outside [0, 1]",
        "metrics.json: test.top5 = false is not a number",
        "metrics.json: complexity.params_m = -1 is negative",
    ]


def test_the_trainers_memory_fields_read_back_without_problems() -> None:
    """Every key the trainer writes into `timing` has a type the reader accepts (the text key
    `rss_scope` was refused as "not a number", and every run's memory left the usage table)."""
    from trainers.runtime import memory

    timing = memory.summarize([[512.0, -1.0, -1.0, -1.0], [256.0, -1.0, -1.0, -1.0]])
    clean, problems = reader.clean_metrics(reader.flatten({"timing": {**timing, "wall_s": 3.5}}))
    assert problems == []
    assert clean["timing.peak_rss_sum_mib"] == 768.0
    assert isinstance(clean["timing.rss_scope"], str)
