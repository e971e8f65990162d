"""Submitting job arrays: one sbatch per array (submitit `batch()`), each recorded in the manifest as it goes in.

Every array is named with a fresh token before sbatch is called (`unconfirmed`): an sbatch that fails after
the controller took the array finds it by that name instead of submitting its runs a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from orchestrator import store
from orchestrator.launch import slurmcli, unconfirmed
from orchestrator.launch.base import Outcome, train_job
from orchestrator.launch.job import Cleanup
from orchestrator.launch.packed import PackedJob
from orchestrator.store.run_states import RunRecord
from orchestrator.sweep.spec import SlurmConfig

# One array: its job resources and its tasks, each task a pack of one or more runs.
Array = tuple[SlurmConfig, list[list[RunRecord]]]


AttemptOf = Callable[[RunRecord, SlurmConfig], dict[str, Any]]


def task_job(
    config: SlurmConfig, members: list[RunRecord], cleanup: Cleanup, attempt_of: AttemptOf | None = None
) -> Any:
    """The submitit callable of one array task: a TrainJob, or a PackedJob of several runs."""
    jobs = [train_job(record, cleanup, attempt_of(record, config) if attempt_of else None) for record in members]
    if len(jobs) == 1:
        return jobs[0]
    gpus = config.gpus_per_node if config.pack_gpus else 0
    return PackedJob(jobs, gpus=gpus)


def submit_arrays(
    root: Path,
    arrays: list[Array],
    name: str,
    console: Console,
    cleanup: Cleanup,
    attempt_of: AttemptOf,
    sent: dict[str, str],
    cancelled: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Submit the arrays, one sbatch each; each is recorded in the manifest and in `sent` as it goes in
    (sbatch failing at a later array raises with the earlier ones recorded). `cancelled` is asked right
    before each sbatch and after the last (it obeys an `orchestrate cancel`): True submits nothing more."""
    import submitit
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    folder = root / store.SUBMITIT_DIR
    manifest = store.read_manifest(root, strict=True)
    outcome = Outcome()
    for config, group in arrays:
        if cancelled():  # before the array is recorded or sent: the cancel's look at the queue may be over
            return outcome
        python = slurmcli.node_command(config).python
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=config.max_timeouts, python=python)
        token, job_name = unconfirmed.job_name(name)
        tasks = [[record.run.run_id for record in members] for members in group]
        # The array's runs: how often a run was submitted, also when its attempts left no status.json.
        extra = {"folder": str(folder), "requested": requested(config)}
        unconfirmed.expect(root, manifest, token, job_name, tasks, extra)  # sbatch may fail yet take it
        executor.update_parameters(**slurmcli.executor_parameters(config, job_name=job_name))
        callables = [task_job(config, members, cleanup, attempt_of) for members in group]
        adopted = False
        try:
            with executor.batch():  # job ids exist only once the batch is sent (submitit forbids them inside)
                jobs = [executor.submit(fn) for fn in callables]
            job_ids = [str(job.job_id) for job in jobs]
        except (FailedJobError, FailedSubmissionError) as error:  # sbatch's error, or output without a job id
            job_ids, adopted = unconfirmed.after_failure(root, manifest, token, callables, config, error), True
        array_id = job_ids[0].split("_", 1)[0]
        submitted = {run_id: job_id for runs, job_id in zip(tasks, job_ids, strict=True) for run_id in runs}
        # Written after each array: a crash between arrays still leaves every submitted job findable.
        unconfirmed.confirmed(manifest, token)
        store.record_array(root, manifest, array_id, submitted, {**extra, "runs": list(submitted)})
        if adopted:  # only now, with the job in the manifest: a task without its pickle trains nothing
            unconfirmed.place(folder, job_ids, callables, config)
            console.print(f"[yellow]warning[/]: sbatch failed, but the controller had taken array {array_id}")
        outcome.submitted.update(submitted)
        sent.update(submitted)
        size = f"{config.nodes} node(s) x {config.tasks_per_node} task(s)"
        runs = f"{len(submitted)} runs in {len(group)} tasks" if len(submitted) > len(group) else f"{len(group)} runs"
        console.print(f"submitted array {array_id}: {runs} of {size}, {config.array_parallelism} at once")
    if not cancelled():  # the last array may have gone in while a cancel looked at the queue
        console.print(f"logs: {folder}/<job id>_0_log.out|err; `orchestrate status` follows progress")
    return outcome


def requested(config: SlurmConfig) -> dict[str, Any]:
    """What each task of an array asked SLURM for (`collect` compares it with what the runs used)."""
    return config.model_dump(
        include={"timeout_min", "mem_gb", "nodes", "gpus_per_node", "tasks_per_node", "runs_per_task", "pack_gpus"}
    )
