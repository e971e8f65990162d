"""Run packing: K runs per array task, or one run per GPU of a whole-node job.

The unit tests check the grouping and the packed callable's failure isolation with stand-in
jobs; the `slurm` tests run packed tasks on the real dev cluster (two fake GPUs per node).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from config_helpers import DEV_PROFILE, FAST_RUNS
from polling import wait_for
from rich.console import Console

from orchestrator import launch, store
from orchestrator.launch import slurm as slurm_launch
from orchestrator.launch import slurmcli
from orchestrator.launch.packed import PackedJob
from orchestrator.launch.status import sweep_status
from orchestrator.store import run_states
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir
from trainers.rundir import State

PROFILE = DEV_PROFILE
SMALL = [item for item in FAST_RUNS if not item.startswith("grid.seed")]


def _tasks(spec: SweepSpec) -> list[list[str]]:
    records = run_states.inspect(plan(spec), spec.output_path)
    launcher = slurm_launch.SlurmLauncher(spec, launch_console())
    _, arrays = launcher._arrays(records)
    return [[record.run.run_id for record in task] for _, tasks in arrays for task in tasks]


def launch_console() -> Console:
    return Console(quiet=True)


def test_runs_per_task_packs_consecutive_runs(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(), ["slurm.runs_per_task=4"])
    runs = plan(spec)
    tasks = _tasks(spec)
    assert [len(task) for task in tasks] == [4, 2]
    assert [run_id for task in tasks for run_id in task] == [run.run_id for run in runs], "plan order kept"


def test_pack_gpus_puts_one_run_per_gpu_of_a_whole_node_job(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = load_spec(write_spec(), ["slurm.gpus_per_node=4", "slurm.pack_gpus=true"])
    assert [len(task) for task in _tasks(spec)] == [4, 2]
    records = run_states.inspect(plan(spec), spec.output_path)
    [(config, _)] = slurm_launch.by_resources(spec.slurm, records)
    header = slurmcli.sbatch_header(tmp_path, slurmcli.executor_parameters(config, "orch-x"), 2)
    assert "#SBATCH --gpus-per-node=4" in header and "#SBATCH --ntasks-per-node=1" in header


def test_multi_gpu_runs_are_never_packed(write_spec: Callable[..., Path]) -> None:
    big = "defaults.distributed={gpus_per_node: 2}"
    spec = load_spec(write_spec(), [big, "slurm.gpus_per_node=4", "slurm.pack_gpus=true"])
    assert all(len(task) == 1 for task in _tasks(spec))


class _Stub:
    """A stand-in for TrainJob: records that it ran in its status.json, or fails."""

    def __init__(self, run_dir: Path, fail: bool = False) -> None:
        self.run_dir, self.fail = run_dir, fail

    def __call__(self) -> None:
        calls = (self.run_dir / "calls").read_text() if (self.run_dir / "calls").exists() else ""
        (self.run_dir / "calls").write_text(calls + "x")
        if self.fail:
            rundir.update_status(self.run_dir, State.FAILED, error="boom")
            raise RuntimeError("boom")
        rundir.update_status(self.run_dir, State.COMPLETED)


def test_a_failed_run_does_not_fail_its_siblings_and_completed_runs_are_skipped(tmp_path: Path) -> None:
    dirs = [tmp_path / name for name in "abc"]
    for path in dirs:
        path.mkdir()
    job = PackedJob([_Stub(dirs[0]), _Stub(dirs[1], fail=True), _Stub(dirs[2])])  # type: ignore[list-item]
    results = job()
    assert results == {str(dirs[0]): "completed", str(dirs[1]): "RuntimeError: boom", str(dirs[2]): "completed"}
    job()  # as after a requeue: only the run that did not complete runs again
    assert [(path / "calls").read_text() for path in dirs] == ["x", "xx", "x"]


@pytest.mark.slurm
def test_packed_tasks_train_on_the_dev_cluster_and_resume_after_requeue(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(), [*SMALL, "grid.seed=[0]", "defaults.epochs=3", "slurm.runs_per_task=3"])
    runs = plan(spec)
    outcome = launch.submit(spec, runs, "slurm", profile=PROFILE)
    assert len(set(outcome.submitted.values())) == 1, "three runs, one array task"
    [job_id] = set(outcome.submitted.values())
    paths = [store.run_path(spec.output_path, run.run_id) for run in runs]
    history = paths[1] / rundir.HISTORY
    wait_for(lambda: history.exists() and len(history.read_text().splitlines()) >= 2, 300, "the second run's epoch 1")
    # Preemption's warning: the run in flight saves at its next step, then submitit requeues the task.
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    wait_for(lambda: _states(spec) == {"completed"}, 420, "every packed run to complete")
    for path in paths:
        epochs = [line.split(",")[0] for line in (path / rundir.HISTORY).read_text().splitlines()[1:]]
        assert epochs == ["1", "2", "3"]
        assert (rundir.read_json(path / rundir.STATUS) or {})["slurm_job_id"]

    def starts(path: Path) -> int:
        return [h["state"] for h in (rundir.read_json(path / rundir.STATUS) or {})["history"]].count("running")

    assert starts(paths[0]) == 1, "the completed first run was trained again after the requeue"
    assert max(starts(paths[1]), starts(paths[2])) >= 2, "the requeued task never restarted the run in flight"
    assert not list((spec.output_path / store.SUBMITIT_DIR).glob("*_submitted.pkl")), "done: pickle dropped"


@pytest.mark.slurm
def test_pack_gpus_gives_each_run_its_own_gpu(write_spec: Callable[..., Path]) -> None:
    """Each packed run in a warm worker of its own, with a DataLoader worker (the augmented row's
    train loader): a worker may have children."""
    changes = ["grid.seed=[0]", "ablations={Baseline: [], + Aug: [aug]}", "slurm.gpus_per_node=2"]
    changes.append("defaults.data.num_workers=1")
    spec = load_spec(write_spec(), [*SMALL, *changes, "slurm.pack_gpus=true"])
    runs = plan(spec)
    outcome = launch.submit(spec, runs, "slurm", profile=PROFILE)
    assert len(set(outcome.submitted.values())) == 1, "two single-GPU runs share one 2-GPU task"
    wait_for(lambda: _states(spec) == {"completed"}, 420, "both packed runs to complete")
    statuses = [rundir.read_json(store.run_path(spec.output_path, r.run_id) / rundir.STATUS) or {} for r in runs]
    devices = [status.get("cuda_visible_devices") for status in statuses]
    assert None not in devices and len(set(devices)) == 2, devices
    assert len({status["slurm_job_id"] for status in statuses}) == 1


def _states(spec: SweepSpec) -> set[str]:
    return {row.state for row in sweep_status(plan(spec), spec.output_path).runs}
