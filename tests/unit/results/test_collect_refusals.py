"""collect on folders a user or a stray process made odd: a run folder or sweep folder whose name
is no UTF-8, an unplanned run's config.yaml holding YAML-only values (a date, `!!binary`, `!!set`),
a user's file where an output goes. Each is a named problem or a one-line refusal, never a
traceback; a refusal comes before any file is written."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tables_fixture import FOUR_RUNS_SPEC, finished_sweep

from orchestrator.cli.main import main
from orchestrator.results import collect, outputs, reader
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SpecError, SweepSpec
from trainers import rundir

Sweep = tuple[SweepSpec, list[RunSpec]]


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> Sweep:
    return finished_sweep(write_spec(FOUR_RUNS_SPEC.replace("{name}", "odd")))


def _non_utf8(parent: Path, name: bytes) -> Path:
    """A folder under `parent` whose name is bytes that are no UTF-8 (as os.listdir returns it)."""
    path = os.fsencode(parent) + b"/" + name
    os.mkdir(path)
    return Path(os.fsdecode(path))


def _files(root: Path) -> dict[str, bytes]:
    """Every file under `root/tables` and the manifest, by name: what a refused collect must leave as it was."""
    found = {p.relative_to(root).as_posix(): p.read_bytes() for p in (root / "tables").iterdir()}
    return {**found, outputs.MANIFEST: (root / outputs.MANIFEST).read_bytes()}


# ------------------------------------------------------------------ names that are no UTF-8


def test_a_run_folder_named_in_no_utf8_is_a_problem_and_left_out(sweep: Sweep) -> None:
    spec, runs = sweep
    _non_utf8(spec.output_path / "runs", b"bad\xff")
    written = collect.write_tables(spec, spec.output_path)
    assert [(p.run_id, p.reason) for p in written.problems] == [("bad\\xff", reader.NOT_UTF8)]
    text = written.runs_path.read_text(encoding="utf-8")  # written whole, valid UTF-8
    assert "bad" not in text and text.count("\n") == len(runs) + 1
    assert all(path.is_file() for path in written.files)


def test_a_sweep_folder_below_a_folder_named_in_no_utf8_is_collected(sweep: Sweep, tmp_path: Path) -> None:
    spec, runs = sweep
    parent = _non_utf8(tmp_path, b"p\xfeq")
    root = parent / spec.output_path.name
    spec.output_path.rename(root)
    [(snapshot, resolved)] = collect.resolve_target(root, [])
    written = collect.write_tables(snapshot, resolved)
    text = written.runs_path.read_text(encoding="utf-8")
    assert text.count("p\\xfeq/") == len(runs), "the paths are in runs.csv, the byte shown escaped"
    assert written.usage_path is not None and written.usage_path.read_text(encoding="utf-8")


def test_collect_of_every_sweep_goes_on_past_a_folder_named_in_no_utf8(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    texts = {name: FOUR_RUNS_SPEC.replace("{name}", name).replace("{out}", str(tmp_path / "r" / name)) for name in "ab"}
    specs = [finished_sweep(write_spec(text, filename=f"{name}.yaml"))[0] for name, text in texts.items()]
    _non_utf8(specs[0].output_path / "runs", b"bad\xff")
    assert main(["collect", str(tmp_path / "r"), "--no-report"]) == 0
    assert all((spec.output_path / "tables" / "runs.csv").is_file() for spec in specs)


def test_escaped_shows_undecodable_bytes_and_other_lone_surrogates() -> None:
    assert outputs.escaped(os.fsdecode(b"a\xff\x80b")) == "a\\xff\\x80b"
    assert outputs.escaped("x\ud800y") == "x\\ud800y"
    assert outputs.escaped("plain ü") == "plain ü"


# ------------------------------------------------------------------ config.yaml values JSON has not


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("name: 2024-01-01", "name is a YAML date"),
        ("seed: !!binary aGVsbG8=", "seed is a YAML bytes"),
        ("axes: {x: !!set {a: null}}", "axes.x is a YAML set"),
        ("started: 2024-01-01", "started is a YAML date"),  # not a column: refused all the same
        ("axes: {2024-01-01: 1}", "key '2024-01-01' of axes is a YAML date"),
    ],
)
def test_an_unplanned_runs_config_of_yaml_only_values_is_a_problem(sweep: Sweep, line: str, reason: str) -> None:
    spec, runs = sweep
    stray = spec.output_path / "runs" / "stray"
    stray.mkdir()
    (stray / rundir.CONFIG).write_text(f"run_id: stray\n{line}\n")
    for _ in range(2):  # read, then from the index it wrote
        written = collect.write_tables(spec, spec.output_path)
        [problem] = written.problems
        assert problem.run_id == "stray" and problem.reason.startswith(f"{rundir.CONFIG}: {reason}")
        assert written.usable == len(runs)
    assert json.loads((spec.output_path / collect.INDEX_FILE).read_text())["names"][-1] == "stray"


# ------------------------------------------------------------------ refusals before any write


def test_an_edited_table_is_refused_before_runs_csv_is_written(sweep: Sweep) -> None:
    spec, runs = sweep
    root = spec.output_path
    collect.write_tables(spec, root)
    (root / "tables" / "table.md").write_text("my own notes\n")
    rundir.write_json(root / "runs" / runs[0].run_id / rundir.METRICS, {"test": {"top1": 0.5}})  # runs.csv differs
    before = _files(root)
    with pytest.raises(SpecError, match=r"table\.md: exists and was not written by collect"):
        collect.write_tables(spec, root)
    assert _files(root) == before


def test_a_foreign_figure_is_refused_before_the_tables_are_written(sweep: Sweep) -> None:
    spec, runs = sweep
    root = spec.output_path
    collect.write_tables(spec, root, report=True)
    (root / "report" / "img" / "theirs.png").write_bytes(b"not ours")
    rundir.write_json(root / "runs" / runs[0].run_id / rundir.METRICS, {"test": {"top1": 0.5}})
    before = _files(root)
    with pytest.raises(SpecError, match=r"theirs\.png: exists and was not written by collect"):
        collect.write_tables(spec, root, report=True)
    assert _files(root) == before


def test_overrides_with_a_results_folder_are_refused_not_ignored(
    sweep: Sweep, capsys: pytest.CaptureFixture[str]
) -> None:
    """`collect FOLDER k=v` exited 0 as if the overrides had been applied: the folder's sweep.yaml is
    what ran, and overrides apply to a sweep file."""
    spec, _ = sweep
    root = spec.output_path
    collect.write_tables(spec, root)
    before = _files(root)
    for argv in (["collect", str(root), "defaults.epochs=3"], ["collect", str(root), "totally bogus", "x.y.z=["]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "apply to a sweep file" in err and err.count("\n") == 1, err
    assert _files(root) == before


def test_runs_csv_shows_control_characters_of_run_files_as_text(sweep: Sweep) -> None:
    """A device name with ANSI and OSC sequences and a stray folder named with ESC reached runs.csv
    raw (`cat runs.csv` ran them; 384 ESC bytes in the red team's copy)."""
    spec, runs = sweep
    path = spec.output_path / "runs" / runs[0].run_id / rundir.METRICS
    metrics = json.loads(path.read_text())
    metrics["provenance"]["device"] = "X\x1b[31mRED\x1b]0;TITLE\x07 \u202eGPU"
    rundir.write_json(path, metrics)
    (spec.output_path / "runs" / "stray\x1b[2J").mkdir()
    written = collect.write_tables(spec, spec.output_path)
    text = written.runs_path.read_text(encoding="utf-8")
    assert not any(char in text for char in "\x1b\x07\u202e")
    assert "X\\x1b[31mRED\\x1b]0;TITLE\\x07 \\u202eGPU" in text and "stray\\x1b[2J" in text
