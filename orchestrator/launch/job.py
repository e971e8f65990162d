"""The submitted unit: a small picklable callable that trains one run on the node.

Heavy imports (torch, timm) happen inside `__call__`, never at import time. The
job records its lifecycle in status.json; the trainer owns every other file.
`checkpoint()` is submitit's hook on preemption/timeout: the job is requeued as
is and the trainer resumes from the last state saved in the run folder. While
the trainer trains it holds USR2 itself (trainers/runtime/preemption.py): it saves the
full state at the next optimizer-step boundary first, then hands the signal to
submitit's handler, which calls `checkpoint()` and requeues.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import store
from orchestrator.launch import pids
from orchestrator.launch.worker import ENV_LOG_ERR, ENV_LOG_OUT
from orchestrator.store import run_states
from orchestrator.sweep import nodeenv
from trainers import rundir
from trainers.config import TrainConfig
from trainers.rundir import State


@dataclass(frozen=True)
class Cleanup:
    """What a run's folder drops once the run ends (the spec's `cleanup:` block, resolved for normal
    or smoke runs by the launcher; never part of the run id)."""

    drop_resume_state: bool = False
    """On completion: delete the resume-only files of checkpoints/last (optimizer, scheduler, RNG...)."""
    drop_checkpoints: bool = False
    """When the run ends, completed or failed: delete checkpoints/ altogether (smoke runs)."""


class TrainJob:
    """Train one run into `run_dir`; config and plan metadata travel as plain dicts."""

    def __init__(
        self,
        run_dir: Path,
        config: dict[str, Any],
        metadata: dict[str, Any],
        cleanup: Cleanup = Cleanup(),
        attempt: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.metadata = metadata
        self.cleanup = cleanup
        self.attempt = attempt or {}
        """What this attempt asked for (resources) and how the one before it ended, for status.json."""
        self.drop_pickle = True
        """Delete the task's submission pickle when done (False inside a packed task: siblings may requeue)."""

    def __call__(self) -> dict[str, Any]:
        """Run the training; status.json says running, then completed or failed (with the error).

        In a multi-task job every task calls this; all train, only rank 0 writes the status.
        """
        is_main = _export_distributed_env() == 0
        done = run_states.completed_metrics(self.run_dir)  # every rank reads it before rank 0 writes anything
        if done is not None:
            # SLURM started the job again after its run completed (a requeue that came as it finished):
            # the run's files stand; training it again would only redo the same numbers.
            print(f"{ALREADY_COMPLETED}: {self.run_dir}", flush=True)
            if is_main and self.drop_pickle:
                drop_submission_pickle()
            return done
        # Why here and not at submit: a 3000-run array then costs one manifest write, not 6000 files.
        if is_main and not (self.run_dir / rundir.CONFIG).exists():
            store.write_config(self.run_dir, self.metadata, self.config)
        if is_main:
            where = _where()
            # The previous attempt's failure fields go: they described that attempt, not this one.
            cleared: dict[str, Any] = dict.fromkeys(("failure", "failure_reason", "traceback"))
            rundir.update_status(self.run_dir, State.RUNNING, **where, **cleared, attempts=self._attempts(where))
        watchdog = self._start_watchdog() if is_main else None
        try:
            from trainers import preflight, run  # heavy: torch, timm, accelerate

            cfg = TrainConfig.model_validate(self.config)
            # before anything is built: a bad node fails in seconds
            unfit = preflight(cfg, self.run_dir, check_gpus=self.attempt.get("preflight_gpus", True))
            if unfit is not None:
                raise NodeUnfit(unfit.host, unfit.line, unfit.reason)
            # The plan metadata names and tags the run in experiment trackers.
            metrics = run(cfg, self.run_dir, self.metadata)
        except NodeUnfit as exc:
            if is_main:  # the node's fault, not the run's: no `error`, so status never calls it a user error
                # On the attempt: in a job of several nodes the unfit one may not be rank 0's, which sacct names first.
                rundir.record_node_fault(self.run_dir, PREFLIGHT_FAIL, exc.host or None, exc.line)
            on = f" on {exc.host}" if exc.host else ""  # no host: the ranks could not exchange verdicts
            print(f"preflight failed{on}: {exc.reason}", file=sys.stderr)
            raise SystemExit(PREFLIGHT_EXIT) from None
        except BaseException as exc:
            # Why: the last lines of the traceback are what `status` shows for a failed run.
            tail = "".join(traceback.format_exception(exc)[-3:]).strip()
            if is_main:
                rundir.update_status(self.run_dir, State.FAILED, error=f"{type(exc).__name__}: {exc}", traceback=tail)
                if isinstance(exc, Exception):  # not on preemption (SystemExit): the requeued job resumes
                    self.clean_up(completed=False)
            raise
        finally:
            _stop(watchdog)
        if is_main:
            rundir.update_status(self.run_dir, State.COMPLETED)
            self.clean_up(completed=True)
            if self.drop_pickle:
                drop_submission_pickle()
        return metrics

    def _attempts(self, where: dict[str, Any]) -> list[dict[str, Any]]:
        """status.json's `attempts` (contract.Attempt), this one appended: its job, host and resources;
        the launcher's verdict on the previous attempt goes onto that attempt's entry."""
        status, _ = run_states.read_status(self.run_dir)
        attempts = [a.model_dump(mode="json", exclude_unset=True) for a in status.attempts]
        previous = self.attempt.get("previous")
        if isinstance(previous, dict) and previous:  # the launcher's verdict on the attempt before this one
            mine = [a for a in attempts if a.get("job_id") == previous.get("job_id")]
            if mine:
                mine[-1].update(previous)
            else:  # it never started (no entry of its own)
                attempts.append(dict(previous))
        job_id = _job_key(where)
        if attempts and job_id and attempts[-1].get("job_id") == job_id and not attempts[-1].get("failure"):
            lost = _lost_with_node(job_id)
            if lost is None:
                return attempts  # the same job restarted (requeued on timeout or preemption): one attempt
            attempts[-1].update(lost)  # its node died with it: that attempt ended there, this one is new
        entry = {"job_id": job_id, "host": where.get("host"), "at": time.time()}
        if os.environ.get("SLURMD_NODENAME"):  # SLURM's name of the node (what --exclude takes), not the hostname
            entry["slurm_node"] = os.environ["SLURMD_NODENAME"]
        entry["resources"] = self.attempt.get("resources", {})
        return [*attempts, entry]

    def _start_watchdog(self) -> subprocess.Popen[bytes] | None:
        """With the retry policy's watchdog on (the launcher passes its settings): the hang watchdog, a
        separate process (orchestrator/launch/watchdog.py), and the trainer's heartbeat switched on for
        it. Under SLURM it may requeue the job; in a local warm worker (no SLURM job, and the launcher
        allows no requeue) it kills this process, the worker, which the pool replaces."""
        settings = self.attempt.get("watchdog")
        if not isinstance(settings, dict):
            return None
        from orchestrator.launch import watchdog

        os.environ[watchdog.HEARTBEAT_ENV] = "1"
        job = os.environ.get("SLURM_JOB_ID")
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        args = [sys.executable, "-m", "orchestrator.launch.watchdog", "--run-dir", str(self.run_dir)]
        args += ["--pid", str(os.getpid()), *(["--job-id", job] if job else [])]
        for key in ("step_factor", "floor_s", "slow_phase_s"):
            args += [f"--{key.replace('_', '-')}", str(float(settings[key]))]
        if job and restarts < int(settings.get("max_requeues", 0)):
            args.append("--requeue")
        return subprocess.Popen(args)

    def clean_up(self, completed: bool) -> None:
        """Apply `cleanup` to the run's checkpoints, after its status is recorded. A cleanup that
        fails is reported on stderr and never fails the run: the files only take space."""
        from trainers.loop import checkpoint

        ckpt_dir = checkpoint.checkpoint_dir(self.run_dir)
        try:
            if self.cleanup.drop_checkpoints:
                checkpoint.drop_all(ckpt_dir)
            elif completed and self.cleanup.drop_resume_state:
                checkpoint.drop_resume_state(ckpt_dir)
        except (OSError, ValueError) as exc:
            print(f"cleanup of {ckpt_dir} failed ({exc}); the run's result stands", file=sys.stderr)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue the same job on preemption or timeout; training resumes from checkpoints/last
        (saved at a step boundary just before, when the signal came during training)."""
        import submitit

        again = TrainJob(self.run_dir, self.config, self.metadata, self.cleanup, self.attempt)
        return submitit.helpers.DelayedSubmission(again)


ALREADY_COMPLETED = "run completed already (status.json and metrics.json): nothing to train"
"""The job log's line when a job starts for a run that completed (tests wait for it)."""


class NodeUnfit(RuntimeError):
    """The on-node preflight failed: node `host` ("": none can be named) cannot train this run; `line`
    is status.json's reason (`rank 1 on node2: ...` in a job of several ranks), `reason` the check's."""

    def __init__(self, host: str, line: str, reason: str) -> None:
        super().__init__(line)
        self.host = host
        self.line = line
        self.reason = reason


PREFLIGHT_FAIL = "preflight_fail"
"""status.json's failure of a failed preflight (failures.Failure.PREFLIGHT_FAIL)."""


PREFLIGHT_EXIT = 77
"""Exit status of a job whose preflight failed (failures.EXIT_PREFLIGHT; trainers.runtime.preflight_node.EXIT_CODE)."""


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    """End the watchdog when the trainer returns (it also ends itself once its trainer is gone), and the
    heartbeat with it: a warm worker's next run may have no watchdog to read it."""
    if process is None:
        return
    from orchestrator.launch import watchdog

    os.environ.pop(watchdog.HEARTBEAT_ENV, None)
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def _lost_with_node(job_id: str) -> dict[str, Any] | None:
    """For a job SLURM started again after its node failed (requeued on NODE_FAIL; the attempt died with
    the node and recorded nothing): that attempt's class, node and reason, from sacct's record of it.
    None for a first start or a restart for another reason (timeout, preemption: the same attempt)."""
    if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) < 1:
        return None
    from orchestrator.launch import failures, slurmcli

    earlier = slurmcli.earlier_ends(job_id)
    verdict = failures.classify(earlier[-1], failures.Evidence()) if earlier else None
    if verdict is None or verdict.failure is not failures.Failure.NODE_FAIL:
        return None
    # No node when the job had several and SLURM does not say which failed (none is then charged).
    reason = f"{verdict.reason} on {verdict.node}: requeued by SLURM" if verdict.node else f"{verdict.reason}: requeued"
    return {"failure": verdict.failure.value, "node": verdict.node, "reason": reason}


def _job_key(where: dict[str, Any]) -> str | None:
    """The job id as the manifest and sacct name it: `array_task` for an array task."""
    if "slurm_array_job_id" in where and "slurm_array_task_id" in where:
        return f"{where['slurm_array_job_id']}_{where['slurm_array_task_id']}"
    job = where.get("slurm_job_id")
    return str(job) if job else None


RENDEZVOUS_PORTS = (20_000, 32_000)
"""The range a job's MASTER_PORT is drawn from, by its job id (every rank and every restart of the job
draws the same): below Linux's default ephemeral ports (32768-60999), where srun's listening sockets
and every outgoing connection on the node take theirs. submitit's own draw (20000-60000) can land on
one of those; the on-node preflight uses the port above it as well."""


def rendezvous_port(job_id: str) -> int:
    """MASTER_PORT of job `job_id` (the port above it is the preflight's; both within RENDEZVOUS_PORTS)."""
    low, high = RENDEZVOUS_PORTS
    return low + int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big") % (high - low - 1)


def _export_distributed_env() -> int:
    """In a job of several tasks, export torch.distributed's env:// variables from SLURM; returns the rank.

    One task per GPU: Accelerate reads RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT and
    picks `cuda:LOCAL_RANK`, so CUDA_VISIBLE_DEVICES is left as SLURM set it. MASTER_PORT is the job's
    (rendezvous_port) and the rank variables SLURM's, whatever the submitting shell exported (submitit
    refused to start when it had exported any of them)."""
    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1 or _submitit_paths() is None:
        return 0
    import submitit

    # Always the job's own: a MASTER_PORT the submitting shell exported (sbatch passes its environment)
    # would be every job's, colliding wherever two share a node.
    os.environ["MASTER_PORT"] = str(rendezvous_port(os.environ.get("SLURM_JOB_ID", "")))
    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return int(env.rank)


def _where() -> dict[str, Any]:
    """Host, pid, SLURM ids and log files of the running job, for status.json."""
    where: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), **_slurm_ids()}
    where["boot_id"] = pids.boot_id()  # the pid is this process's only within this boot
    # Which Python the job got (slurm.env), also for a run that fails before metrics.json has provenance.
    where.update(interpreter=sys.executable, env_kind=os.environ.get(nodeenv.ENV_KIND, "none"))
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # which GPU(s) of a shared or packed job
        where["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    paths = _submitit_paths()
    if paths is not None:
        where.update(log_out=str(paths.stdout), log_err=str(paths.stderr))
    elif os.environ.get(ENV_LOG_OUT):  # a warm local worker's per-run log files
        where.update(log_out=os.environ[ENV_LOG_OUT], log_err=os.environ.get(ENV_LOG_ERR, ""))
    return where


def _submitit_paths() -> Any:
    """submitit's JobPaths of the current job, or None outside a submitit job (debug runs)."""
    if "SUBMITIT_EXECUTOR" not in os.environ and "SUBMITIT_FOLDER" not in os.environ:
        return None
    try:
        import submitit

        return submitit.JobEnvironment().paths
    except Exception:  # not launched by submitit after all
        return None


def drop_submission_pickle() -> None:
    """A finished run's submission pickle is dead weight on a shared filesystem; its logs stay.

    Kept while SLURM may start the job again: a requeue or preemption that came while the run was
    finishing (SIGTERM, which submitit ignores, then SIGKILL only KillWait later) ends the job after
    it returns, and the restarted job loads this pickle; without it submitit fails that start after
    waiting a minute, before the job can record anything.
    """
    paths = _submitit_paths()
    if paths is not None and not _slurm_may_restart():
        Path(paths.submitted_pickle).unlink(missing_ok=True)


def _slurm_may_restart() -> bool:
    """Under SLURM: whether slurmctld no longer holds this job as running (a requeue, preemption or
    cancel is ending it), or cannot say; False outside SLURM."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    from orchestrator.launch import slurmcli

    return slurmcli.job_state(job) != "RUNNING"


def _slurm_ids() -> dict[str, str]:
    """SLURM job/array ids of the current task, when running under SLURM."""
    names = {
        "slurm_job_id": "SLURM_JOB_ID",
        "slurm_array_job_id": "SLURM_ARRAY_JOB_ID",
        "slurm_array_task_id": "SLURM_ARRAY_TASK_ID",
        "slurm_restart_count": "SLURM_RESTART_COUNT",
    }
    return {key: os.environ[var] for key, var in names.items() if var in os.environ}
