"""`orchestrate cancel` beside a running `submit --follow`, on the real dev cluster: the follow stops and
submits nothing more, neither the runs it held back (queue limits) nor those of an unconfirmed array the
cancel scancelled by job name; `scancel` of an array by hand is kept too (launch/cancels.py, judge.py)."""

from __future__ import annotations

import getpass
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cluster_leftovers import set_max_submit
from config_helpers import DEV_PROFILE, FAST_RUNS
from rich.console import Console
from slurm_wrappers import busy_controller, stop

from orchestrator import launch, store
from orchestrator.cli.main import main
from orchestrator.cli.submit import CANCELLED
from orchestrator.launch import judge, slurmcli, unconfirmed
from orchestrator.launch.failures import Failure
from orchestrator.launch.limits import queue_limits
from orchestrator.launch.slurm import SlurmLauncher
from orchestrator.store import run_states
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
SMALL = [item for item in FAST_RUNS if not item.startswith("grid.seed")]
PENDING = "slurm.additional_parameters.begin=now+1hour"
"""Tasks stay pending: what is checked is the queue and the manifest, not training."""
STOP = "stopped this submit --follow: it submits nothing more"


def _follow(path: Path, overrides: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`orchestrate submit --follow` (polling every second) in a process of its own, its output into `log`."""
    command = [sys.executable, "-m", "orchestrator.cli", "submit", str(path), *overrides]
    command += ["--executor", "slurm", "--profile", DEV_PROFILE, "--follow", "--interval", "1"]
    env = {**(env or os.environ), "PYTHONPATH": str(REPO)}
    with log.open("w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)


def _until(probe: Callable[[], bool], seconds: float, what: str, follow: subprocess.Popen[str], log: Path) -> None:
    """Wait for `probe` (files and the queue another process changes), at most `seconds`."""
    deadline = time.monotonic() + seconds
    while not probe():
        if follow.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {what} after {seconds:.0f} s (follow exit {follow.poll()}):\n{log.read_text()}")
        time.sleep(0.2)  # polling what another process writes, not standing in for an event


def _ended(follow: subprocess.Popen[str], log: Path, seconds: float = 120, code: int = 0) -> str:
    """The follow's output once it has ended by itself (it must, within `seconds`) with exit status `code`."""
    try:
        ended = follow.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"submit --follow still runs {seconds:.0f} s after the cancel:\n{log.read_text()}")
    out = log.read_text()
    assert ended == code, out
    return out


@pytest.mark.slurm
def test_cancel_stops_a_follow_which_submits_neither_held_nor_cancelled_runs(
    write_spec: Callable[..., Path],
    tmp_path: Path,
    cleanup: list[Callable[[], object]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """MaxSubmitJobs lets 2 of 6 runs in; `cancel` beside the follow: the follow ends at its next poll
    without submitting the 4 it held back (nor the 2 cancelled ones), and says so. A later submit runs
    the cancelled runs again."""
    overrides = [*SMALL, "grid.seed=[0, 1]", PENDING]
    path = write_spec()
    spec = load_spec(path, overrides)
    runs, root = plan(spec), spec.output_path
    assert len(runs) == 6
    user = getpass.getuser()
    cleanup.append(lambda: set_max_submit(user, -1))
    set_max_submit(user, queue_limits().queued_by_user + 2)  # jobs queued by others of this user count too
    log = tmp_path / "follow.log"
    follow = _follow(path, overrides, log)
    cleanup.append(lambda: slurmcli.cancel(store.read_manifest(root).get("arrays", {})))
    cleanup.append(lambda: stop(follow))
    _until(lambda: "held back: 4 runs" in log.read_text(), 120, "first submission", follow, log)
    (first,) = store.read_manifest(root)["arrays"]
    cancelled = store.read_manifest(root)["arrays"][first]["runs"]

    capsys.readouterr()
    assert main(["cancel", str(path), *overrides]) == 0
    assert "cancelled 2 pending/running jobs in 1 array(s)" in capsys.readouterr().out
    out = _ended(follow, log, code=CANCELLED)
    assert STOP in out and "`submit` again runs what is left, the cancelled runs too" in out
    assert list(store.read_manifest(root)["arrays"]) == [first], f"submitted after the cancel:\n{out}"
    assert slurmcli.active_ids(store.read_manifest(root)["arrays"]) == {}

    again = launch.submit(spec, runs, "slurm", profile=DEV_PROFILE)  # the user's new request runs them again
    assert list(again.submitted)[:2] == cancelled, "in plan order, the cancelled runs first"


@pytest.mark.slurm
def test_cancel_of_an_unconfirmed_array_beside_a_follow_is_not_submitted_again(
    write_spec: Callable[..., Path],
    tmp_path: Path,
    cleanup: list[Callable[[], object]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """sbatch reports failure although the controller took the array, and squeue cannot say (the follow
    keeps the array unconfirmed, polling on); `cancel` scancels it by name but cannot forget it (the
    follow holds the lock). Once squeue answers again, the follow must not take the runs for never
    submitted: it forgets the array, submits nothing and ends."""
    overrides = [*SMALL, "grid.seed=[0]", PENDING]
    path = write_spec()
    spec = load_spec(path, overrides)
    root = spec.output_path
    down = tmp_path / "squeue-down"
    down.touch()
    bin_dir = busy_controller(tmp_path / "bin", down)
    log = tmp_path / "follow.log"
    follow = _follow(path, overrides, log, {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    names: list[str] = []
    cleanup.append(lambda: slurmcli.cancel(store.read_manifest(root).get("arrays", {})))
    cleanup.append(lambda: [slurmcli.run(["scancel", "-u", getpass.getuser(), f"--name={n}"]) for n in names])
    cleanup.append(lambda: stop(follow))
    _until(lambda: "squeue cannot say whether the controller took" in log.read_text(), 120, "sbatch", follow, log)
    names.extend(entry["job_name"] for entry in unconfirmed.pending(store.read_manifest(root)).values())
    assert len(names) == 1

    capsys.readouterr()
    assert main(["cancel", str(path), *overrides]) == 0  # the real squeue and scancel: this process's PATH
    said = capsys.readouterr().out
    assert f"cancelled unconfirmed array(s) {names[0]} (3 runs)" in said and "kept in the manifest while" in said
    assert slurmcli.run(["squeue", "-h", "-u", getpass.getuser(), f"--name={names[0]}"]).stdout.strip() == ""
    down.unlink()  # squeue answers the follow again: its next poll may settle the array
    out = _ended(follow, log, code=CANCELLED)
    assert STOP in out and f"cancelled and forgot unconfirmed array(s) {names[0]} (3 runs)" in out, out
    manifest = store.read_manifest(root)
    assert not manifest["arrays"] and not unconfirmed.pending(manifest), f"submitted again:\n{out}"
    assert not list((root / store.SUBMITIT_DIR / unconfirmed.PICKLES).glob("*.pkl"))


@pytest.mark.slurm
def test_scancel_by_hand_of_a_pending_array_is_kept_by_the_follow(
    write_spec: Callable[..., Path], tmp_path: Path, cleanup: list[Callable[[], object]]
) -> None:
    """`scancel ARRAY` right after sbatch: for its first seconds sacct names the cancelled array `A`, not its
    tasks `A_i`, or nothing at all. Judged as a follow's poll judges, from the scancel until accounting
    has the tasks' rows, no run is ever to be submitted again; the follow itself ends, its runs left."""
    overrides = [*SMALL, "grid.seed=[0]", PENDING]
    path = write_spec()
    spec = load_spec(path, overrides)
    runs, root = plan(spec), spec.output_path
    log = tmp_path / "follow.log"
    follow = _follow(path, overrides, log)
    cleanup.append(lambda: slurmcli.cancel(store.read_manifest(root).get("arrays", {})))
    cleanup.append(lambda: stop(follow))
    _until(lambda: bool(store.read_manifest(root)["arrays"]), 120, "submission", follow, log)
    (first,) = store.read_manifest(root)["arrays"]
    slurmcli.cancel([first])
    chosen = SlurmLauncher(spec, Console(file=io.StringIO()), DEV_PROFILE)
    deadline, seen = time.monotonic() + 60, []
    while True:
        records = run_states.inspect(runs, root)
        plans = judge.failed_before(records, root)
        decisions = [
            judge.decide(chosen.policy, plans.get(r.run.run_id), r, chosen.config, None, set()) for r in records
        ]
        seen.append([(plans[r.run.run_id].verdict, plans[r.run.run_id].unrecorded) for r in records])
        assert not any(d.retry for d in decisions), f"a cancelled run would be submitted again: {seen[-1]}"
        if all(v is not None and v.failure is Failure.CANCELLED for v, _ in seen[-1]):
            break
        assert time.monotonic() < deadline, f"accounting never recorded the cancel: {seen[-1]}"
        time.sleep(0.1)  # asking accounting again, not standing in for an event
    out = _ended(follow, log)
    assert list(store.read_manifest(root)["arrays"]) == [first], f"submitted again:\n{out}"
    assert out.count("cancelled (scancel), not retried") == 3, out
    assert STOP not in out and "every run submitted and out of the queue (3 submitted)" in out
