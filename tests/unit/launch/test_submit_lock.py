"""One submitter per sweep: a second concurrent submit is refused, naming the holder; a dead
holder's lock never blocks. Every test uses real, concurrent processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from config_helpers import FAST_RUNS
from polling import wait_for

from orchestrator.launch.lock import LOCK_FILE
from trainers import rundir

REPO = Path(__file__).resolve().parents[3]
HOLD = """
import sys
from pathlib import Path
from orchestrator.launch.lock import hold
with hold(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin (or kills this process)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _holder(folder: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env()
    )
    assert process.stdout is not None and process.stdout.readline() == "held\n"  # blocks until it holds
    return process


def _try_lock(folder: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from pathlib import Path; from orchestrator.launch.lock import hold\n"
    code += "with hold(Path(sys.argv[1])): print('got it')"
    return subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=_env(), timeout=60
    )


def test_a_second_process_is_refused_and_told_who_holds_the_lock(tmp_path: Path) -> None:
    first = _holder(tmp_path)
    try:
        second = _try_lock(tmp_path)
        assert second.returncode != 0 and "got it" not in second.stdout
        last = second.stderr.strip().splitlines()[-1]
        assert f"SweepLocked: {tmp_path} is being submitted by pid {first.pid} on {socket.gethostname()}" in last
        assert "since 20" in last
    finally:
        first.kill()
        first.wait()
    # The holder was SIGKILLed: no handler released anything, the kernel dropped the lock.
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == first.pid, "the stale file is still there"
    assert _try_lock(tmp_path).stdout == "got it\n"


def test_the_lock_is_released_when_its_holder_ends_normally(tmp_path: Path) -> None:
    first = _holder(tmp_path)
    first.communicate("")  # closes stdin: the holder leaves its `with` block and exits
    assert first.returncode == 0
    assert _try_lock(tmp_path).stdout == "got it\n"


def _submit(sweep: Path, *overrides: str) -> list[str]:
    cli = [sys.executable, "-m", "orchestrator.cli", "submit", str(sweep)]
    return [*cli, *FAST_RUNS, *overrides, "--executor", "local"]


@pytest.mark.slow
def test_a_second_concurrent_submit_of_a_sweep_trains_nothing(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    """The race of the issue: while the first submit trains run 1, run 2 waits as `pending`, which
    a second submit would take as not done and train as well."""
    sweep = write_spec()
    long = ["ablations={Baseline: [], + Aug: [aug]}", "defaults.epochs=10000"]
    first = subprocess.Popen(_submit(sweep, *long), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock, runs = tmp_path / "out" / LOCK_FILE, tmp_path / "out" / "runs"

    def histories() -> list[list[str]]:
        statuses = [rundir.read_json(path) or {} for path in sorted(runs.glob(f"*/{rundir.STATUS}"))]
        return sorted([h["state"] for h in status.get("history", [])] for status in statuses)

    def first_is_training() -> bool:
        assert first.poll() is None, "the first submit ended early"
        return lock.exists() and histories() == [["pending"], ["pending", "running"]]

    try:
        wait_for(first_is_training, 600, "the first submit to train run 1 with run 2 pending")
        second = subprocess.run(_submit(sweep, *long), env=_env(), capture_output=True, text=True, timeout=600)
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {first.pid} on {socket.gethostname()}" in lines[0], second.stderr
        assert histories() == [["pending"], ["pending", "running"]], "the second submit started a run"
    finally:
        first.send_signal(signal.SIGKILL)  # the lock goes stale: the next submit must not be blocked
        first.wait()
    third = subprocess.run(_submit(sweep, "ablations={Baseline: []}"), env=_env(), capture_output=True, text=True)
    assert third.returncode == 0, third.stdout + third.stderr


@pytest.mark.parametrize("kind", ["symlink", "dangling", "fifo", "folder"])
def test_a_lock_file_that_is_not_a_plain_file_is_refused_untouched(tmp_path: Path, kind: str) -> None:
    """A symlink at submit.lock was opened through: its target truncated and overwritten with the
    holder (a dangling one created its target); a FIFO blocked, a folder was a traceback."""
    from orchestrator.launch.lock import hold
    from orchestrator.sweep.errors import SpecError

    precious, lock = tmp_path / "precious.txt", tmp_path / "sweep" / LOCK_FILE
    lock.parent.mkdir()
    if kind in ("symlink", "dangling"):
        if kind == "symlink":
            precious.write_text("my notes\n")
        lock.symlink_to(precious)
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    with pytest.raises(SpecError, match="the sweep's lock must be a plain file"), hold(lock.parent):
        pass
    assert (precious.read_text() == "my notes\n") if kind == "symlink" else not precious.exists()
