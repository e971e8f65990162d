"""Multi-node cells on the real dev cluster: DDP over gloo with one task on each of 2 nodes,
DeepSpeed ZeRO-2 over 2 nodes with requeue.

The dev nodes are network namespaces with their own addresses and hostnames
(slurm/dev-cluster), each with 2 fake GPUs (gres character devices) and no CUDA:
`nodes: 2, gpus_per_node: 1` really allocates one gres GPU on each node and starts one SLURM
task per node; the tasks rendezvous over TCP at the first node's address and train on CPU
with gloo.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
from cluster_report import cluster_report
from test_slurm import PROFILE, all_in, wait_for

from orchestrator import launch, store
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir
from trainers.runtime import faults

pytestmark = pytest.mark.slurm

# test_convnext has no BatchNorm, so 2 processes x 16 images compute exactly what 1 x 32 does
# (up to float summation order); dropout is off.
SPEC = """
name: {name}
output_dir: {out}
defaults:
  model: {{backbone: test_convnext}}
  data: {{image_size_px: 32, batch_size: 32, num_workers: 0, dataset: {{name: digits, max_samples: {samples}}}}}
  optim: {{name: adam, lr: 1e-3}}
  epochs: {epochs}
  torch_threads: 1
ablations: {{Baseline: []}}
slurm: {{cpus_per_task: 1, timeout_min: 20}}
"""

TWO_NODES = ["defaults.distributed.nodes=2", "defaults.distributed.gpus_per_node=1"]
DDP = TWO_NODES
# Long enough that a requeue after epoch 1 cannot be outrun within KillWait (submitit ignores SIGTERM).
EPOCHS = 12
SAMPLES = 512
# Deadlines of the waits below, not sleeps: generous because both "nodes" share the machine's
# cores with whatever else runs (epochs of these runs took 5-50 s depending on the load).
RUN_DEADLINE_S = 900


def sweep(tmp_path: Path, name: str, epochs: int, overrides: list[str]) -> SweepSpec:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, out=tmp_path / name, epochs=epochs, samples=SAMPLES))
    return load_spec(path, overrides)


def history(spec: SweepSpec) -> list[dict[str, str]]:
    [run] = plan(spec)
    with (store.run_path(spec.output_path, run.run_id) / rundir.HISTORY).open() as handle:
        return list(csv.DictReader(handle))


def metrics(spec: SweepSpec) -> dict:
    [run] = plan(spec)
    return rundir.read_json(store.run_path(spec.output_path, run.run_id) / rundir.METRICS) or {}


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[SweepSpec, str]:
    """An uninterrupted 2-node DDP run on the cluster: its spec and job id."""
    spec = sweep(tmp_path_factory.mktemp("ddp"), "ddp", EPOCHS, DDP)
    [job_id] = launch.submit(spec, plan(spec), "slurm", profile=PROFILE).submitted.values()
    wait_for(lambda: all_in(spec, {"completed", "failed"}), RUN_DEADLINE_S, "the 2-task run to finish")
    assert all_in(spec, {"completed"}), f"DDP run failed:\n{_explain(spec, job_id)}"
    return spec, job_id


def test_two_tasks_form_one_process_group_and_match_one_process(
    tmp_path: Path, ddp_reference: tuple[SweepSpec, str]
) -> None:
    single = sweep(tmp_path, "single", EPOCHS, [])
    assert launch.submit(single, plan(single), "local").failed == []
    ddp, job_id = ddp_reference
    tasks = subprocess.run(
        ["sacct", "-n", "-P", "-o", "NTasks,NNodes,NodeList", "-j", job_id], capture_output=True, text=True
    )
    assert "2|2|node[1-2]" in tasks.stdout.split(), f"expected a 2-task step on 2 nodes, sacct says {tasks.stdout!r}"
    found = metrics(ddp)
    assert found["provenance"]["num_processes"] == 2
    assert found["parallel"]["per_device_batch"] == 16 and found["parallel"]["distributed_type"] == "MULTI_CPU"
    for one, two in zip(history(single), history(ddp), strict=True):
        assert float(two["train_loss"]) == pytest.approx(float(one["train_loss"]), rel=1e-3)
    assert found["test"]["top1"] == pytest.approx(metrics(single)["test"]["top1"], abs=0.02)


def test_ddp_run_requeued_mid_training_resumes_and_ends_as_the_uninterrupted_one(
    tmp_path: Path, ddp_reference: tuple[SweepSpec, str]
) -> None:
    spec = sweep(tmp_path, "ddp_requeued", EPOCHS, DDP)
    [job_id] = launch.submit(spec, plan(spec), "slurm", profile=PROFILE).submitted.values()
    history_file = _run_dir(spec) / rundir.HISTORY
    wait_for(
        lambda: history_file.exists() and len(history_file.read_text().splitlines()) >= 2, RUN_DEADLINE_S, "epoch 1"
    )
    subprocess.run(["scontrol", "requeue", job_id], check=True)  # kills both tasks, no checkpoint() call
    wait_for(lambda: all_in(spec, {"completed", "failed"}), RUN_DEADLINE_S, "the requeued DDP run to finish")
    status = rundir.read_json(_run_dir(spec) / rundir.STATUS) or {}
    assert status["state"] == "completed", _explain(spec, job_id)
    assert [h["state"] for h in status["history"]].count("running") >= 2, "the job never restarted"
    resumed, reference = history(spec), history(ddp_reference[0])
    assert [row["epoch"] for row in resumed] == [str(epoch) for epoch in range(1, EPOCHS + 1)]
    # Same optimizer, RNG and sampler state restored on both ranks: the same numbers as without requeue.
    for column in ("train_loss", "val_loss", "val_top1"):
        assert [row[column] for row in resumed] == [row[column] for row in reference], column
    assert metrics(spec)["test"] == metrics(ddp_reference[0])["test"]


def _run_dir(spec: SweepSpec) -> Path:
    [run] = plan(spec)
    return store.run_path(spec.output_path, run.run_id)


def _explain(spec: SweepSpec, job_id: str) -> str:
    """What SLURM, status.json and every task's job log say: CI keeps nothing else of a failed run."""
    logs = sorted((spec.output_path / "slurm").glob("*_log.*"))
    return cluster_report([job_id], [_run_dir(spec) / rundir.STATUS, *logs], lines=40)


def test_deepspeed_zero2_trains_and_resumes_after_preemption(tmp_path: Path) -> None:
    spec = sweep(
        tmp_path, "zero2", 4, ["defaults.distributed={strategy: deepspeed, zero_stage: 2, nodes: 2, gpus_per_node: 1}"]
    )
    [job_id] = launch.submit(spec, plan(spec), "slurm", profile=PROFILE).submitted.values()
    path = _run_dir(spec)
    history_file = path / rundir.HISTORY
    # First use compiles DeepSpeed's CPU ops (cached in TORCH_EXTENSIONS_DIR afterwards).
    wait_for(lambda: history_file.exists() and len(history_file.read_text().splitlines()) >= 2, 420, "epoch 1")
    first_epoch = history_file.read_text().splitlines()[1]
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    explain = lambda: _explain(spec, job_id)  # noqa: E731
    wait_for(lambda: all_in(spec, {"completed", "failed"}), 420, "the preempted ZeRO-2 run to finish", explain)
    status = rundir.read_json(path / rundir.STATUS) or {}
    assert status["state"] == "completed", explain()
    assert [h["state"] for h in status["history"]].count("running") >= 2, "the job never restarted"
    lines = history_file.read_text().splitlines()
    assert lines[1] == first_epoch, "epoch 1 was trained again: the ZeRO-2 state was not resumed"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3", "4"]
    found = metrics(spec)
    assert 0.0 <= found["test"]["top1"] <= 1.0
    assert found["parallel"]["processes"] == 2 and found["parallel"]["zero_stage"] == 2


def test_an_unfit_second_node_fails_every_rank_and_is_the_one_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """node2 (rank 1) fails its preflight: rank 0 learns it in the verdict exchange (no all-reduce
    timeout), records node2 as the unfit node, and both tasks exit 77."""
    monkeypatch.setenv(faults.ENV, "preflight_fail@node2")
    spec = sweep(tmp_path, "unfit", 1, DDP)
    [job_id] = launch.submit(spec, plan(spec), "slurm", profile=PROFILE).submitted.values()
    wait_for(
        lambda: all_in(spec, {"failed"}),
        RUN_DEADLINE_S,
        "the run to fail its preflight",
        lambda: _explain(spec, job_id),
    )
    status = rundir.read_json(_run_dir(spec) / rundir.STATUS) or {}
    assert status.get("failure") == "preflight_fail", _explain(spec, job_id)
    assert status["failure_reason"] == "rank 1 on node2: injected fault: preflight fails on node2"
    assert status["attempts"][-1]["node"] == "node2" and status["host"] == "node1"
    logs = [path.read_text() for path in sorted((spec.output_path / "slurm").glob("*_log.err"))]
    assert len(logs) == 2 and all("preflight failed on node2" in log for log in logs), _explain(spec, job_id)
