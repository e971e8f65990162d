"""Local executor edge cases: a worker that dies before it reads its job, or while idle, is a failed
run and a replaced worker, never a traceback that ends the submit (and kills the other runs)."""

from __future__ import annotations

import fcntl
import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from orchestrator import store
from orchestrator.launch import lock
from orchestrator.launch.local import _Reporter
from orchestrator.launch.worker import CPUS_KEY, WarmWorker
from orchestrator.store import run_states
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec
from trainers import rundir

BAD_CPUS = {CPUS_KEY: "99999"}
"""The worker fails at once in sched_setaffinity, before it reads any job (as a failed import would)."""


def _noop() -> None:
    return None


def _result(worker: WarmWorker) -> str | None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = worker.poll(0.5, None)
        if done is not None:
            return done.error
    raise AssertionError("no result in 30 s")


def test_a_worker_that_dies_with_its_job_unread_is_a_failed_run(tmp_path: Path) -> None:
    """Linux resets a socket closed with unread data: recv raised ConnectionResetError, not EOFError."""
    worker = WarmWorker(BAD_CPUS)
    try:
        worker.submit(_noop, tmp_path / "logs")
        assert _result(worker) == "the worker process died (exit code 1)"
    finally:
        worker.close(kill=True)


def test_a_killed_worker_is_named_by_its_signal(tmp_path: Path) -> None:
    """SIGKILL (the kernel's OOM killer) read "the worker process died", nothing more."""
    import os
    import signal

    worker = WarmWorker()
    try:
        assert worker.process.pid is not None
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.join(timeout=30)
        worker.submit(_noop, tmp_path / "logs")
        error = _result(worker)
        assert error is not None and error.startswith("the worker process died (exit code -9, SIGKILL: "), error
        assert "out-of-memory" in error
    finally:
        worker.close(kill=True)


def test_a_job_sent_to_a_worker_that_died_idle_is_a_failed_run(tmp_path: Path) -> None:
    """An idle warm worker OOM-killed: the send raised BrokenPipeError out of run_pool."""
    worker = WarmWorker(BAD_CPUS)
    try:
        worker.process.join(timeout=30)
        assert not worker.process.is_alive()
        worker.submit(_noop, tmp_path / "logs")
        assert _result(worker) is not None
    finally:
        worker.close(kill=True)


def test_a_run_whose_status_cannot_be_written_is_failed_and_the_others_go_on(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    """A folder where status.json belongs (or a full disk): recording the failure raised
    IsADirectoryError out of the pool, a traceback that killed every other running run."""
    spec = load_spec(write_spec())
    records = run_states.inspect(plan(spec), store.sweep_root(spec))
    broken = records[0]
    (broken.path / rundir.STATUS).mkdir(parents=True)
    console = Console(file=io.StringIO(), width=10_000, color_system=None)
    progress = Progress(console=console)
    reporter = _Reporter(progress, progress.add_task("runs", total=len(records), detail=""))
    reporter.finished(broken, "OSError: boom")
    reporter.finished(records[1], "ValueError: bad")
    assert [run.run_id for run, _ in reporter.outcome.failed] == [broken.run.run_id, records[1].run.run_id]
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert f"failed {broken.run.name}: OSError: boom" in out


@pytest.mark.parametrize(
    "content",
    [
        '{"pid": 1e400, "host": "h", "user": "u", "since_s": 0}',
        '{"pid": 1, "host": "h", "user": "u", "since_s": 1e300}',
    ],
)
def test_a_held_lock_with_a_hostile_holder_record_is_still_refused_by_name(tmp_path: Path, content: str) -> None:
    """int(inf) raised OverflowError, and time.gmtime of a huge time too: a traceback, not SweepLocked."""
    path = tmp_path / lock.LOCK_FILE
    path.write_text(content)
    with path.open("r+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(lock.SweepLocked, match="is being submitted by"), lock.hold(tmp_path):
            pass


def test_a_running_run_of_an_earlier_boot_is_stale_whatever_holds_its_pid_now(
    write_spec: Callable[..., Path],
) -> None:
    """A workstation that crashed mid-run and rebooted: status.json still says running with a pid some
    new process may hold, and the run was skipped as "running locally" at every submit. The boot id
    recorded beside the pid tells; without one (older runs) the pid alone decides, as before."""
    import os
    import socket

    from orchestrator.launch import pids
    from orchestrator.launch.base import is_stale, select

    spec = load_spec(write_spec())
    root = store.sweep_root(spec)
    run = plan(spec)[0]
    path = store.run_path(root, run.run_id)
    store.prepare(run, path)
    alive = {"host": socket.gethostname(), "pid": os.getpid()}  # a live process holds the pid
    current = pids.boot_id()
    assert current is not None, "Linux has /proc/sys/kernel/random/boot_id"
    for recorded, stale in ((None, False), (current, False), ("0" * 8 + "-earlier-boot", True)):
        rundir.update_status(path, rundir.State.RUNNING, boot_id=recorded, **alive)
        record = run_states.inspect([run], root)[0]
        assert is_stale(record) is stale, recorded
        assert (record.path in [r.path for r in select([record]).todo]) is stale
