"""Several runs in one array task: fewer, longer jobs for the scheduler.

`slurm.runs_per_task: K` runs K runs one after the other in one task (the imports are paid
once); `slurm.pack_gpus: true` on a job of `gpus_per_node: G` runs G single-GPU runs at once,
one per GPU (each in its own warm worker with its own CUDA_VISIBLE_DEVICES), for sites that
allocate whole nodes. Each run keeps its own folder, status and checkpoints: a failed run
never fails its siblings, and a requeued task skips the runs already completed and resumes
the others from their own saved state.
"""

from __future__ import annotations

import os
import traceback
from typing import Any

from orchestrator.launch.job import TrainJob, drop_submission_pickle
from orchestrator.launch.worker import run_pool
from orchestrator.store import run_states
from trainers import rundir
from trainers.rundir import State


class PackedJob:
    """The submitit callable of one packed array task."""

    def __init__(self, jobs: list[TrainJob], gpus: int = 0) -> None:
        for job in jobs:
            job.drop_pickle = False  # the task's pickle must outlive each run: a requeue reads it
        self.jobs = jobs
        self.gpus = gpus
        """GPUs of the task to spread the runs over (0 or 1: one run after the other)."""

    def __call__(self) -> dict[str, str]:
        """Run every run not completed yet; returns run folder -> 'completed' or the error line."""
        todo = [job for job in self.jobs if run_states.status_of(job.run_dir).state != State.COMPLETED.value]
        results = self._on_gpus(todo) if self.gpus > 1 else self._one_by_one(todo)
        if all(result == "completed" for result in results.values()):
            drop_submission_pickle()
        return results

    @staticmethod
    def _one_by_one(todo: list[TrainJob]) -> dict[str, str]:
        results: dict[str, str] = {}
        for job in todo:
            try:
                job()
            except Exception as exc:  # recorded in the run's status.json; the siblings go on
                traceback.print_exc()  # into the task's log, which status.json names as the run's
                results[str(job.run_dir)] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            else:
                results[str(job.run_dir)] = "completed"
        return results

    def _on_gpus(self, todo: list[TrainJob]) -> dict[str, str]:
        devices = task_devices(self.gpus)
        results: dict[str, str] = {}

        def finished(index: int, error: str | None) -> None:
            results[str(todo[index].run_dir)] = error or "completed"

        envs = [{"CUDA_VISIBLE_DEVICES": device} for device in devices]
        run_pool([(job, job.run_dir / rundir.LOGS) for job in todo], envs, None, finished)
        return results

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue the whole task on preemption or timeout; each run resumes from its own state."""
        import submitit

        return submitit.helpers.DelayedSubmission(PackedJob(self.jobs, self.gpus))


def task_devices(gpus: int) -> list[str]:
    """The GPU ids SLURM gave this task (CUDA_VISIBLE_DEVICES, else SLURM_JOB_GPUS, else 0..gpus-1)."""
    for name in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS"):
        value = os.environ.get(name, "")
        ids = [item.strip() for item in value.split(",") if item.strip()]
        if ids:
            return ids
    return [str(i) for i in range(gpus)]
