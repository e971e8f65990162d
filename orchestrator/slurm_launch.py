"""Submission to SLURM: a sweep becomes a few job arrays (submitit `batch()`), never one sbatch per run.

Arrays are chunked to the cluster's MaxArraySize and throttled with `%parallelism`.
The manifest (run_id -> job id) lets status, cancel and resubmission find every run's job.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from orchestrator import launch, slurm, store
from orchestrator.plan import RunSpec
from orchestrator.spec import SlurmConfig, SweepSpec
from orchestrator.store import RunRecord


def resolve(spec: SweepSpec, profile: str | None) -> SlurmConfig:
    """The job resources: the spec's slurm block over the named cluster profile."""
    return slurm.resolve_config(spec, profile)


def runs_in_slurm(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(run_id -> live job id, job id -> state) for the sweep's runs SLURM still owns (one squeue call)."""
    manifest = store.read_manifest(root)
    live = slurm.active_ids(manifest["arrays"]) if manifest["arrays"] else {}
    runs = {run_id: entry["job_id"] for run_id, entry in manifest["runs"].items() if entry["job_id"] in live}
    return runs, live


def submit_arrays(
    spec: SweepSpec,
    root: Path,
    records: list[RunRecord],
    config: SlurmConfig,
    *,
    force: bool,
    dry_run: bool,
    console: Console,
) -> launch.Outcome:
    """Submit every run that is neither complete nor owned by a live SLURM job, as arrays."""
    if not slurm.available():
        if not dry_run:
            raise slurm.SlurmError("sbatch/squeue not found: not on a SLURM login node (try --executor local)")
        in_slurm: dict[str, str] = {}
    else:
        in_slurm, _ = runs_in_slurm(root)
    selection = launch.select(records, force, set(in_slurm))
    console.print(f"[bold]{spec.name}[/]: {len(records)} runs planned; {selection.summary()}")
    if not selection.todo:
        return launch.Outcome()
    size = slurm.max_array_size(config) if slurm.available() else config.max_array_size or slurm.DEFAULT_MAX_ARRAY_SIZE
    arrays = [
        (job_config, chunk)
        for job_config, members in by_resources(config, selection.todo)
        for chunk in slurm.chunks(members, size)
    ]
    folder = root / store.SUBMITIT_DIR
    if dry_run:
        _print_dry_run(arrays, folder, spec.name, size, console)
        return launch.Outcome()
    root.mkdir(parents=True, exist_ok=True)
    store.write_snapshot(spec, root)
    launch.archive_previous(selection.todo, root, force)
    return _submit_arrays(root, arrays, folder, spec.name, console)


def job_resources(base: SlurmConfig, run: RunSpec) -> SlurmConfig:
    """The SLURM resources of one run: the slurm block, sized by the run's `distributed` block.

    A run with GPUs or several processes gets `nodes` and `gpus_per_node` from its trainer
    config and one task per GPU; a plain single-process run keeps the slurm block as is.
    """
    dist = run.config.distributed
    if dist.gpus_per_node == 0 and dist.processes == 1:
        return base
    tasks = max(1, dist.gpus_per_node)
    return base.model_copy(update={"nodes": dist.nodes, "gpus_per_node": dist.gpus_per_node, "tasks_per_node": tasks})


def by_resources(base: SlurmConfig, records: list[RunRecord]) -> list[tuple[SlurmConfig, list[RunRecord]]]:
    """Runs grouped by identical job resources (an array has one sbatch header), in plan order."""
    groups: dict[str, tuple[SlurmConfig, list[RunRecord]]] = {}
    for record in records:
        config = job_resources(base, record.run)
        groups.setdefault(config.model_dump_json(), (config, []))[1].append(record)
    return list(groups.values())


def _submit_arrays(
    root: Path, arrays: list[tuple[SlurmConfig, list[RunRecord]]], folder: Path, name: str, console: Console
) -> launch.Outcome:
    import submitit

    manifest = store.read_manifest(root)
    outcome = launch.Outcome()
    for config, group in arrays:
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=config.max_timeouts)
        executor.update_parameters(**slurm.executor_parameters(config, job_name=f"orch-{name}"))
        with executor.batch():
            jobs = [executor.submit(launch.train_job(record)) for record in group]
        array_id = str(jobs[0].job_id).split("_", 1)[0]
        submitted = {record.run.run_id: str(job.job_id) for record, job in zip(group, jobs, strict=True)}
        # Written after each array: a crash between arrays still leaves every submitted job findable.
        store.record_array(root, manifest, array_id, submitted, {"folder": str(folder)})
        outcome.submitted.update(submitted)
        size = f"{config.nodes} node(s) x {config.tasks_per_node} task(s)"
        console.print(f"submitted array {array_id}: {len(group)} runs of {size}, {config.array_parallelism} at once")
    console.print(f"logs: {folder}/<job id>_0_log.out|err; `orchestrate status` follows progress")
    return outcome


def _print_dry_run(
    arrays: list[tuple[SlurmConfig, list[RunRecord]]], folder: Path, name: str, size: int, console: Console
) -> None:
    sizes = ", ".join(str(len(group)) for _, group in arrays)
    console.print(f"dry run: would submit {len(arrays)} job array(s) of {sizes} tasks (MaxArraySize {size})")
    for index, (config, group) in enumerate(arrays):
        header = slurm.sbatch_header(folder, slurm.executor_parameters(config, f"orch-{name}"), len(group))
        console.print(f"--- array {index + 1}/{len(arrays)}: {group[0].run.name} ... {group[-1].run.name}")
        console.print(header, markup=False, highlight=False)
    console.print("nothing submitted")
