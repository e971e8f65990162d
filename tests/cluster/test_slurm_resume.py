"""Mid-epoch resume through the real dev cluster: USR2 (`scancel --signal=USR2`, what SLURM
sends before a preemption or the time limit) saves at the next step boundary and requeues;
`scontrol requeue` kills without warning and the run resumes from its last periodic
mid-epoch checkpoint. Both end bit for bit like the uninterrupted run.

The many-points proof runs in-process (tests/training/test_resume_steps.py); this checks the path
through SLURM, submitit's handler and the job wrapper.
"""

from __future__ import annotations

import csv
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from test_slurm import PROFILE, finished_after_restart, wait_for

from orchestrator import launch, store
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir
from trainers.loop import checkpoint

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# 512 training images in batches of 16: 32 steps per epoch, a periodic checkpoint after every
# one of them (checkpoint_every_min tiny) in the interrupted runs, so the job is stopped in the
# middle of an epoch and `scontrol requeue` resumes from a mid-epoch save (a coarser interval
# let a fast machine finish epoch 1 before any mid-epoch save). 6 epochs: `scontrol requeue`
# sends SIGTERM, which submitit ignores, and SIGKILL only KillWait (5 s) later; the run should
# not finish before that (epochs take 1-3 s here). If it does all the same, the restarted job
# finds it finished and only evaluates: the test waits for that restart either way.
SPEC = """
name: {name}
output_dir: {out}
defaults:
  model: {{backbone: test_resnet, head_dropout: 0.2}}
  data: {{image_size_px: 16, batch_size: 16, num_workers: 0, dataset: {{name: digits, max_samples: 512}},
          augment: {{hflip_p: 0.5, rotate_deg: 10, rotate_p: 0.5}}}}
  optim: {{name: adam, lr: 1e-3}}
  epochs: 6
  torch_threads: 1
{extra}
ablations: {{Baseline: []}}
slurm: {{cpus_per_task: 1, timeout_min: 20}}
"""


def _spec(tmp_path: Path, name: str, periodic: bool = True) -> SweepSpec:
    extra = "  checkpoint_every_min: 1.0e-9" if periodic else ""  # saves do not change the numbers
    return spec_with(tmp_path, name, extra)


def spec_with(tmp_path: Path, name: str, extra: str) -> SweepSpec:
    """SPEC's one-run sweep named `name` under tmp_path, `extra` (YAML lines) added to its defaults."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, out=tmp_path / name, extra=extra))
    return load_spec(path)


def _run_dir(spec: SweepSpec) -> Path:
    [run] = plan(spec)
    return store.run_path(spec.output_path, run.run_id)


def _history(spec: SweepSpec) -> list[dict[str, str]]:
    with (_run_dir(spec) / rundir.HISTORY).open() as handle:
        rows = list(csv.DictReader(handle))
    return [{k: v for k, v in row.items() if k not in ("epoch_s", "train_images_per_s")} for row in rows]


def _mid_epoch_1(run_dir: Path) -> bool:
    """The last checkpoint is in the middle of epoch 1 (the job is training there)."""
    folder = checkpoint.find_complete(run_dir / rundir.CHECKPOINTS, checkpoint.LAST)
    if folder is None:
        return False
    try:
        state = checkpoint.read_state(folder)
    except (FileNotFoundError, ValueError):
        return False  # swapped while we read
    return state["epochs_done"] == 0 and state.get("step_in_epoch", 0) >= 2


def _interrupted(tmp_path: Path, name: str, interrupt: Callable[[str], None]) -> tuple[SweepSpec, str]:
    spec = _spec(tmp_path, name)
    [job_id] = launch.submit(spec, plan(spec), "slurm", profile=PROFILE).submitted.values()
    wait_for(lambda: _mid_epoch_1(_run_dir(spec)), 600, "the job to be in the middle of epoch 1")
    interrupt(job_id)
    wait_for(lambda: finished_after_restart(_run_dir(spec)), 600, f"the {name} run to restart and finish")
    status = rundir.read_json(_run_dir(spec) / rundir.STATUS) or {}
    assert status["state"] == "completed", status.get("error")
    log = "".join(path.read_text() for path in (spec.output_path / store.SUBMITIT_DIR).glob("*_log.out"))
    return spec, log


def test_usr2_and_requeue_mid_epoch_resume_bit_identical(tmp_path: Path) -> None:
    reference = _spec(tmp_path, "reference", periodic=False)
    assert launch.submit(reference, plan(reference), "local").failed == []
    expected = rundir.read_json(_run_dir(reference) / rundir.METRICS) or {}

    def usr2(job_id: str) -> None:
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)

    def requeue(job_id: str) -> None:  # no signal, no checkpoint() call: the last periodic save counts
        subprocess.run(["scontrol", "requeue", job_id], check=True)

    for name, interrupt in (("usr2", usr2), ("requeued", requeue)):
        spec, log = _interrupted(tmp_path, name, interrupt)
        assert "resumed from" in log, f"{name}: not resumed:\n{log[-2000:]}"
        if name == "usr2":  # saved at the step boundary after the signal, then requeued by submitit
            assert "at epoch 1 micro-batch" in log, f"not resumed in the middle of epoch 1:\n{log[-2000:]}"
            assert "Requeued job" in log + _err_logs(spec), f"submitit did not requeue after the save:\n{log[-2000:]}"
        assert _history(spec) == _history(reference), name
        found = rundir.read_json(_run_dir(spec) / rundir.METRICS) or {}
        assert found["test"] == expected["test"] and found["val"] == expected["val"], name


def _err_logs(spec: SweepSpec) -> str:
    return "".join(path.read_text() for path in (spec.output_path / store.SUBMITIT_DIR).glob("*_log.err"))
