"""Seconds of `collect`, `collect` with the report, `status` and a second `collect` on 10,000 runs.

Writes N synthetic finished run folders through the real file contract (store.prepare's
config.yaml, status.json, metrics.json, history.csv, confusion_matrix.csv, per_class.csv) for one
sweep of 2 backbones x 2 ablation rows x N/4 seeds, then times, in this process:

- collect --no-report (first, no index)       goal <= 5 s
- collect with the report (first, no index)   goal <= 30 s
- status (plan + every status.json)           goal <= 2 s
- a second collect after 10 runs changed      goal <= 1 s

against the reference measured in the same run: reading the same status.json and metrics.json
files with `json.load` alone (the floor any collect pays).

    .venv/bin/python bench/collect_scale.py [N]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.launch import status
from orchestrator.results import collect
from orchestrator.sweep import store
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import load_spec
from trainers import rundir
from trainers.rundir import State

SPEC = """
name: collect_scale
output_dir: {out}
defaults: {{data: {{image_size_px: 32}}, epochs: 3}}
grid: {{backbone: [resnet18, resnet50], dataset: [digits], seed: {seeds}}}
modifiers: {{drop: {{model.head_dropout: 0.5}}}}
ablations: {{Baseline: [], + Dropout: [drop]}}
tables: [{{detect_delta: 0.5}}]
"""
CLASSES = [str(d) for d in range(10)]
HISTORY = "epoch,train_loss,val_loss,val_top1\n1,1.2,1.3,0.61\n2,0.8,0.9,0.82\n3,0.5,0.6,0.9{d}\n"
CONFUSION = (
    "true \\ predicted,"
    + ",".join(CLASSES)
    + "\n"
    + "".join(f"{c}," + ",".join("9" if c == o else "0" for o in CLASSES) + "\n" for c in CLASSES)
)
PER_CLASS = "class,precision,recall,f1,support\n" + "".join(f"{c},0.9,0.9,0.9,9\n" for c in CLASSES)


def write_runs(runs: list[RunSpec], root: Path) -> None:
    """Finished run folders as the trainer leaves them (top-1 varies with seed and row)."""
    for index, run in enumerate(runs):
        path = store.run_path(root, run.run_id)
        store.prepare(run, path)
        # Seed noise shared by a seed's two rows (paired), plus each run's own, plus the row's effect.
        noise = 0.002 * ((run.seed * 7919) % 13 - 6) + 0.001 * ((index * 104729) % 11 - 5)
        top1 = 0.90 + noise + (0.004 if run.ablation != "Baseline" else 0.0)
        write_metrics(path, top1, index)
        rundir.update_status(path, State.COMPLETED)
        (path / rundir.HISTORY).write_text(HISTORY.format(d=run.seed % 10))
        (path / "confusion_matrix.csv").write_text(CONFUSION)
        (path / "per_class.csv").write_text(PER_CLASS)


def write_metrics(path: Path, top1: float, index: int) -> None:
    metrics = {
        "test": {"top1": top1, "macro_f1": top1 - 0.01, "loss": 0.3},
        "complexity": {"gflops": 1.8 if "resnet18" in str(path) else 4.1, "params_m": 11.7},
        "provenance": {"git_commit": "abcdef1234567890", "device": "cpu", "num_processes": 1},
        "timing": {"wall_s": 60.0 + index % 7},
    }
    rundir.write_json(path / rundir.METRICS, metrics)


def json_reference(runs: list[RunSpec], root: Path) -> float:
    """The floor: json.load of every run's status.json and metrics.json."""
    started = time.perf_counter()
    for run in runs:
        path = store.run_path(root, run.run_id)
        for name in (rundir.STATUS, rundir.METRICS):
            with (path / name).open(encoding="utf-8") as handle:
                json.load(handle)
    return time.perf_counter() - started


def timed(label: str, goal_s: float, reference_s: float, action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    elapsed = time.perf_counter() - started
    verdict = "ok" if elapsed <= goal_s else "OVER"
    print(f"{label:<42} {elapsed:7.2f} s  goal <= {goal_s:g} s [{verdict}]  {elapsed / reference_s:6.1f}x json.load")
    return elapsed


def main(n: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="collect_scale-"))  # not /dev: specs refuse system folders
    try:
        path = folder / "sweep.yaml"
        path.write_text(SPEC.format(out=folder / "out", seeds=list(range(n // 4))))
        spec = load_spec(path)
        runs = plan(spec)
        root = spec.output_path
        store.write_snapshot(spec, root)
        started = time.perf_counter()
        write_runs(runs, root)
        print(f"{len(runs)} run folders written in {time.perf_counter() - started:.0f} s (not timed below)")
        reference_s = json_reference(runs, root)
        print(f"{'reference: json.load of status + metrics':<42} {reference_s:7.2f} s")
        started = time.perf_counter()
        plan(load_spec(path))
        plan_s = time.perf_counter() - started
        print(f"{'of each below: load + plan (sweep/)':<42} {plan_s:7.2f} s  (load average {os.getloadavg()[0]:.1f})")
        index = root / collect.INDEX_FILE
        timed("collect --no-report (no index)", 5.0, reference_s, lambda: collect.write_tables(spec, root))
        index.unlink()
        timed("collect with the report (no index)", 30.0, reference_s, lambda: report(spec, root))
        timed("status (plan + status.json of every run)", 2.0, reference_s, lambda: status_of(path))
        for run in runs[:10]:
            write_metrics(store.run_path(root, run.run_id), 0.5, 0)
        timed("second collect, 10 runs changed", 1.0, reference_s, lambda: collect.write_tables(spec, root))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(spec: object, root: Path) -> None:
    written = collect.write_tables(spec, root, report=True)  # type: ignore[arg-type]
    assert written.report_path is not None and written.usable > 0


def status_of(path: Path) -> None:
    spec = load_spec(path)
    current = status.sweep_status(plan(spec), spec.output_path)
    assert current.counts["completed"] > 0


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
