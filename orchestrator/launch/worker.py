"""Warm workers: long-lived processes that import torch, timm and the trainer once and then run
many runs, one after another.

A fresh process per run pays about 7 s of imports before a few seconds of training; a
12-run demo spent more time starting than training. A worker keeps the imports and isolates
what a run may leave behind: its stdout/stderr go to the run's own log files, the torch
thread count and CUDA cache are restored after each run, and the trainer seeds every RNG
from the run's config (Accelerate's state is reset by the trainer itself). A run that raises
is reported as failed (its traceback in the run's worker_log.err) and the worker carries on;
a worker that dies (segfault, OOM kill, the hang watchdog's kill: launch/watchdog.py) or overruns
the time limit is replaced, and only its current run is failed.

Workers are not daemonic, so a run may start DataLoader workers (a daemonic process may have no
children). Nothing may outlive its worker, however the parent ends:
- each worker leads its own process group, and is stopped as a group (killpg), which takes its
  loader workers with it: on close, on replacement (crash, time limit), at the parent's exit;
- a "lifeline" pipe that the parent never writes to: when the parent dies (SIGKILL, crash,
  SIGTERM, a time-limit kill of the parent), the worker reads EOF and kills its own group;
- Ctrl-C reaches only the parent (the terminal signals its foreground group, which the workers
  left); the parent kills the workers' groups and the interrupted runs read as `interrupted`.

This module is imported on the login side: torch is imported only inside the child process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import util as mp_util
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

POLL_S = 0.5
EXIT_GRACE_S = 60.0
"""How long a worker told to stop may take to exit (its exit hooks) before its group is killed."""
LOG_OUT = "worker_log.out"
LOG_ERR = "worker_log.err"
# TrainJob records these in status.json as the run's log files (as it does submitit's).
ENV_LOG_OUT = "ORCHESTRATE_LOG_OUT"
ENV_LOG_ERR = "ORCHESTRATE_LOG_ERR"
CPUS_KEY = "ORCHESTRATE_WORKER_CPUS"
"""In a worker's environment when several share the machine (run_pool): the CPUs it is pinned to, so its
runs size their loader workers and torch threads from their share, as separate SLURM jobs would, rather
than each from the whole machine (8 GPU workers on 64 cores: 8 x 8 loader workers and 8 x 64 threads)."""


DEATH_WAIT_S = 2.0
"""How long a worker whose pipe closed is given to exit, so its exit status can be named."""


@dataclass(frozen=True)
class Finished:
    """What a worker says about one run: None as error means it completed."""

    error: str | None


class WarmWorker:
    """One child process that runs submitted jobs one at a time."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = dict(env or {})
        self.busy = False
        """A job was submitted and its result not collected yet."""
        self.started_at_s: float | None = None
        """When the current job began running (after the worker's warm-up), for the time limit."""
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no forked CUDA or thread state
        self._conn, child = context.Pipe()
        lifeline, self._lifeline = context.Pipe(duplex=False)  # the parent never sends on it
        # Not daemonic: a daemonic process may not start DataLoader workers.
        self.process = context.Process(target=_serve, args=(child, lifeline, self.env), daemon=False)
        self.process.start()
        child.close()
        lifeline.close()
        _LIVE.add(self)

    def submit(self, job: Any, log_dir: Path) -> None:
        """Start `job` (a picklable callable) with its output in `log_dir`."""
        with contextlib.suppress(OSError):  # a worker that died idle: poll reports and replaces it
            self._conn.send((job, str(log_dir)))
        self.busy, self.started_at_s = True, None

    def poll(self, wait_s: float, timeout_s: float | None = None) -> Finished | None:
        """The result of the current job if it ended within `wait_s`, else None.

        A dead worker or a job past `timeout_s` ends as a failure, and the worker is replaced.
        """
        while self._conn.poll(wait_s):
            try:
                kind, error = self._conn.recv()
            except (EOFError, OSError):  # a worker that died with a job unread resets the connection
                return self._replace(self._death())
            if kind == "started":
                self.started_at_s = time.monotonic()
                continue
            self.busy, self.started_at_s = False, None
            return Finished(error)
        if not self.process.is_alive():
            return self._replace(self._death())
        started = self.started_at_s
        if timeout_s is not None and started is not None and time.monotonic() - started > timeout_s:
            return self._replace(f"timed out after {timeout_s / 60:g} min")
        return None

    def _death(self) -> str:
        """How the worker ended, as its exit status says (after its pipe closed it may still be
        exiting: a short wait), for status.json: a signal by name, SIGKILL with its usual sender."""
        self.process.join(timeout=DEATH_WAIT_S)
        code = self.process.exitcode
        if code is None:
            return "the worker process died"
        if code >= 0:
            return f"the worker process died (exit code {code})"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = ": the kernel's out-of-memory killer sends it, or kill -9" if -code == signal.SIGKILL else ""
        return f"the worker process died (exit code {code}, {name}{why})"

    def _replace(self, reason: str) -> Finished:
        self.close(kill=True)
        self.busy, self.started_at_s = False, None
        self._start()
        return Finished(reason)

    def close(self, kill: bool = False) -> None:
        """Stop the worker: politely (an idle worker exits; given EXIT_GRACE_S for it), or at once
        with `kill`; then whatever is left of its process group (a process a run leaked, or a dead
        worker's loader workers)."""
        if not kill and self.process.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                kill = True
        if kill:
            self._kill_group()
        self.process.join(timeout=10 if kill else EXIT_GRACE_S)
        self._kill_group()
        self._conn.close()
        self._lifeline.close()
        _LIVE.discard(self)

    def _kill_group(self) -> None:
        """SIGKILL the worker's process group, and the worker itself (in case it has not made its
        group yet: then it has no children either)."""
        pid = self.process.pid
        if pid is not None:
            # The group outlives its leader while members remain, and Linux never hands out a
            # pid in use as a group id: this reaches the worker's leftovers, never a stranger.
            with contextlib.suppress(ProcessLookupError, PermissionError):  # no group (any more, or yet)
                os.killpg(pid, signal.SIGKILL)
        if self.process.is_alive():
            self.process.kill()


_LIVE: weakref.WeakSet[WarmWorker] = weakref.WeakSet()
"""Workers not closed yet: killed at the parent's exit."""


def _kill_live() -> None:
    """At the parent's exit, kill the workers still open (an exception path that skipped close)."""
    for worker in list(_LIVE):
        worker.close(kill=True)


# A multiprocessing finalizer, not a plain atexit hook: multiprocessing's exit function runs
# these (exitpriority >= 0) before it joins non-daemonic children, which would wait forever for
# a busy worker.
mp_util.Finalize(None, _kill_live, exitpriority=100)


def _own_group_and_lifeline(lifeline: Connection) -> None:
    """In the worker: lead a process group of its own, and kill that group when the parent dies."""
    os.setpgid(0, 0)
    # A background group writing to the terminal (warnings while warming up) would be stopped
    # under `stty tostop`; the worker's output matters more than the terminal's job control.
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv()  # the parent never sends: this returns when its end closes
        os.killpg(0, signal.SIGKILL)  # this worker and its loader workers

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def _serve(conn: Connection, lifeline: Connection, env: dict[str, str]) -> None:
    """The child's loop: warm up once, then run each job received until told to stop."""
    _own_group_and_lifeline(lifeline)
    env = dict(env)
    if CPUS_KEY in env:  # before torch is imported: its thread pool is sized from the affinity
        os.sched_setaffinity(0, {int(cpu) for cpu in env.pop(CPUS_KEY).split(",")})
    os.environ.update(env)
    # A spawned child inherits "spawn" as its default start method, and DataLoader workers use the
    # default: each started a fresh interpreter that imported torch and the trainer again. On a
    # 16-core GPU node they came up one about every 10 s, 15 per loader: a demo run whose epochs
    # took 6.5 s took 132 s. The platform's default instead, as in a fresh process (a SLURM job).
    multiprocessing.set_start_method(None, force=True)
    import torch

    import trainers.loop.run  # noqa: F401  (the point of a warm worker: import once)

    threads = torch.get_num_threads()
    while True:
        message = conn.recv()
        if message is None:
            # multiprocessing joins non-daemonic children at exit: one a run left behind would
            # hold this exit (and the parent's close) for as long as it lives.
            for child in multiprocessing.active_children():
                child.kill()
            return
        job, log_dir = message
        conn.send(("started", None))
        conn.send(("done", _run_one(job, Path(log_dir))))
        torch.set_num_threads(threads)  # a run may have set its own (torch_threads)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _run_one(job: Any, log_dir: Path) -> str | None:
    """Run one job with its output in its own log files; its one-line error, or None."""
    with _redirected(log_dir):
        try:
            job()
        except BaseException as exc:  # a run's failure must not end the worker
            traceback.print_exc()  # into the run's worker_log.err, where its logs are read
            return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


@contextmanager
def _redirected(log_dir: Path) -> Iterator[None]:
    """Point fds 1 and 2 (Python and C output alike) at the run's log files for the duration."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out, err = log_dir / LOG_OUT, log_dir / LOG_ERR
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.environ.update({ENV_LOG_OUT: str(out), ENV_LOG_ERR: str(err)})
    with out.open("ab") as out_file, err.open("ab") as err_file:
        os.dup2(out_file.fileno(), 1)
        os.dup2(err_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for name in (ENV_LOG_OUT, ENV_LOG_ERR):
                os.environ.pop(name, None)


def run_pool(
    jobs: list[tuple[Any, Path]],
    envs: list[dict[str, str]],
    timeout_s: float | None,
    finished: Callable[[int, str | None], None],
    tick: Callable[[list[int]], None] | None = None,
) -> None:
    """Run (job, log folder) pairs in order on one warm worker per environment, until all ended.

    `finished(index, error)` is called as each job ends; `tick(running indices)` between polls.
    """
    envs = envs[: max(1, min(len(envs), len(jobs)))]
    if len(envs) > 1 and hasattr(os, "sched_getaffinity"):
        envs = [
            {**env, CPUS_KEY: ",".join(map(str, cpus))} for env, cpus in zip(envs, cpu_shares(len(envs)), strict=True)
        ]
    workers = [WarmWorker(env) for env in envs]
    queue = deque(range(len(jobs)))
    current: dict[int, int] = {}  # worker -> job index
    try:
        while queue or current:
            for slot, worker in enumerate(workers):
                if not worker.busy and queue:
                    current[slot] = index = queue.popleft()
                    worker.submit(*jobs[index])
            if tick is not None:
                tick(list(current.values()))
            for slot, worker in enumerate(workers):
                if slot in current:
                    done = worker.poll(POLL_S / len(workers), timeout_s)
                    if done is not None:
                        finished(current.pop(slot), done.error)
    finally:
        for worker in workers:
            worker.close(kill=bool(current))


def visible_gpus() -> int:
    """GPUs this machine offers (CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`), without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return 0
    result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False)
    return sum(line.startswith("GPU ") for line in result.stdout.splitlines()) if result.returncode == 0 else 0


def cpu_shares(count: int) -> list[list[int]]:
    """`count` slices of the CPUs this process may use, disjoint where there are enough (one CPU each,
    shared round the CPUs, where there are fewer)."""
    cpus = sorted(os.sched_getaffinity(0))
    if count > len(cpus):
        return [[cpus[i % len(cpus)]] for i in range(count)]
    return [cpus[i * len(cpus) // count : (i + 1) * len(cpus) // count] for i in range(count)]


def worker_envs(count: int) -> list[dict[str, str]]:
    """One environment per worker: one GPU each when there are GPUs (run_pool pins each worker to its
    share of the CPUs, GPUs or not)."""
    gpus = visible_gpus()
    if gpus:
        ids = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(str(i) for i in range(gpus))).split(",")
        return [{"CUDA_VISIBLE_DEVICES": ids[i % len(ids)].strip()} for i in range(count)]
    return [{} for _ in range(count)]
