"""A symbolic link or a file where a run's folder belongs (or a file named `runs`): `submit` refuses in
one line naming the run and the path before anything is written, never writing through the link or
crashing halfway; `status` names the entry and says what submit does with it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from tables_fixture import finished_sweep

from orchestrator import launch, store
from orchestrator.cli.main import main
from orchestrator.launch import base, status
from orchestrator.store import run_states
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SpecError, SweepSpec, load_spec
from trainers import rundir

USER_CONFIG = "my: own config\n"


def _victim(tmp_path: Path) -> Path:
    """A user's folder, with a config.yaml and a completed status.json of its own."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / rundir.CONFIG).write_text(USER_CONFIG)
    (victim / rundir.STATUS).write_text(json.dumps({"state": "completed"}))
    return victim


def _fresh(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    spec = load_spec(write_spec())
    return spec, plan(spec)


def _plant(spec: SweepSpec, runs: list[RunSpec], kind: str, victim: Path) -> Path:
    """The odd entry `kind` stands for, planted where the first run's folder (or `runs`) belongs."""
    root = spec.output_path
    root.mkdir(parents=True, exist_ok=True)
    if kind == "runs-file":
        (root / "runs").write_text("user data\n")
        return root / "runs"
    (root / "runs").mkdir(exist_ok=True)
    entry = store.run_path(root, runs[0].run_id)
    if kind == "link":
        entry.symlink_to(victim)
    else:
        entry.write_text("user data\n")
    return entry


@pytest.mark.parametrize("kind", ["link", "file", "runs-file"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_submit_refuses_before_writing_anything(
    write_spec: Callable[..., Path], tmp_path: Path, kind: str, dry_run: bool
) -> None:
    spec, runs = _fresh(write_spec)
    entry = _plant(spec, runs, kind, _victim(tmp_path))
    with pytest.raises(SpecError) as caught:
        launch.submit(spec, runs, "local", dry_run=dry_run, console=Console(file=None, quiet=True))
    message = str(caught.value)
    assert "\n" not in message and str(entry) in message and "nothing was written" in message
    assert message.startswith(f"run {runs[0].run_id}: ")
    assert sorted(p.name for p in spec.output_path.iterdir()) == ["runs"]  # no sweep.yaml, submissions, manifest
    assert (tmp_path / "victim" / rundir.CONFIG).read_text() == USER_CONFIG
    assert sorted(p.name for p in (tmp_path / "victim").iterdir()) == [rundir.CONFIG, rundir.STATUS]


def test_submit_command_refuses_a_symlinked_run_folder_in_one_line(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, runs = finished_sweep(write_spec())
    folder = store.run_path(spec.output_path, runs[1].run_id)
    folder.rename(tmp_path / "moved")
    folder.symlink_to(_victim(tmp_path))
    submissions = sorted((spec.output_path / "submissions").iterdir())
    manifest = (spec.output_path / store.MANIFEST_FILE).read_bytes()
    assert main(["submit", str(spec.source), "--executor", "local", "--skip-data-check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: run {runs[1].run_id}: {folder} is a symbolic link to ")
    assert sorted((spec.output_path / "submissions").iterdir()) == submissions
    assert (spec.output_path / store.MANIFEST_FILE).read_bytes() == manifest
    assert (tmp_path / "victim" / rundir.CONFIG).read_text() == USER_CONFIG
    assert folder.is_symlink()  # neither followed nor moved


def test_a_run_slurm_still_owns_is_left_alone_not_refused(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec, runs = _fresh(write_spec)
    _plant(spec, runs, "link", _victim(tmp_path))
    records = run_states.inspect(runs, spec.output_path)
    selection = base.select(records, in_slurm={runs[0].run_id})
    assert runs[0].run_id not in {r.run.run_id for r in selection.todo}
    with pytest.raises(SpecError, match=r"; 5 more run\(s\) refused alike\)$"):
        base.select(records[:1] + [records[0]] * 5)


@pytest.mark.parametrize("kind", ["link", "file"])
def test_status_names_the_entry_and_reads_nothing_through_it(
    write_spec: Callable[..., Path], tmp_path: Path, kind: str
) -> None:
    spec, runs = finished_sweep(write_spec())
    folder = store.run_path(spec.output_path, runs[0].run_id)
    folder.rename(tmp_path / "moved")
    _plant(spec, runs, kind, _victim(tmp_path))
    record = run_states.inspect(runs, spec.output_path)[0]
    assert record.foreign is not None and record.foreign.startswith(f"{folder} is ")
    assert record.status.state == "missing"  # the victim's "completed" status.json was not read
    current = status.sweep_status(runs, spec.output_path)
    assert current.runs[0].state == "unknown" and current.counts["completed"] == len(runs) - 1
    (problem,) = current.problems
    assert problem.run_id == runs[0].run_id
    assert problem.reason.endswith("not a run folder; submit refuses to run it until that is moved aside")
    assert ("a symbolic link to" if kind == "link" else "is a file") in problem.reason


def test_status_names_a_runs_file_for_every_run(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec, runs = _fresh(write_spec)
    runs_file = _plant(spec, runs, "runs-file", _victim(tmp_path))
    current = status.sweep_status(runs, spec.output_path)
    assert current.counts == {"unknown": len(runs)}
    assert {p.reason.split(";")[0] for p in current.problems} == {
        f"{runs_file} is a file, not the folder of run folders"
    }


@pytest.mark.parametrize("inside", ["checkpoints", "logs", "checkpoints/last", "fifo"])
def test_submit_refuses_a_run_folder_with_a_link_or_fifo_inside(
    write_spec: Callable[..., Path], tmp_path: Path, inside: str
) -> None:
    """`checkpoints` linked to a user's folder: the rerun's checkpoint rotation deleted the files
    there (a thesis draft); a linked `logs` got the log appended to a user's file."""
    spec, runs = _fresh(write_spec)
    victim = tmp_path / "victim"
    (victim / "last").mkdir(parents=True)
    (victim / "last" / "thesis.tex").write_text("draft\n")
    folder = store.run_path(spec.output_path, runs[0].run_id)
    (folder / "checkpoints").mkdir(parents=True)
    if inside == "fifo":
        os.mkfifo(folder / rundir.STATUS)
    else:
        target = folder / inside
        if target.exists():
            target.rmdir()
        target.symlink_to(victim / "last" if inside.endswith("last") else victim)
    with pytest.raises(SpecError, match=r"inside the run's folder; submit never writes through or over it"):
        launch.submit(spec, runs, "local", console=Console(file=None, quiet=True))
    assert (victim / "last" / "thesis.tex").read_text() == "draft\n"
    assert sorted(p.name for p in victim.rglob("*")) == ["last", "thesis.tex"]


def test_the_trainer_reads_no_status_through_a_fifo_or_a_link(tmp_path: Path) -> None:
    """rundir.read_json opened status.json for reading: a FIFO there hung the job until its time limit."""
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "real.json").write_text('{"state": "completed"}')
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    (tmp_path / "folder.json").mkdir()
    for name in ("fifo.json", "link.json", "folder.json"):
        with pytest.raises(ValueError):
            rundir.read_json(tmp_path / name)
    assert rundir.read_json(tmp_path / "real.json") == {"state": "completed"}
    assert rundir.read_json(tmp_path / "absent.json") is None
