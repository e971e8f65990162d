"""Launching on SLURM: a sweep becomes a few job arrays (submitit `batch()`), never one sbatch per run.

Arrays are grouped by job size, chunked to the cluster's MaxArraySize and throttled with
`%parallelism`. The manifest (run_id -> job id) lets status, cancel and resubmission find every
run's job.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from orchestrator.launch import slurmcli
from orchestrator.launch.base import Launcher, Outcome, train_job
from orchestrator.results.reader import RunRecord
from orchestrator.sweep import site, store
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SlurmConfig, SweepSpec


class SlurmLauncher(Launcher):
    """Submits the selected runs as job arrays, skipping runs a live SLURM job still owns."""

    def __init__(self, spec: SweepSpec, console: Console, profile: str | None = None) -> None:
        super().__init__(spec, console)
        self.config = site.resolve_slurm(spec.slurm, profile)

    def owned_elsewhere(self, root: Path, dry_run: bool) -> set[str]:
        """Run ids of the sweep that SLURM still has pending or running (one squeue call)."""
        if not slurmcli.available():
            if not dry_run:
                raise slurmcli.SlurmError("sbatch/squeue not found: not on a SLURM login node (try --executor local)")
            return set()
        return set(runs_in_slurm(root)[0])

    def preview(self, todo: list[RunRecord], root: Path) -> None:
        """The sbatch header of every array that would be submitted."""
        size, arrays = self._arrays(todo)
        _print_dry_run(arrays, root / store.SUBMITIT_DIR, self.spec.name, size, self.console)

    def start(self, todo: list[RunRecord], root: Path) -> Outcome:
        """Submit the arrays; the manifest is written after each one."""
        _, arrays = self._arrays(todo)
        return _submit_arrays(root, arrays, root / store.SUBMITIT_DIR, self.spec.name, self.console)

    def _arrays(self, todo: list[RunRecord]) -> tuple[int, list[tuple[SlurmConfig, list[RunRecord]]]]:
        config = self.config
        if slurmcli.available():
            size = slurmcli.max_array_size(config)
        else:
            size = config.max_array_size or slurmcli.DEFAULT_MAX_ARRAY_SIZE
        arrays = [
            (job_config, chunk)
            for job_config, members in by_resources(config, todo)
            for chunk in slurmcli.chunks(members, size)
        ]
        return size, arrays


def runs_in_slurm(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(run_id -> live job id, job id -> state) for the sweep's runs SLURM still owns (one squeue call)."""
    manifest = store.read_manifest(root)
    live = slurmcli.active_ids(manifest["arrays"]) if manifest["arrays"] else {}
    runs = {run_id: entry["job_id"] for run_id, entry in manifest["runs"].items() if entry["job_id"] in live}
    return runs, live


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
) -> Outcome:
    import submitit

    manifest = store.read_manifest(root)
    outcome = Outcome()
    for config, group in arrays:
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=config.max_timeouts)
        executor.update_parameters(**slurmcli.executor_parameters(config, job_name=f"orch-{name}"))
        with executor.batch():
            jobs = [executor.submit(train_job(record, name)) for record in group]
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
        header = slurmcli.sbatch_header(folder, slurmcli.executor_parameters(config, f"orch-{name}"), len(group))
        console.print(f"--- array {index + 1}/{len(arrays)}: {group[0].run.name} ... {group[-1].run.name}")
        console.print(header, markup=False, highlight=False)
    console.print("nothing submitted")
