"""SIGTERM to a local `orchestrate submit` (`timeout 1h orchestrate submit ...`, `kill PID`, a session's end)
ends it as Ctrl-C does: the worker is stopped, one `interrupted` line, exit 130, and the run reads
`interrupted`. It used to vanish without a word (exit -15). Runs `orchestrate` as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from config_helpers import FAST_RUNS
from polling import wait_for

from trainers import rundir

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LONG = [*FAST_RUNS, "defaults.epochs=100000"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def _running_pid(out: Path) -> int | None:
    """The pid status.json records for a run in the `running` state (the worker's), once one has one."""
    for path in (out / "runs").glob(f"*/{rundir.STATUS}"):
        status = rundir.read_json(path) or {}
        if status.get("state") == "running" and isinstance(status.get("pid"), int):
            return int(status["pid"])
    return None


def test_sigterm_stops_a_local_submit_as_ctrl_c_does(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = write_spec()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "cli.log"
    with log.open("wb") as handle:
        cli = subprocess.Popen(
            _cli("submit", str(spec), "--executor", "local", *LONG),
            cwd=tmp_path,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        pid = wait_for(lambda: cli.poll() is None and _running_pid(tmp_path / "out"), 600, "a running run")
        worker = psutil.Process(int(pid))  # type: ignore[call-overload]
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=120) == 130, log.read_text()
    finally:
        if cli.poll() is None:
            cli.kill()
    assert "interrupted: finished runs are kept" in log.read_text()
    _gone, alive = psutil.wait_procs([worker], timeout=60)
    assert not alive, "the worker outlived the submit"
    status = subprocess.run(
        _cli("status", str(spec), *LONG), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert "1 interrupted" in status.stdout, status.stdout
