"""An array sbatch reported failed although slurmctld took it, and squeue failing too when submit asked for
it by name, on the real dev cluster: `status` shows its runs held by that job name, `cancel` removes the
job from the queue by name and forgets it, and the next submit adopts nothing (launch/unconfirmed.py)."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from config_helpers import DEV_PROFILE, FAST_RUNS
from slurm_wrappers import busy_controller
from submitit.core.utils import FailedJobError

from orchestrator import launch, store
from orchestrator.cli.main import main
from orchestrator.launch import slurmcli, unconfirmed
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

# `begin` keeps the tasks pending: what is checked is the queue and the manifest, not training.
OVERRIDES = [*(item for item in FAST_RUNS if not item.startswith("grid.seed")), "grid.seed=[0]"]
OVERRIDES.append("slurm.additional_parameters.begin=now+1hour")


def _queued(squeue: str, name: str) -> dict[str, str]:
    """The real queue's live jobs named `name`: job id -> state."""
    out = subprocess.run(
        [squeue, "-h", "-a", "-u", getpass.getuser(), f"--name={name}", "-o", "%i|%T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = dict(line.strip().split("|", 1) for line in out.splitlines() if line.strip())
    return {job: state for job, state in jobs.items() if state in slurmcli.ACTIVE_STATES}


@pytest.mark.slurm
def test_status_shows_and_cancel_removes_an_array_sbatch_and_squeue_left_unsettled(
    write_spec: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_spec()
    spec = load_spec(path, OVERRIDES)
    runs, root = plan(spec), spec.output_path
    squeue = shutil.which("squeue")
    assert squeue is not None
    down = tmp_path / "squeue-down"
    down.touch()
    real_path = os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{busy_controller(tmp_path / 'bin', down, once=True)}{os.pathsep}{real_path}")
    names: list[str] = []
    try:
        with pytest.raises(FailedJobError, match="squeue cannot say whether the controller took array"):
            launch.submit(spec, runs, "slurm", profile=DEV_PROFILE)
        assert not down.exists(), "the settle after sbatch's error met the failing squeue"
        names = [entry["job_name"] for entry in unconfirmed.pending(store.read_manifest(root)).values()]
        assert len(names) == 1 and not store.read_manifest(root)["arrays"]
        (job,) = _queued(squeue, names[0])  # slurmctld took it: one array, queued though not recorded
        capsys.readouterr()

        assert main(["status", str(path), *OVERRIDES, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["counts"] == {"unconfirmed": len(runs)}, out["counts"]
        assert {row["job_name"] for row in out["runs"]} == {names[0]} and not out["finished"]
        assert main(["status", str(path), *OVERRIDES]) == 0
        assert f"unconfirmed: array {names[0]} ({len(runs)} runs)" in capsys.readouterr().out

        assert main(["cancel", str(path), *OVERRIDES]) == 0
        assert _queued(squeue, names[0]) == {}, "the job left the real queue"
        said = capsys.readouterr().out
        assert f"cancelled unconfirmed array(s) {names[0]} ({len(runs)} runs)" in said and "forgotten" in said
        assert not unconfirmed.pending(store.read_manifest(root))
        assert not list((root / store.SUBMITIT_DIR / unconfirmed.PICKLES).glob("*.pkl"))

        monkeypatch.setenv("PATH", real_path)  # sbatch answers again: the runs go in a new array
        again = launch.submit(spec, runs, "slurm", profile=DEV_PROFILE)
        assert set(again.submitted) == {run.run_id for run in runs}
        assert job.split("_", 1)[0] not in store.read_manifest(root)["arrays"], "the cancelled job was not adopted"
    finally:
        for name in names:  # the one this test's submit queued, whatever the assertions said
            slurmcli.run(["scancel", "-u", getpass.getuser(), f"--name={name}"])
        slurmcli.cancel(store.read_manifest(root).get("arrays", {}))
