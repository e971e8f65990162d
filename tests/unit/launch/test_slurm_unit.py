"""Our SLURM logic alone (no cluster): id parsing, chunking, profiles, the no-accounting fallback."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.launch import job
from orchestrator.launch import slurm as slurm_launch
from orchestrator.launch import slurmcli as slurm
from orchestrator.store import run_states
from orchestrator.sweep import site
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SpecError, load_spec
from trainers import rundir
from trainers.rundir import State


def test_expand_job_id() -> None:
    assert slurm.expand_job_id("12_[0-2,5%4]") == ["12_0", "12_1", "12_2", "12_5"]
    assert slurm.expand_job_id("12_7") == ["12_7"]
    assert slurm.expand_job_id("99") == ["99"]


def test_chunks_respect_size() -> None:
    sizes = [len(c) for c in slurm.chunks(list(range(3000)), 1001)]
    assert sizes == [1001, 1001, 998]


def test_profile_under_spec(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    profile = tmp_path / "site.yaml"
    profile.write_text("partition: gpu\naccount: proj\ntimeout_min: 600\nsetup: [module load cuda]\n")
    spec = load_spec(write_spec(slurm={"timeout_min": 30, "gpus_per_node": 1}))
    config = site.resolve_slurm(spec.slurm, str(profile))
    assert (config.partition, config.account, config.setup) == ("gpu", "proj", ["module load cuda"])
    assert config.timeout_min == 30, "the spec's own value wins over the profile"
    params = slurm.executor_parameters(config, "orch-x")
    assert params["gpus_per_node"] == 1 and params["time"] == 30 and params["partition"] == "gpu"


def test_profile_unknown_key_and_missing(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = load_spec(write_spec())
    bad = tmp_path / "bad.yaml"
    bad.write_text("partitoin: gpu\n")
    with pytest.raises(
        SpecError,
        match=r"bad.yaml: partitoin: unknown key \(did you mean 'partition'\?\); valid keys: partition, account",
    ):
        site.resolve_slurm(spec.slurm, str(bad))
    with pytest.raises(SpecError, match=r"no such cluster profile"):
        site.resolve_slurm(spec.slurm, "no-such-site")


def test_dry_run_header_shows_throttle_and_resources(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = load_spec(write_spec(slurm={"partition": "gpu", "gpus_per_node": 2, "array_parallelism": 8}))
    header = slurm.sbatch_header(tmp_path, slurm.executor_parameters(spec.slurm, "orch-tiny"), 40)
    assert "#SBATCH --array=0-39%8" in header
    assert "#SBATCH --gpus-per-node=2" in header and "#SBATCH --partition=gpu" in header


def test_without_accounting_status_uses_squeue_and_warns_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A site without slurmdbd: sacct refuses; states still come from squeue, with one warning."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_sacct = bin_dir / "sacct"
    fake_sacct.write_text("#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n")
    fake_squeue = bin_dir / "squeue"
    fake_squeue.write_text("#!/bin/sh\necho '41_[2-3]|PENDING'\necho '41_0|RUNNING'\necho '7|RUNNING'\n")
    for script in (fake_sacct, fake_squeue):
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    states = slurm.query_states(["41"])
    assert states.states == {"41_0": "RUNNING", "41_2": "PENDING", "41_3": "PENDING"}
    assert not states.accounting
    assert states.warning is not None and "accounting storage is disabled" in states.warning
    assert "\n" not in states.warning


def test_multi_node_cells_get_their_own_array_with_one_task_per_gpu(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    big = "per_backbone.test_vit={distributed: {nodes: 2, gpus_per_node: 4, strategy: deepspeed, zero_stage: 3}}"
    spec = load_spec(write_spec(), ["grid.backbone=[resnet10t, test_vit]", big])
    records = run_states.inspect(plan(spec), spec.output_path)
    groups = slurm_launch.by_resources(spec.slurm, records)
    assert [len(group) for _, group in groups] == [6, 6]  # 3 ablations x 2 seeds per backbone
    (plain, _), (multi, vit_runs) = groups
    assert {record.run.backbone for record in vit_runs} == {"test_vit"}
    assert plain == spec.slurm  # single-process cells keep the slurm block as written
    header = slurm.sbatch_header(tmp_path, slurm.executor_parameters(multi, "orch-tiny"), len(vit_runs))
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--array=0-5"):
        assert f"#SBATCH {line}" in header, line


@pytest.mark.parametrize(
    ("restarts", "earlier", "lost"),
    [
        (1, "55_0|NODE_FAIL|0:0|node1", {"node": "node1", "reason": "NODE_FAIL on node1: requeued by SLURM"}),
        (
            2,
            "55_0|REQUEUED|0:0|node1\n55_0|NODE_FAIL|0:0|node3",
            {"node": "node3", "reason": "NODE_FAIL on node3: requeued by SLURM"},
        ),
        # Two nodes, and SLURM does not say which died: no node is charged.
        (
            1,
            "55_0|NODE_FAIL|0:0|node[1-2]",
            {"node": "", "reason": "NODE_FAIL on node[1-2]: which node failed is not known: requeued"},
        ),
        (1, "55_0|REQUEUED|0:0|node1", None),  # submitit's requeue (time limit, preemption): the same attempt
        (0, "55_0|NODE_FAIL|0:0|node1", None),  # a first start has no earlier one (sacct is not asked)
    ],
)
def test_a_job_started_again_after_its_node_died_records_the_lost_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restarts: int, earlier: str, lost: dict[str, str] | None
) -> None:
    """SLURM requeues a job whose node failed (JobRequeue=1): the same job starts again elsewhere. The
    attempt that died with its node recorded nothing; sacct --duplicates says how it ended."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_sacct = bin_dir / "sacct"
    fake_sacct.write_text(f"#!/bin/sh\nprintf '%s\\n' '{earlier}' '55_0|RUNNING|0:0|node2'\n")
    fake_sacct.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_RESTART_COUNT", str(restarts))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rundir.update_status(run_dir, State.RUNNING, host="node1", attempts=[{"job_id": "55_0", "host": "node1"}])
    train = job.TrainJob(run_dir, {}, {}, attempt={"resources": {"mem_gb": 4}})
    attempts = train._attempts({"host": "node2", "slurm_array_job_id": "55", "slurm_array_task_id": "0"})
    if lost is None:
        assert attempts == [{"job_id": "55_0", "host": "node1"}]
        return
    first, again = attempts
    assert first == {"job_id": "55_0", "host": "node1", "failure": "node_fail", **lost}
    assert again["job_id"] == "55_0" and again["host"] == "node2" and again["resources"] == {"mem_gb": 4}


@pytest.mark.parametrize(
    ("job_id", "scontrol", "dropped"),
    [
        (None, None, True),  # outside SLURM (the local executor): nothing can start the job again
        ("77", "echo 'JobId=77 JobName=orch JobState=RUNNING Reason=None'", True),
        ("77", "echo 'JobId=77 JobName=orch JobState=REQUEUED Reason=None'", False),  # requeued as it finished
        ("77", "echo 'JobId=77 JobName=orch JobState=COMPLETING Reason=None'", False),
        ("77", "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1", False),
    ],
)
def test_a_finished_job_keeps_its_pickle_while_slurm_may_start_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, job_id: str | None, scontrol: str | None, dropped: bool
) -> None:
    """A requeue that came while the run was finishing restarts the job after it returns: that start loads
    the submission pickle, so the job drops it only while slurmctld still holds the job as running."""
    pickle = tmp_path / "77_submitted.pkl"
    pickle.write_bytes(b"job")
    monkeypatch.setattr(job, "_submitit_paths", lambda: type("Paths", (), {"submitted_pickle": pickle})())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if scontrol is not None:
        (bin_dir / "scontrol").write_text(f"#!/bin/sh\n{scontrol}\n")
        (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    if job_id is None:
        monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    else:
        monkeypatch.setenv("SLURM_JOB_ID", job_id)
    job.drop_submission_pickle()
    assert pickle.exists() is not dropped


def test_a_job_started_again_for_a_completed_run_trains_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SLURM may start a job again after its run completed (a requeue that came as it finished): the job
    returns the run's metrics and leaves its files alone (quick tests forbid training: it would fail)."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rundir.update_status(run_dir, State.COMPLETED)
    metrics = {"test": {"top1": 0.9, "macro_f1": 0.85}, "timing": {"wall_s": 12.0}}
    rundir.write_json(run_dir / rundir.METRICS, metrics)
    before = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    assert job.TrainJob(run_dir, {}, {})() == metrics
    assert {path.name: path.read_bytes() for path in run_dir.iterdir()} == before
    assert job.ALREADY_COMPLETED in capsys.readouterr().out


@pytest.mark.parametrize(
    ("state", "metrics"),
    [
        (State.COMPLETED, None),  # metrics lost: the run is trained (or resumed) again
        (State.COMPLETED, {"test": {"top1": "high"}}),  # a value that is not what it claims
        (State.FAILED, {"test": {"top1": 0.9}}),
    ],
)
def test_only_a_completed_run_with_valid_metrics_counts_as_done(
    tmp_path: Path, state: State, metrics: dict | None
) -> None:
    rundir.update_status(tmp_path, state)
    if metrics is not None:
        rundir.write_json(tmp_path / rundir.METRICS, metrics)
    assert run_states.completed_metrics(tmp_path) is None
