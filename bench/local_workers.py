"""Start-up cost of local runs: the demo sweep's wall time over the sum of its runs' epoch times.

Runs the demo (12 runs) twice into a temporary folder, measured back to back in one run:
  warm    `orchestrate submit --executor local` (warm workers: torch, timm, trainer imported once)
  fresh   the reference: one fresh process per run (submitit's LocalExecutor, what `local` did before)
and prints, for each, wall seconds, the sum of epoch seconds from every run's history.csv, and
their ratio (goal for warm: <= 1.5).

    .venv/bin/python bench/local_workers.py [--workers N] [--skip-fresh]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from rich.console import Console

from orchestrator import launch, store
from orchestrator.launch.base import cleanup_for, train_job
from orchestrator.store import run_states
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir

DEMO = Path(__file__).resolve().parents[1] / "sweeps" / "demo.yaml"


def epoch_seconds(spec: SweepSpec, runs: list[RunSpec]) -> float:
    """Sum of `epoch_s` over every epoch of every run."""
    total = 0.0
    for run in runs:
        with (store.run_path(spec.output_path, run.run_id) / rundir.HISTORY).open() as handle:
            total += sum(float(row["epoch_s"]) for row in csv.DictReader(handle))
    return total


def warm(out: Path, workers: int) -> tuple[float, float]:
    """(wall s, epoch s) of the demo through the warm local launcher."""
    spec = load_spec(DEMO, [f"output_dir={out}"])
    runs = plan(spec)
    started = time.perf_counter()
    outcome = launch.submit(spec, runs, "local", workers=workers, console=Console(quiet=True))
    wall = time.perf_counter() - started
    assert len(outcome.completed) == len(runs), outcome.failed
    return wall, epoch_seconds(spec, runs)


def fresh(out: Path) -> tuple[float, float]:
    """(wall s, epoch s) of the demo with one fresh process per run (submitit LocalExecutor)."""
    import submitit

    spec = load_spec(DEMO, [f"output_dir={out}"])
    runs = plan(spec)
    records = run_states.inspect(runs, spec.output_path)
    started = time.perf_counter()
    for record in records:
        store.prepare(record.run, record.path)
        executor = submitit.LocalExecutor(folder=record.path / rundir.LOGS)
        executor.submit(train_job(record, cleanup_for(spec, smoke=False))).result()
    return time.perf_counter() - started, epoch_seconds(spec, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-fresh", action="store_true", help="measure only the warm workers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("warm", *warm(Path(tmp) / "warm", args.workers))]
        if not args.skip_fresh:
            rows.append(("fresh (reference)", *fresh(Path(tmp) / "fresh")))
    print(f"demo: 12 runs, {args.workers} warm worker(s)")
    print(f"{'launcher':<18} {'wall s':>8} {'epochs s':>9} {'wall/epochs':>12}")
    for name, wall, epochs in rows:
        print(f"{name:<18} {wall:8.1f} {epochs:9.1f} {wall / epochs:12.2f}")
    if len(rows) == 2:
        print(f"warm wall / fresh wall: {rows[0][1] / rows[1][1]:.2f}")


if __name__ == "__main__":
    main()
