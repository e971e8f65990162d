"""sbatch failing after slurmctld took the array (`Socket timed out`), on the real dev cluster: the
array is adopted by its job name, never submitted twice (orchestrator/launch/unconfirmed.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from config_helpers import DEV_PROFILE, FAST_RUNS

from orchestrator import launch, store
from orchestrator.launch import slurmcli
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

SMALL = [item for item in FAST_RUNS if not item.startswith("grid.seed")]


def _lying_sbatch(folder: Path) -> Path:
    """A `sbatch` that submits with the real one, then says it failed as a busy controller makes it."""
    real = shutil.which("sbatch")
    assert real is not None
    folder.mkdir()
    script = folder / "sbatch"
    script.write_text(
        f'#!/bin/sh\n"{real}" "$@" > /dev/null 2>&1\n'
        'echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2\n'
        "exit 1\n"
    )
    script.chmod(0o755)
    return folder


@pytest.mark.slurm
def test_an_array_sbatch_reported_failed_is_adopted_not_submitted_again(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `begin` keeps the tasks pending: what is checked is the queue and the manifest, not training.
    spec = load_spec(write_spec(), [*SMALL, "grid.seed=[0]", "slurm.additional_parameters.begin=now+1hour"])
    runs = plan(spec)
    monkeypatch.setenv("PATH", f"{_lying_sbatch(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}")
    try:
        first = launch.submit(spec, runs, "slurm", profile=DEV_PROFILE)
        manifest = store.read_manifest(spec.output_path)
        arrays = manifest["arrays"]
        assert len(arrays) == 1 and not manifest.get("unconfirmed"), manifest
        assert set(first.submitted) == {run.run_id for run in runs}
        again = launch.submit(spec, runs, "slurm", profile=DEV_PROFILE)
        assert again.submitted == {}, "the adopted array's runs are live: nothing submitted twice"
        mine = subprocess.run(
            ["squeue", "-h", "-r", "-u", os.environ.get("USER") or "root", "-o", "%j"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert sum(name.startswith(f"orch-{spec.name}") for name in mine) == len(runs), mine
    finally:
        manifest = store.read_manifest(spec.output_path)
        slurmcli.cancel(manifest.get("arrays", {}))
