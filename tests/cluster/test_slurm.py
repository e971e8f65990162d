"""Against the real dev cluster (`make cluster-up`): submission, resubmission, cancel, scale, preemption.

No mocks: every test here talks to slurmctld through sbatch/squeue/sacct/scancel.
"""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from polling import Explain, wait_for

from orchestrator import launch, store
from orchestrator.cli.main import main
from orchestrator.launch import slurmcli as slurm
from orchestrator.launch.job import ALREADY_COMPLETED
from orchestrator.launch.status import sweep_status
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
PROFILE = str(REPO / "slurm" / "profiles" / "dev.yaml")

# Small real training: digits subset, 16 px, one torch thread (so runs are bit-reproducible).
TRAIN_SPEC = """
name: {name}
output_dir: {out}
defaults:
  data: {{image_size_px: 16, batch_size: 32, num_workers: 0, dataset: {{name: digits, max_samples: 256}}}}
  optim: {{name: adam, lr: 3e-3}}
  epochs: {epochs}
  torch_threads: 1
grid:
  backbone: [resnet10t]
  seed: [0]
modifiers:
  drop: {{model.head_dropout: 0.3}}
  lr: {{optim.lr: 1e-3}}
ablations:
  Baseline: []
  + Dropout: [drop]
  + Dropout + LR: [drop, lr]
slurm: {{cpus_per_task: 1, timeout_min: 20}}
"""


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    """The dev cluster must be up: a missing cluster is a failure, never a skip."""
    if not slurm.available():
        pytest.fail("SLURM client commands not found: run `make cluster-up` (make test does)")
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.strip(), f"sinfo failed: {result.stderr}"


def write(tmp_path: Path, name: str, epochs: int = 1, text: str = TRAIN_SPEC) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.format(name=name, out=tmp_path / name, epochs=epochs))
    return path


def submit(spec: SweepSpec, **kwargs: Any) -> launch.Outcome:
    return launch.submit(spec, plan(spec), "slurm", profile=PROFILE, **kwargs)


def states(spec: SweepSpec) -> dict[str, str]:
    return {row.run.run_id: row.state for row in sweep_status(plan(spec), spec.output_path).runs}


def all_in(spec: SweepSpec, wanted: set[str]) -> bool:
    return set(states(spec).values()) <= wanted


def test_submit_runs_to_completion_and_resubmit_submits_nothing(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "sweep"))
    outcome = submit(spec)
    assert len(outcome.submitted) == 3
    manifest = store.read_manifest(spec.output_path)
    assert len(manifest["arrays"]) == 1, "one sweep, one array: never one sbatch per run"
    wait_for(lambda: all_in(spec, {"completed"}), 300, "3 runs to complete")
    # Resubmission: everything finished, nothing goes to SLURM again.
    assert submit(spec).submitted == {}
    for run in plan(spec):
        metrics = rundir.read_json(store.run_path(spec.output_path, run.run_id) / rundir.METRICS)
        assert metrics is not None and 0.0 <= metrics["test"]["top1"] <= 1.0
    # Finished tasks drop their submission pickle; their logs stay.
    folder = spec.output_path / store.SUBMITIT_DIR
    assert not list(folder.glob("*_submitted.pkl"))
    assert list(folder.glob("*_log.out"))
    assert main(["collect", str(spec.source)]) == 0
    table = (spec.output_path / "tables" / "table.md").read_text()
    assert "| Baseline |" in table and "| + Dropout |" in table and " - |" not in table.split("GFLOPs")[1]
    # Requested vs used: the spec's 20-minute limit, recorded at submit, against each run's use.
    with (spec.output_path / "tables" / "usage.csv").open() as handle:
        usage = list(csv.DictReader(handle))
    assert len(usage) == 3 and all(row["executor"] == "slurm" and not row["problem"] for row in usage), usage
    assert all(float(row["time_limit_s"]) == 20 * 60 and 0 < float(row["time_fraction"]) < 1 for row in usage)
    assert all(float(row["peak_rss_mib"]) > 0 for row in usage)


def test_pending_runs_are_not_resubmitted_and_cancel_cancels(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "held"), ["slurm.additional_parameters.begin=now+1hour"])
    first = submit(spec)
    assert len(first.submitted) == 3
    assert submit(spec).submitted == {}, "pending jobs must not be submitted twice"
    assert main(["cancel", str(spec.source), "slurm.additional_parameters.begin=now+1hour"]) == 0
    wait_for(lambda: all_in(spec, {"cancelled"}), 60, "sacct to report the cancelled jobs")
    # Cancelled runs are submitted again on the next submit.
    again = submit(spec)
    assert set(again.submitted) == set(first.submitted)
    assert set(again.submitted.values()).isdisjoint(first.submitted.values())
    slurm.cancel({job.split("_")[0] for job in again.submitted.values()})


def test_3000_runs_become_arrays_within_max_array_size(tmp_path: Path) -> None:
    spec_text = TRAIN_SPEC.replace("seed: [0]", "seed: {seeds}")
    path = tmp_path / "big.yaml"
    path.write_text(spec_text.format(name="big", out=tmp_path / "big", epochs=1, seeds=list(range(1000))))
    spec = load_spec(path, ["slurm.additional_parameters.begin=now+1hour"])
    assert len(plan(spec)) == 3000
    limit = slurm.max_array_size(spec.slurm)
    assert limit == 1001, "the dev cluster keeps SLURM's default MaxArraySize"
    outcome = submit(spec)
    try:
        manifest = store.read_manifest(spec.output_path)
        sizes = sorted(entry["size"] for entry in manifest["arrays"].values())
        assert sizes == [998, 1001, 1001]
        assert len(outcome.submitted) == 3000
        live = slurm.active_ids(manifest["arrays"])
        assert len(live) == 3000 and set(live.values()) == {"PENDING"}
    finally:
        slurm.cancel(store.read_manifest(spec.output_path)["arrays"])


# `scontrol requeue` sends SIGTERM (ignored by submitit) and SIGKILL KillWait (5 s) later: the
# epochs after the first should take longer than that, or the run completes before it is killed
# (seen with 5 epochs of ~1.5 s on the 2-node cluster, where the job has a node to itself); if it
# does all the same, the restarted job finds the run finished: the test waits for the restart.
# On a quiet machine 8 epochs of 256 images still end within KillWait, so interrupted runs train
# on every digit (about 1,400 training images): the epochs after the first outlast it.
INTERRUPTED_EPOCHS = 8
INTERRUPTED = ["ablations={Baseline: []}", "defaults.data.dataset.max_samples=null"]


def finished_after_restart(run_dir: Path) -> bool:
    """status.json says the job ran twice (it was requeued) and then finished, or the run completed
    before the requeue's SIGKILL and the restarted job found it done (completed_before_kill)."""
    status = rundir.read_json(run_dir / rundir.STATUS) or {}
    if status.get("state") not in ("completed", "failed"):
        return False
    return [h["state"] for h in status.get("history", [])].count("running") >= 2 or completed_before_kill(status)


def completed_before_kill(status: dict[str, Any]) -> bool:
    """The run outran SLURM's SIGKILL (KillWait after the requeue's SIGTERM, which submitit ignores) and
    completed; the restarted job said in the job log (status.json's `log_out`) that it had nothing to train."""
    log = status.get("log_out")
    if status.get("state") != "completed" or not isinstance(log, str) or not Path(log).is_file():
        return False
    return ALREADY_COMPLETED in Path(log).read_text(errors="replace")


Pending = dict[str, tuple[Callable[[], bool], Callable[[], None]]]


def interrupt_each(pending: Pending, timeout_s: float, what: str, explain: Explain = None) -> None:
    """Runs in flight side by side: poll every run's condition (name -> (ready, interrupt)) together and
    interrupt each run as soon as its own holds (waiting for one after the other could let the second
    run pass the moment it is waited for)."""
    left = dict(pending)

    def interrupt_the_ready() -> bool:
        for name, (ready, interrupt) in list(left.items()):
            if ready():
                del left[name]
                interrupt()
        return not left

    wait_for(interrupt_the_ready, timeout_s, what, explain)


def _interrupt_and_finish(tmp_path: Path, interrupts: dict[str, Callable[[str], None]]) -> dict[str, dict]:
    """Submit one run per interrupt, all at once (they train side by side on the cluster's CPUs), interrupt
    each after its first epoch, wait for every one to finish; check each one's history, return its metrics."""
    specs = {name: load_spec(write(tmp_path, name, epochs=INTERRUPTED_EPOCHS), INTERRUPTED) for name in interrupts}
    paths = {name: store.run_path(spec.output_path, plan(spec)[0].run_id) for name, spec in specs.items()}
    jobs = {name: submit(spec).submitted[plan(spec)[0].run_id] for name, spec in specs.items()}
    first_epoch: dict[str, str] = {}

    def after_epoch_1(name: str) -> bool:
        history = paths[name] / rundir.HISTORY
        lines = history.read_text().splitlines() if history.exists() else []
        if len(lines) >= 2:
            first_epoch[name] = lines[1]
        return name in first_epoch

    ready = {name: (partial(after_epoch_1, name), partial(interrupts[name], jobs[name])) for name in interrupts}
    interrupt_each(ready, 300, "the first epoch of each run")
    wait_for(lambda: all(map(finished_after_restart, paths.values())), 420, "the runs to restart and finish")
    found = {}
    for name, path in paths.items():
        status = rundir.read_json(path / rundir.STATUS) or {}
        assert status["state"] == "completed", (name, status.get("error"))
        lines = (path / rundir.HISTORY).read_text().splitlines()
        assert lines[1] == first_epoch[name], f"{name}: epoch 1 was trained again: the run restarted from scratch"
        assert [line.split(",")[0] for line in lines[1:]] == [str(e) for e in range(1, INTERRUPTED_EPOCHS + 1)], name
        found[name] = json.loads((path / rundir.METRICS).read_text())
    return found


def test_preempted_and_requeued_runs_resume_with_identical_results(tmp_path: Path) -> None:
    reference_spec = load_spec(write(tmp_path, "reference", epochs=INTERRUPTED_EPOCHS), INTERRUPTED)
    assert launch.submit(reference_spec, plan(reference_spec), "local").failed == []
    [ref_run] = plan(reference_spec)
    reference = json.loads((store.run_path(reference_spec.output_path, ref_run.run_id) / rundir.METRICS).read_text())

    def preempt(job_id: str) -> None:  # what SLURM sends before preemption or the time limit
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)

    def requeue(job_id: str) -> None:  # kills the job without calling checkpoint()
        subprocess.run(["scontrol", "requeue", job_id], check=True)

    for name, metrics in _interrupt_and_finish(tmp_path, {"preempted": preempt, "requeued": requeue}).items():
        assert metrics["test"] == reference["test"], f"{name} run differs from the uninterrupted one"
        assert metrics["best_epoch"] == reference["best_epoch"]
