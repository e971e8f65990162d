"""`orchestrate cancel` racing a plain `submit` on the real dev cluster: the cancel looks at the queue while
the submit's sbatch is in flight (a wrapped sbatch holds the call until the cancel is done); the submit
must scancel that array itself and submit none of its later arrays (launch/cancels.py, arrays.py)."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from config_helpers import DEV_PROFILE, FAST_RUNS
from deadline import deadline
from slurm_wrappers import stop

from orchestrator import store
from orchestrator.cli import submit as cli_submit
from orchestrator.cli.main import main
from orchestrator.launch import slurmcli, unconfirmed
from orchestrator.sweep.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
SMALL = [item for item in FAST_RUNS if not item.startswith("grid.seed")]
PENDING = "slurm.additional_parameters.begin=now+1hour"
"""Tasks stay pending: what is checked is the queue and the manifest, not training."""


def _held_sbatch(folder: Path, marks: Path) -> Path:
    """An sbatch whose first call says so (`marks/in-sbatch`) and waits for `marks/cancelled` (at most 120 s)
    before it submits with the real sbatch; later calls are the real sbatch at once."""
    real = shutil.which("sbatch")
    assert real is not None
    folder.mkdir()
    body = (
        f'if [ ! -e "{marks}/in-sbatch" ]; then\n  touch "{marks}/in-sbatch"\n  i=0\n'
        f'  while [ ! -e "{marks}/cancelled" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\nfi\n'
        f'exec "{real}" "$@"\n'
    )
    (folder / "sbatch").write_text(f"#!/bin/sh\n{body}")
    (folder / "sbatch").chmod(0o755)
    return folder


def _ours(prefix: str) -> list[str]:
    """Job ids of this user's queued jobs whose name starts with `prefix` (this test's sweep alone)."""
    out = slurmcli.run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%A|%j"]).stdout
    return sorted({line.split("|", 1)[0] for line in out.splitlines() if line.partition("|")[2].startswith(prefix)})


def _leave_no_job(prefix: str) -> None:
    """scancel every job of the sweep, then wait (at most 60 s) until squeue lists none of them."""
    with deadline(60):
        while jobs := _ours(prefix):
            slurmcli.cancel(jobs)
            time.sleep(0.5)  # asking the controller again, not standing in for an event
    assert _ours(prefix) == []


@pytest.mark.slurm
def test_an_array_sbatch_sent_while_cancel_looked_is_scancelled_and_no_later_one_goes_in(
    write_spec: Callable[..., Path],
    tmp_path: Path,
    cleanup: list[Callable[[], object]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three runs, one array each. The cancel runs while sbatch 1 is in flight: it finds the array neither in
    the queue nor by its job name (not there yet). The submit then scancels it and calls sbatch no more."""
    name = f"race-{uuid.uuid4().hex[:8]}"
    overrides = [*SMALL, "grid.seed=[0]", PENDING, "slurm.max_array_size=1"]
    path = write_spec(name=name)
    root = load_spec(path, overrides).output_path
    marks = tmp_path / "marks"
    marks.mkdir()
    bin_dir = _held_sbatch(tmp_path / "bin", marks)
    cleanup.append(lambda: _leave_no_job(f"orch-{name}-"))
    log = tmp_path / "submit.log"
    command = [sys.executable, "-m", "orchestrator.cli", "submit", str(path), *overrides]
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    with log.open("w") as out:
        submit = subprocess.Popen(
            [*command, "--executor", "slurm", "--profile", DEV_PROFILE], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    cleanup.append(lambda: stop(submit))
    with deadline(180):
        while not (marks / "in-sbatch").exists():
            assert submit.poll() is None, log.read_text()
            time.sleep(0.1)  # waiting for the other process's file, not standing in for an event

    capsys.readouterr()
    assert main(["cancel", str(path), *overrides]) == 0  # the real squeue and scancel: this process's PATH
    said = capsys.readouterr().out
    (marks / "cancelled").touch()
    assert "cancelled 0 pending/running jobs in 0 array(s)" in said, said
    assert f"a submit of the sweep holds its lock (pid {submit.pid} on " in said, said

    try:
        code = submit.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"submit still runs 120 s after the cancel:\n{log.read_text()}")
    out = log.read_text()
    assert code == cli_submit.CANCELLED, out
    assert "stopped this submit: it submits nothing more" in out, out
    manifest = store.read_manifest(root)
    assert len(manifest["arrays"]) == 1, f"sbatch was called again after the cancel:\n{out}"
    assert not unconfirmed.pending(manifest), out
    assert slurmcli.active_ids(manifest["arrays"]) == {}, f"the array sent beside the cancel survived:\n{out}"
    assert _ours(f"orch-{name}-") == [], out
