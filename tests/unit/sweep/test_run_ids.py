"""Run identity across versions: the ids of every study in sweeps/ are pinned, and run folders
named under an older id rule (commit 883557d hashed loader and thread settings) are recognised,
so upgrading retrains nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import launch, store
from orchestrator.cli.main import main
from orchestrator.launch.base import select
from orchestrator.results import reader
from orchestrator.store import run_ids, run_states
from orchestrator.sweep.plan import plan, run_id_of
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir
from trainers.config import TrainConfig
from trainers.rundir import State

REPO = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "golden_run_ids.json"
LEGACY = Path(__file__).resolve().parents[2] / "fixtures" / "legacy_883557d"
LEGACY_COMMIT = "883557d"


def test_every_sweep_plans_its_pinned_ids() -> None:
    """A changed id retrains a finished study: change golden_run_ids.json only on purpose
    (regenerate: `python tests/unit/sweep/test_run_ids.py > tests/golden/golden_run_ids.json`)."""
    pinned = json.loads(GOLDEN.read_text())
    assert pinned == pinned_ids(), "run ids changed; regenerate golden_run_ids.json only if that was the point"


def pinned_ids() -> dict[str, list[str]]:
    """Every sweep file's run ids in plan order, as checkout-independent ids (see _portable_id)."""
    return {
        path.name: [_portable_id(run.config) for run in plan(load_spec(path, max_runs=None))]
        for path in sorted((REPO / "sweeps").glob("*.yaml"))
    }


def _portable_id(config: TrainConfig) -> str:
    """The run id, with this checkout's folder in a path field replaced by `<repo>`: a file beside a
    sweep (transfer_imagenette's class map) is hashed by its absolute path, so that study's ids
    depend on where the repository is checked out; every other id is the run id itself."""
    text = json.dumps(config.model_dump(mode="json"))
    return run_id_of(TrainConfig.model_validate_json(text.replace(str(REPO), "<repo>")))


def _legacy_sweep(tmp_path: Path, *overrides: str) -> SweepSpec:
    """The fixture's spec over a copy of its run folders, with today's loader settings changed."""
    out = tmp_path / "results" / "legacy"
    shutil.copytree(LEGACY / "runs", out / "runs")
    return load_spec(LEGACY / "legacy.yaml", [f"output_dir={out}", *overrides])


def test_folders_of_the_old_id_rule_count_as_done(tmp_path: Path) -> None:
    # The user switches loader workers on (the old rule would have retrained everything).
    spec = _legacy_sweep(tmp_path, "defaults.data.num_workers=1", "defaults.torch_threads=2")
    runs = plan(spec)
    folders = {path.name for path in (spec.output_path / "runs").iterdir()}
    assert len(runs) == len(folders) == 4
    assert not folders & {run.run_id for run in runs}, "the fixture must hold ids of the old rule"
    records = run_states.inspect(runs, spec.output_path)
    assert [r.state for r in records] == [State.COMPLETED] * 4
    assert {r.path.name for r in records} == folders
    assert select(records).todo == []
    assert launch.submit(spec, runs, "local").completed == []
    assert {path.name for path in (spec.output_path / "runs").iterdir()} == folders, "nothing new was trained"


def test_status_and_collect_see_the_old_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _legacy_sweep(tmp_path)
    args = [str(LEGACY / "legacy.yaml"), f"output_dir={spec.output_path}"]
    assert main(["status", *args]) == 0
    assert "4 runs: 4 completed" in capsys.readouterr().out
    assert main(["collect", *args]) == 0
    frame = reader.read_sweep(spec.output_path, plan(spec)).frame
    assert frame["in_plan"].all() and (frame["state"] == "completed").all()
    assert sorted(frame["run_id"]) == sorted(run.run_id for run in plan(spec))
    table = (spec.output_path / "tables" / "table.md").read_text()
    assert "| Baseline |" in table and "n per cell: 2 seeds" in table and "/2 seeds)" not in table


def test_a_failed_old_folder_is_rerun_in_place_and_the_id_cache_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _legacy_sweep(tmp_path)
    runs = plan(spec)
    first = run_states.inspect(runs, spec.output_path)
    rundir.update_status(first[0].path, State.FAILED, error="simulated")
    assert (spec.output_path / store.RUN_IDS_FILE).exists()

    def unreadable(trainer: dict[str, object]) -> str:
        raise AssertionError("recomputed an id the cache holds")

    monkeypatch.setattr(run_ids, "run_id_of_recorded", unreadable)
    again = run_states.inspect(runs, spec.output_path)
    assert [r.path for r in again] == [r.path for r in first]
    assert [r.path for r in select(again).todo] == [first[0].path]


def test_a_slurm_job_of_an_old_folder_is_not_submitted_twice(tmp_path: Path) -> None:
    """The manifest of a submission made before the upgrade names the old id: its live job still owns the run."""
    spec = _legacy_sweep(tmp_path)
    records = run_states.inspect(plan(spec), spec.output_path)
    rundir.update_status(records[0].path, State.RUNNING, slurm_job_id="41_0")
    records = run_states.inspect(plan(spec), spec.output_path)
    chosen = select(records, force=True, in_slurm={records[0].path.name})
    assert chosen.skipped["pending or running in SLURM"] == 1
    assert records[0].path not in [r.path for r in chosen.todo]


def test_an_own_id_folder_wins_over_an_old_one(tmp_path: Path) -> None:
    spec = _legacy_sweep(tmp_path)
    runs = plan(spec)
    own = store.run_path(spec.output_path, runs[0].run_id)
    store.prepare(runs[0], own)
    assert run_states.inspect(runs, spec.output_path)[0].path == own


@pytest.mark.slow
def test_folders_written_by_the_code_of_883557d_are_recognised(tmp_path: Path) -> None:
    """The same, from that commit's own code (git archive of the history; skipped without it)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", LEGACY_COMMIT, "orchestrator", "trainers"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {LEGACY_COMMIT} is not in this clone's history")
    old = tmp_path / "old"
    old.mkdir()
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    out = tmp_path / "results" / "legacy"
    shutil.copy(LEGACY / "legacy.yaml", tmp_path / "legacy.yaml")
    command = [sys.executable, "-m", "orchestrator.cli", "submit", "legacy.yaml", f"output_dir={out}"]
    env = {"PYTHONPATH": str(old), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run([*command, "--executor", "local"], cwd=tmp_path, env=env, check=True, capture_output=True)
    spec = load_spec(tmp_path / "legacy.yaml", [f"output_dir={out}", "defaults.data.num_workers=1"])
    records = run_states.inspect(plan(spec), out)
    assert [r.state for r in records] == [State.COMPLETED] * 4
    assert not {r.path.name for r in records} & {r.run.run_id for r in records}


if __name__ == "__main__":
    print(json.dumps(pinned_ids(), indent=1))
