"""Wall time of `orchestrate submit` for 1000- and 3000-run sweeps on the dev cluster.

Reference floor, measured in the same run: a bare submitit `batch()` of the same
number of trivial functions, chunked to the same MaxArraySize. Every job is submitted
held (`--begin=now+1hour`) and cancelled right after, so nothing trains.

    make cluster-up && .venv/bin/python bench/submit_scale.py
Goal: 1000 runs in under 2 s, 3000 runs in under 5 s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import submitit
from rich.console import Console

from orchestrator import launch, store
from orchestrator.launch import slurmcli as slurm
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

SPEC = """
name: submit_scale
output_dir: {out}
defaults: {{data: {{image_size_px: 32}}, epochs: 1}}
grid: {{backbone: [resnet18, resnet50], dataset: [digits], seed: {seeds}}}
modifiers: {{drop: {{model.head_dropout: 0.5}}}}
ablations: {{Baseline: [], + Dropout: [drop]}}
slurm: {{partition: debug, cpus_per_task: 1, additional_parameters: {{begin: now+1hour}}}}
"""


def trivial(x: int) -> int:
    """What the floor submits."""
    return x


def bare_submitit(n: int, folder: Path, array_size: int) -> float:
    """Seconds to submit n trivial functions with submitit batch(), chunked like orchestrate does."""
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(partition="debug", cpus_per_task=1, additional_parameters={"begin": "now+1hour"})
    started = time.perf_counter()
    jobs = []
    for chunk in slurm.chunks(list(range(n)), array_size):
        with executor.batch():
            jobs += [executor.submit(trivial, x) for x in chunk]
    elapsed = time.perf_counter() - started
    slurm.cancel({str(job.job_id).split("_")[0] for job in jobs})
    return elapsed


def orchestrate_submit(n: int, folder: Path) -> float:
    """Seconds for load + plan + submit of an n-run sweep (what `orchestrate submit` does)."""
    path = folder / "spec.yaml"
    path.write_text(SPEC.format(out=folder / "out", seeds=list(range(n // 4))))
    started = time.perf_counter()
    spec = load_spec(path)
    runs = plan(spec)
    assert len(runs) == n
    outcome = launch.submit(spec, runs, "slurm", console=Console(quiet=True))
    elapsed = time.perf_counter() - started
    assert len(outcome.submitted) == n
    slurm.cancel(store.read_manifest(spec.output_path)["arrays"])
    return elapsed


def main() -> None:
    if not slurm.available():
        raise SystemExit("no SLURM here: run `make cluster-up` first")
    goals = {1000: 2.0, 3000: 5.0}
    for n, goal_s in goals.items():
        with tempfile.TemporaryDirectory() as tmp:
            floor_s = bare_submitit(n, Path(tmp) / "bare", slurm.DEFAULT_MAX_ARRAY_SIZE)
            ours_s = orchestrate_submit(n, Path(tmp))
        print(
            f"{n:5d} runs: orchestrate submit {ours_s:.2f} s (goal < {goal_s:.0f} s), "
            f"bare submitit batch() {floor_s:.2f} s, ratio {ours_s / floor_s:.2f}x"
        )


if __name__ == "__main__":
    main()
