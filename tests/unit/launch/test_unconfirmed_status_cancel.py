"""`status` and `cancel` with an array sbatch did not confirm and squeue could not settle (an `unconfirmed`
entry of manifest.json, launch/unconfirmed.py): status shows its runs held by that job name, never `not
submitted` or their earlier attempt's end; cancel scancels it by name and forgets it with its set-aside
pickles. SLURM's commands are answered by a fake of our own helper (slurmcli.run) that records them."""

from __future__ import annotations

import getpass
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.cli import jsonout
from orchestrator.cli.main import main
from orchestrator.cli.views import status_view
from orchestrator.launch import lock, slurmcli, status, unconfirmed
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir
from trainers.rundir import State


class Slurm:
    """squeue, sacct and scancel as slurmcli.run sees them: no live job; every call recorded."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.scancel_rc = 0

    def run(self, args: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        if args[0] == "scancel" and self.scancel_rc:
            return subprocess.CompletedProcess(args, self.scancel_rc, "", "scancel: error: Socket timed out")
        return subprocess.CompletedProcess(args, 0, "", "")

    def named(self, command: str) -> list[list[str]]:
        """The calls of `command` that name a job (`--name`)."""
        return [c for c in self.calls if c[0] == command and any(a.startswith("--name") for a in c)]


@pytest.fixture
def fake_slurm(monkeypatch: pytest.MonkeyPatch) -> Slurm:
    fake = Slurm()
    monkeypatch.setattr(slurmcli, "run", fake.run)
    monkeypatch.setattr(slurmcli, "available", lambda: True)
    return fake


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[Path, SweepSpec, list[RunSpec]]:
    path = write_spec()
    spec = load_spec(str(path))
    return path, spec, plan(spec)


def _unconfirmed(spec: SweepSpec, runs: list[RunSpec]) -> str:
    """The state an sbatch that failed, then a squeue that failed too, leave: an entry holding `runs` (one per
    task) and each task's pickle set aside. The job name."""
    root = spec.output_path
    root.mkdir(parents=True, exist_ok=True)
    token, name = unconfirmed.job_name(spec.name)
    tasks = [[run.run_id] for run in runs]
    unconfirmed.expect(root, store.read_manifest(root), token, name, tasks, {"folder": str(root / "slurm")})
    for index in range(len(tasks)):
        saved = root / store.SUBMITIT_DIR / unconfirmed.PICKLES / f"{token}_{index}.pkl"
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_bytes(b"pickle")
    return name


def test_status_shows_runs_of_an_unconfirmed_array_held_by_its_job_name(
    fake_slurm: Slurm, sweep: tuple[Path, SweepSpec, list[RunSpec]]
) -> None:
    """The bug: a first submission whose array could not be settled showed `not submitted`, although a
    job of its name may be queued."""
    _, spec, runs = sweep
    name = _unconfirmed(spec, runs[:2])
    current = status.sweep_status(runs, spec.output_path)
    held = [row for row in current.runs if row.run.run_id in {r.run_id for r in runs[:2]}]
    assert [row.state for row in held] == ["unconfirmed", "unconfirmed"]
    assert all(row.job_name == name and row.job_id is None and name in row.detail for row in held)
    assert all("next `submit` or `submit --follow` poll settles it" in row.detail for row in held)
    assert current.counts == {"unconfirmed": 2, "not submitted": len(runs) - 2}
    assert current.unconfirmed == {name: 2}
    assert not current.finished, "a job of theirs may be queued: --watch does not call the sweep finished"
    assert not fake_slurm.named("squeue"), "status settles nothing: no squeue --name, no manifest write"
    assert unconfirmed.pending(store.read_manifest(spec.output_path))


def test_a_retried_run_shows_unconfirmed_not_its_earlier_failure(
    fake_slurm: Slurm, sweep: tuple[Path, SweepSpec, list[RunSpec]]
) -> None:
    """A failed run submitted again into an unconfirmed array showed `failed` with the old job's id."""
    _, spec, runs = sweep
    root = spec.output_path
    fake_run(spec, runs[0], None, state=State.FAILED)
    store.record_array(root, store.read_manifest(root), "12345", {runs[0].run_id: "12345_0"}, {})
    name = _unconfirmed(spec, runs[:1])
    row = status.sweep_status(runs, root).runs[0]
    assert (row.state, row.job_id, row.job_name, row.verdict) == ("unconfirmed", None, name, None)


def test_a_completed_run_is_left_completed(fake_slurm: Slurm, sweep: tuple[Path, SweepSpec, list[RunSpec]]) -> None:
    _, spec, runs = sweep
    fake_run(spec, runs[0], 0.9)
    _unconfirmed(spec, runs[:1])
    assert status.sweep_status(runs, spec.output_path).runs[0].state == "completed"


def test_status_prints_the_array_s_job_name_and_what_settles_it(
    fake_slurm: Slurm, sweep: tuple[Path, SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, spec, runs = sweep
    name = _unconfirmed(spec, runs[:2])
    console = Console(width=400, record=True, file=io.StringIO())
    console.print(status_view(spec.name, status.sweep_status(runs, spec.output_path), False))
    text = console.export_text()
    assert f"unconfirmed: array {name} (2 runs)" in text, text
    assert "`orchestrate cancel` cancels it" in text
    assert main(["status", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["unconfirmed"] == 2 and not out["finished"]
    assert [r["job_name"] for r in out["runs"] if r["state"] == "unconfirmed"] == [name, name]
    assert all(r["job_name"] is None for r in out["runs"] if r["state"] != "unconfirmed")
    jsonout.StatusOut.model_validate(out)  # the documented shape


def test_cancel_scancels_an_unconfirmed_array_by_name_and_forgets_it(
    fake_slurm: Slurm, sweep: tuple[Path, SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    """The bug: cancel scancelled the recorded arrays only; the queued job kept its place, and the entry
    stayed, so the next submit adopted (and trained) the job the user had cancelled."""
    path, spec, runs = sweep
    root = spec.output_path
    name = _unconfirmed(spec, runs[:2])
    assert main(["cancel", str(path)]) == 0
    assert fake_slurm.named("scancel") == [["scancel", "-u", getpass.getuser(), f"--name={name}"]]
    assert not unconfirmed.pending(store.read_manifest(root))
    assert not list((root / store.SUBMITIT_DIR / unconfirmed.PICKLES).iterdir()), "set-aside pickles deleted"
    out = capsys.readouterr().out
    assert f"cancelled unconfirmed array(s) {name} (2 runs)" in out and "forgotten" in out, out
    assert unconfirmed.resolve(root) == [] and not fake_slurm.named("squeue"), "nothing left to adopt"
    assert status.sweep_status(runs, root).counts == {"not submitted": len(runs)}


def test_cancel_with_no_unconfirmed_array_says_nothing_more(
    fake_slurm: Slurm, sweep: tuple[Path, SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, spec, _ = sweep
    assert main(["cancel", str(path)]) == 0
    assert not fake_slurm.named("scancel") and "unconfirmed" not in capsys.readouterr().out
    assert not spec.output_path.exists(), "no lock file or folder made for a sweep never submitted"


def test_cancel_beside_a_running_submit_keeps_the_entry_for_it(
    fake_slurm: Slurm, sweep: tuple[Path, SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A submit holding the sweep's lock writes the manifest from its own copy: cancel scancels, but leaves
    the manifest to that submit (which finds no live job and forgets the entry)."""
    path, spec, runs = sweep
    name = _unconfirmed(spec, runs[:1])
    with lock.hold(spec.output_path):
        assert main(["cancel", str(path)]) == 0
    assert len(fake_slurm.named("scancel")) == 1
    assert unconfirmed.pending(store.read_manifest(spec.output_path))
    out = capsys.readouterr().out
    assert name in out and "kept in the manifest while" in out and "is being submitted by pid" in out, out


def test_a_failing_scancel_keeps_the_entry(
    fake_slurm: Slurm, sweep: tuple[Path, SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, spec, runs = sweep
    name = _unconfirmed(spec, runs[:1])
    fake_slurm.scancel_rc = 1
    assert main(["cancel", str(path)]) != 0
    assert f"scancel --name {name} failed: scancel: error: Socket timed out" in capsys.readouterr().err
    assert unconfirmed.pending(store.read_manifest(spec.output_path)), "its job may still be queued"


@pytest.mark.parametrize("job_name", ["", "orch-", "-a", "orch-tiny-000000000000 --all"])
def test_an_edited_job_name_never_reaches_squeue_or_scancel(
    job_name: str, fake_slurm: Slurm, sweep: tuple[Path, SweepSpec, list[RunSpec]]
) -> None:
    """manifest.json is a file anyone can edit: an empty or foreign name given to `--name` could match other
    jobs of the user (adopted by resolve, or cancelled)."""
    _, spec, runs = sweep
    name = _unconfirmed(spec, runs[:1])
    manifest = store.read_manifest(spec.output_path)
    entry = manifest[unconfirmed.UNCONFIRMED][name.rsplit("-", 1)[1]]
    entry["job_name"] = job_name
    rundir.write_json(spec.output_path / store.MANIFEST_FILE, manifest)
    assert unconfirmed.resolve(spec.output_path) == []
    assert not fake_slurm.named("squeue")
    assert unconfirmed.cancel(spec.output_path).names == [] and not fake_slurm.named("scancel")
