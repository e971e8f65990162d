"""Runs a local submit queued (status.json `pending`) and never started: `pending` while a submit of
the sweep runs, `not submitted` once none does (Ctrl-C, a kill, a reboot), with a detail saying that
`submit` runs them (`interrupted` stays the state of the run that was running). They used to read
`pending` for ever. The submit is a real process holding the sweep's lock (launch/lock.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import store
from orchestrator.launch import lock, pids, status
from orchestrator.launch.local import LocalLauncher, _sweep_lock, local_attempt
from orchestrator.launch.status import NEVER_STARTED, sweep_status
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import load_spec

REPO = Path(__file__).resolve().parents[3]
HOLD = """
import sys
from pathlib import Path
from orchestrator.launch.lock import hold
with hold(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin (or kills this process)
"""


def _queued(write_spec: Callable[..., Path]) -> tuple[list[RunSpec], Path]:
    """A sweep whose runs a local submit prepared (config.yaml, status.json `pending`) and never started."""
    spec = load_spec(write_spec())
    runs, root = plan(spec), store.sweep_root(spec)
    for run in runs:
        store.prepare(run, store.run_path(root, run.run_id))
    return runs, root


def _rows(runs: list[RunSpec], root: Path) -> set[tuple[str, str]]:
    return {(row.state, row.detail) for row in sweep_status(runs, root).runs}


def _holder(folder: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None and process.stdout.readline() == "held\n"  # blocks until it holds
    return process


@pytest.mark.parametrize("ending", ["sigkill", "exit"])
def test_pending_while_the_submit_runs_then_not_submitted_once_it_is_gone(
    write_spec: Callable[..., Path], ending: str
) -> None:
    runs, root = _queued(write_spec)
    submit = _holder(root)
    try:
        assert _rows(runs, root) == {("pending", "")}
        assert not sweep_status(runs, root).finished
    finally:
        if ending == "sigkill":
            submit.send_signal(signal.SIGKILL)  # no handler runs: the lock file still names it
        submit.communicate("")
    assert json.loads((root / lock.LOCK_FILE).read_text())["pid"] == submit.pid
    current = sweep_status(runs, root)
    assert _rows(runs, root) == {("not submitted", NEVER_STARTED)}
    assert "`submit` runs it" in NEVER_STARTED
    assert current.counts == {"not submitted": len(runs)} and current.finished
    assert all(row.verdict is None for row in current.runs)


def test_no_lock_file_means_no_submit_runs_them(write_spec: Callable[..., Path]) -> None:
    runs, root = _queued(write_spec)
    assert not (root / lock.LOCK_FILE).exists()
    assert _rows(runs, root) == {("not submitted", NEVER_STARTED)}


def _record(root: Path, **fields: object) -> None:
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "user": "u", "since_s": time.time()}
    (root / lock.LOCK_FILE).write_text(json.dumps({**holder, **fields}))


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({}, "pending"),  # this test's process: alive, started before it "took the lock"
        ({"boot_id": pids.boot_id()}, "pending"),
        ({"since_s": 1000.0}, "not submitted"),  # the pid is held by a process younger than the record: reused
        ({"boot_id": "0" * 8 + "-earlier-boot"}, "not submitted"),  # recorded before a reboot
        ({"pid": 0}, "not submitted"),  # kill(0) would signal this process group: never "alive"
        ({"pid": -1}, "not submitted"),
        ({"pid": 2**40}, "not submitted"),
    ],
)
def test_the_recorded_holder_counts_only_while_its_own_process_runs(
    write_spec: Callable[..., Path], fields: dict[str, object], state: str
) -> None:
    """Runs after a reboot, or after the pid went to another process, are not some live submit's."""
    assert pids.start_time(os.getpid()) is not None, "Linux's /proc says when a process started"
    runs, root = _queued(write_spec)
    _record(root, **fields)
    assert {row.state for row in sweep_status(runs, root).runs} == {state}


def test_a_submit_on_another_host_cannot_be_checked_and_is_named(write_spec: Callable[..., Path]) -> None:
    runs, root = _queued(write_spec)
    _record(root, host="login2", pid=4242)
    expected = "queued by a submit on login2 (pid 4242); if that has ended, `submit` runs it"
    assert _rows(runs, root) == {("pending", expected)}


def test_the_lock_is_read_once_per_sweep(write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap at 10,000 runs: one lock file and one pid for the whole sweep, not per run."""
    runs, root = _queued(write_spec)
    assert len(runs) > 1
    calls: list[Path] = []
    real = lock.live_holder
    monkeypatch.setattr(status.lock, "live_holder", lambda folder: calls.append(folder) or real(folder))
    sweep_status(runs, root)
    assert calls == [root]


def test_status_writes_no_lock_file(write_spec: Callable[..., Path]) -> None:
    """Read-only: status creates no lock file and leaves the holder's record as it was."""
    runs, root = _queued(write_spec)
    sweep_status(runs, root)
    assert not (root / lock.LOCK_FILE).exists()
    _record(root)
    before = (root / lock.LOCK_FILE).stat().st_mtime_ns, (root / lock.LOCK_FILE).read_bytes()
    sweep_status(runs, root)
    assert before == ((root / lock.LOCK_FILE).stat().st_mtime_ns, (root / lock.LOCK_FILE).read_bytes())


def test_a_local_launch_holds_the_lock_unless_this_process_already_does(tmp_path: Path) -> None:
    """`orchestrate submit` holds it before launching; a launch through the Python API must take it, or its
    queued runs would read `not submitted` while it runs them."""
    with _sweep_lock(tmp_path):
        assert lock.held_here(tmp_path)
        holder = lock.live_holder(tmp_path)
        assert holder is not None and holder.pid == os.getpid() and holder.boot_id == pids.boot_id()
        with pytest.raises(lock.SweepLocked), lock.hold(tmp_path):
            pass
    assert not lock.held_here(tmp_path)
    with lock.hold(tmp_path), _sweep_lock(tmp_path):  # the CLI's hold: not taken twice (it would be refused)
        assert lock.held_here(tmp_path)


def test_local_runs_get_the_hang_watchdog_with_the_policys_settings(write_spec: Callable[..., Path]) -> None:
    """The same retry.hang_* settings as a SLURM job, never a requeue; none in debug (a breakpoint is no hang)."""
    spec = load_spec(write_spec(), ["retry.hang_floor_s=7", "retry.hang_slow_phase_s=70", "retry.hang_step_factor=3"])
    launcher = LocalLauncher(spec, console=None, workers=1)  # type: ignore[arg-type]
    launcher.check([])
    expected = {"step_factor": 3.0, "floor_s": 7.0, "slow_phase_s": 70.0, "max_requeues": 0}
    assert launcher.attempt == {"watchdog": expected}
    debug = LocalLauncher(spec, console=None, debug=True)  # type: ignore[arg-type]
    debug.check([])
    assert debug.attempt == {}
    off = load_spec(write_spec(), ["retry.watchdog=false"])
    assert local_attempt(off.retry) == {}
