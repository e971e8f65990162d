"""How long planning a sweep at the run cap takes (goal: 50,000 runs in <= 5 s and <= 500 MB).

Prints the wall and CPU time of `plan()` for a 50,000-run grid and, as the reference floor
measured in the same run, the time to build the same number of plain dicts and hash
them (what planning cannot avoid), with their ratio; then the whole `orchestrate plan`
command on that spec (interpreter start, spec checks, plan, cost estimate, printing) in a
subprocess: wall time, CPU time and peak resident memory. CPU time is the number to compare
on a shared machine (wall time there includes waiting for a core).
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import spec_from_dict

CELLS = 50_000
# Real timm names: plan checks every backbone name (no timm import needed).
BACKBONES = ("resnet10t", "resnet14t", "resnet18", "resnet26", "resnet26d", "resnet34", "resnet50", "resnet50d")
BACKBONES += ("resnet101", "resnet152")


def big_spec() -> dict[str, object]:
    """10 backbones x 10 datasets x 10 ablation rows x 50 seeds = 50,000 runs (the default cap)."""
    return {
        "name": "plan_scale",
        "defaults": {"epochs": 30, "optim": {"name": "adam", "lr": 1e-4}},
        "grid": {
            "backbone": list(BACKBONES),
            "dataset": [{"name": "imagefolder", "root": f"/data/set{i}", "label": f"set{i}"} for i in range(10)],
            "seed": list(range(50)),
        },
        "modifiers": {f"m{i}": {"model.head_dropout": i / 20} for i in range(10)},
        "ablations": {"Baseline": [], **{f"+ m{i}": [f"m{i}"] for i in range(1, 10)}},
    }


def reference(n: int) -> float:
    """Floor: build n small config dicts and hash their canonical JSON."""
    start = time.perf_counter()
    for i in range(n):
        blob = json.dumps({"model": {"backbone": f"resnet{i % 10}"}, "seed": i}, sort_keys=True)
        hashlib.sha256(blob.encode()).hexdigest()
    return time.perf_counter() - start


def whole_command() -> tuple[float, float, float]:
    """`orchestrate plan` on the big spec in a subprocess: (wall s, CPU s, peak RSS MB)."""
    with tempfile.TemporaryDirectory() as folder:
        spec = {**big_spec(), "output_dir": f"{folder}/out"}
        path = Path(folder) / "plan_scale.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        command = [sys.executable, "-m", "orchestrator.cli", "plan", str(path), "--skip-data-check"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall_s = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall_s, cpu_s, after.ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def main() -> None:
    spec = spec_from_dict(big_spec(), where="bench")
    start, cpu = time.perf_counter(), time.process_time()
    runs = plan(spec)
    plan_s, plan_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    ref_s = reference(len(runs))
    per_run_us = plan_s / len(runs) * 1e6
    print(f"plan(): {len(runs)} runs in {plan_s:.3f} s wall, {plan_cpu_s:.3f} s CPU ({per_run_us:.1f} us/run)")
    print(f"reference (dict + sha256 per run): {ref_s:.3f} s; ratio plan/reference = {plan_s / ref_s:.1f}x")
    wall_s, cpu_s, rss_mb = whole_command()
    print(f"orchestrate plan (whole command): {wall_s:.2f} s wall, {cpu_s:.2f} s CPU, peak RSS {rss_mb:.0f} MB")
    print("goal: <= 5 s and <= 500 MB at 50,000 runs")


if __name__ == "__main__":
    main()
