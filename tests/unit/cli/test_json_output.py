"""`--json`: one object alone on stdout, holding the same numbers as the human output of the command."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from orchestrator import store
from orchestrator.cli import jsonout
from orchestrator.cli.main import main
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir
from trainers.rundir import State


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[dict[str, Any], str]:
    """The command's object; stdout must hold it alone, on one line."""
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 1, out
    obj: dict[str, Any] = json.loads(out)
    assert obj["schema_version"] == jsonout.SCHEMA_VERSION
    return obj, err


def finish(spec: SweepSpec, run: RunSpec, top1: float) -> None:
    """A finished run folder as the trainer leaves it."""
    path = store.run_path(store.sweep_root(spec), run.run_id)
    store.prepare(run, path)
    metrics = {"test": {"top1": top1, "macro_f1": top1 - 0.01}, "complexity": {"gflops": 1.0, "params_m": 2.0}}
    rundir.write_json(path / rundir.METRICS, metrics)
    rundir.update_status(path, State.COMPLETED)


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[Path, SweepSpec, list[RunSpec]]:
    path = write_spec()
    spec = load_spec(path)
    return path, spec, plan(spec)


def test_plan_json_holds_every_run_and_the_counts_the_table_shows(
    capsys: pytest.CaptureFixture[str], sweep: tuple[Path, SweepSpec, list[RunSpec]]
) -> None:
    path, spec, runs = sweep
    obj, _ = run_json(capsys, "plan", str(path))
    _, human, _ = run_cli(capsys, "plan", str(path), "--all")
    assert obj["command"] == "plan" and obj["sweep"] == "tiny"
    assert obj["runs_total"] == len(runs) == int(re.search(r"tiny: (\d+) runs", human).group(1))  # type: ignore[union-attr]
    assert [r["run_id"] for r in obj["runs"]] == [r.run_id for r in runs]
    assert all(r["run_id"] in human and r["name"] in human for r in obj["runs"])
    assert obj["ablations"] == {"Baseline": 2, "+ Aug": 2, "+ Aug + Dropout": 2}
    assert "Baseline x2" in human and "+ Aug + Dropout x2" in human
    assert obj["axes"]["seed"] == ["0", "1"] or obj["axes"]["seed"] == [0, 1]
    assert Path(obj["output_dir"]).is_absolute() and Path(obj["runs"][0]["run_dir"]).is_absolute()
    assert obj["runs"][0]["run_dir"] == str(store.run_path(spec.output_path, runs[0].run_id).absolute())


def test_status_json_counts_match_the_human_line(
    capsys: pytest.CaptureFixture[str], sweep: tuple[Path, SweepSpec, list[RunSpec]]
) -> None:
    path, spec, runs = sweep
    finish(spec, runs[0], 0.9)
    finish(spec, runs[1], 0.8)
    obj, _ = run_json(capsys, "status", str(path))
    _, human, _ = run_cli(capsys, "status", str(path))
    assert obj["counts"] == {"completed": 2, "not submitted": 4}
    assert "6 runs: 2 completed, 4 not submitted" in human
    assert obj["runs_total"] == 6 and len(obj["runs"]) == 6  # every run, completed ones too
    assert {r["run_id"] for r in obj["runs"] if r["state"] == "completed"} == {runs[0].run_id, runs[1].run_id}


def test_collect_json_names_the_files_written_and_the_completed_count(
    capsys: pytest.CaptureFixture[str], sweep: tuple[Path, SweepSpec, list[RunSpec]]
) -> None:
    path, spec, runs = sweep
    for index, run in enumerate(runs[:5]):
        finish(spec, run, 0.5 + index / 100)
    obj, _ = run_json(capsys, "collect", str(path), "--no-report")
    code, human, _ = run_cli(capsys, "collect", str(path), "--no-report")
    assert code == 0
    (entry,) = obj["sweeps"]
    assert entry["counts"]["completed"] == 5 and entry["usable"] == 5 and entry["error"] is None
    listed = re.search(r"tables: (.+)", human).group(1).split(", ")  # type: ignore[union-attr]
    assert entry["tables"] == [str(Path(p).absolute()) for p in listed]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in entry["tables"])
    frame = pd.read_csv(entry["runs_csv"])
    assert len(frame) == 6 and int((frame["state"] == "completed").sum()) == 5


def test_collect_json_without_finished_runs_exits_1_with_the_reason(
    capsys: pytest.CaptureFixture[str], sweep: tuple[Path, SweepSpec, list[RunSpec]]
) -> None:
    path, _, _ = sweep
    code, out, _ = run_cli(capsys, "collect", str(path), "--json")
    assert code == 1
    (entry,) = json.loads(out)["sweeps"]
    assert entry["tables"] == [] and entry["error"]


def test_datasets_list_json_names_the_rows_of_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    obj, _ = run_json(capsys, "datasets", "list")
    _, human, _ = run_cli(capsys, "datasets", "list")
    names = [d["name"] for d in obj["datasets"]]
    assert {"cub200", "digits", "combined"} <= set(names)
    first_words = [line.split()[0] for line in human.splitlines()[1:] if line.strip()]
    assert names == first_words
    digits = next(d for d in obj["datasets"] if d["name"] == "digits")
    assert digits["source"] == "scikit-learn" and digits["tasks"][0] == "single"


def test_datasets_describe_json_holds_the_split_sizes_printed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    obj, err = run_json(capsys, "datasets", "describe", "digits", "--out", str(tmp_path / "d"))
    (ds,) = obj["datasets"]
    sizes = re.search(r"10 classes; train (\d+), val (\d+), test (\d+)", err)  # the tables go to stderr
    assert sizes is not None
    assert ds["split_sizes"] == {"train": int(sizes[1]), "val": int(sizes[2]), "test": int(sizes[3])}
    assert sum(row["total"] for row in ds["counts"] if row["level"] == "class") == 1797
    written = pd.read_csv(tmp_path / "d" / "class_counts.csv")
    assert [row["train"] for row in ds["counts"]] == written["train"].tolist()
    assert all(Path(p).is_absolute() and Path(p).exists() for p in ds["files"])


def test_profile_json_matches_profile_csv(
    capsys: pytest.CaptureFixture[str], sweep: tuple[Path, SweepSpec, list[RunSpec]]
) -> None:
    path, _, _ = sweep
    obj, _ = run_json(capsys, "profile", str(path))
    frame = pd.read_csv(obj["profile_csv"])
    assert len(obj["cells"]) == len(frame) == 3
    assert [c["gflops"] for c in obj["cells"]] == pytest.approx(frame["complexity.gflops"].tolist())
    assert [c["ablation"] for c in obj["cells"]] == frame["ablation"].tolist()
    _, human, _ = run_cli(capsys, "profile", str(path))
    assert f"3 of 3 cells, {obj['distinct_models']} distinct models" in human


FOLDER_SPEC = """
name: folders
output_dir: {out}
defaults:
  data: {{image_size_px: 32, dataset: {{name: imagefolder, root: {root}{shape}}}}}
grid: {{backbone: [test_resnet, test_byobnet]}}
ablations: {{Baseline: []}}
"""


def test_profile_json_of_cells_that_could_not_be_profiled(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An ImageFolder whose files are not here and whose class count is not declared: each cell has
    its error and nulls (it was a ValueError on the unknown class count), and no model counts as
    profiled; the human line says the same."""
    path = tmp_path / "folders.yaml"
    path.write_text(FOLDER_SPEC.format(out=tmp_path / "out", root=tmp_path / "absent", shape=""))
    obj, _ = run_json(capsys, "profile", str(path))
    assert obj["distinct_models"] == 0 and len(obj["cells"]) == 2
    assert all(cell["classes"] is None and cell["label_shape"] is None for cell in obj["cells"])
    assert all(cell["gflops"] is None and cell["error"] for cell in obj["cells"])
    _, human, _ = run_cli(capsys, "profile", str(path))
    assert "0 of 2 cells, 0 distinct models profiled" in human and "; 2 not profiled" in human


def test_declared_label_shapes_size_the_heads_without_the_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`label_shape` in the defaults' dataset and in a site file's (report 001's hierarchical set):
    excluded from dumps so no run id hashes it, it was lost on the way to the runs' configs, and
    `profile` could size nothing without the files."""
    path = tmp_path / "folders.yaml"
    shape = ", label_shape: {classes: 14}"
    path.write_text(FOLDER_SPEC.format(out=tmp_path / "out", root=tmp_path / "absent", shape=shape))
    obj, _ = run_json(capsys, "profile", str(path))
    assert [(cell["classes"], cell["error"]) for cell in obj["cells"]] == [(14, ""), (14, "")]
    assert obj["distinct_models"] == 2 and all(cell["gflops"] for cell in obj["cells"])
    study = Path(__file__).resolve().parents[3] / "sweeps" / "hierarchical_birds_dogs.yaml"
    obj, _ = run_json(capsys, "profile", str(study), f"output_dir={tmp_path / 'study'}")
    # Its site file declares 3 super-classes and 87 sub-classes with a novel slot.
    assert [(cell["label_shape"], cell["classes"], cell["error"]) for cell in obj["cells"]] == [
        ("3 / 87+novel", None, "")
    ] * 3


def test_submit_dry_run_json_selects_what_submit_would_run(
    capsys: pytest.CaptureFixture[str], sweep: tuple[Path, SweepSpec, list[RunSpec]]
) -> None:
    path, spec, runs = sweep
    finish(spec, runs[0], 0.9)
    obj, _ = run_json(capsys, "submit", str(path), "--dry-run")
    _, human, _ = run_cli(capsys, "submit", str(path), "--dry-run")
    assert "6 runs planned; 5 to run, 1 completed" in human
    assert obj["runs_planned"] == 6 and obj["skipped"] == {"completed": 1}
    assert [r["run_id"] for r in obj["to_run"]] == [r.run_id for r in runs[1:]]
    assert obj["arrays"] == []
    slurm, _ = run_json(capsys, "submit", str(path), "--dry-run", "--executor", "slurm")
    assert sum(a["tasks"] for a in slurm["arrays"]) == 5
    assert [i for a in slurm["arrays"] for i in a["runs"]] == [r.run_id for r in runs[1:]]
    assert (
        slurm["arrays"][0]["script"].startswith("#!/bin/bash") and "#SBATCH --array=0-4" in slurm["arrays"][0]["script"]
    )
    assert not (spec.output_path / store.SWEEP_FILE).exists()  # a dry run writes nothing


def test_json_errors_are_one_line_on_stderr_and_nothing_on_stdout(
    capsys: pytest.CaptureFixture[str], sweep: tuple[Path, SweepSpec, list[RunSpec]], tmp_path: Path
) -> None:
    path, _, _ = sweep
    code, out, err = run_cli(capsys, "submit", str(path), "--json")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--json needs --dry-run" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("epochs: 1", "epochz: 1"))
    code, out, err = run_cli(capsys, "plan", str(bad), "--json")
    assert code == 2 and out == "" and err.startswith("error:") and "epochz" in err


def test_json_lines_are_ascii_and_read_back_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    """A bidi override from a run file was written raw (the line printed reordered in a terminal);
    astral characters must come out as JSON's surrogate-pair escapes, not Python's \\U form."""
    text = "node\u202eevil \U0001f600 \x1b[31m"
    obj = jsonout.CollectOut(sweeps=[])
    assert jsonout.emit(lambda: (obj.model_copy(update={"command": text}), 3)) == 3
    out = capsys.readouterr().out
    assert out.isascii() and out.count("\n") == 1
    assert json.loads(out)["command"] == text
