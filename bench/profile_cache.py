"""`orchestrate profile` on report 004's sweep: seconds for the whole sweep against profiling its
distinct model shapes alone (the floor), measured in the same run.

The profile cache key holds only what shapes the model (backbone, head, inserted modules,
input size, the dataset's classes), so the 18 cells of 6 ablation rows x 3 datasets cost the
time of their distinct shapes.

    .venv/bin/python bench/profile_cache.py
"""

from __future__ import annotations

import time
from pathlib import Path

from orchestrator.checks import complexity
from orchestrator.sweep.budget import complexity_key
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

SWEEP = Path(__file__).resolve().parents[1] / "sweeps" / "ablation_cub.yaml"
REPEATS = 3


def main() -> None:
    spec = load_spec(SWEEP, ["output_dir=/tmp/profile-cache-bench"])
    runs = plan(spec)
    complexity.profile_runs(runs[:1])  # imports and timm's registry, outside both timings
    distinct = list({complexity_key(run.config): run for run in runs}.values())
    sweep_times, floor_times = [], []
    for _ in range(REPEATS):  # interleaved, best of REPEATS: the machine's other load hits both alike
        frame, seconds = complexity.profile_frame(spec, runs)
        sweep_times.append(seconds)
        started = time.perf_counter()
        complexity.profile_runs(distinct)
        floor_times.append(time.perf_counter() - started)
    sweep_s, floor_s = min(sweep_times), min(floor_times)
    print(f"report 004 sweep: {len(runs)} runs, {len(frame)} cells, {len(distinct)} distinct model shapes")
    print(f"profile (whole sweep)         {sweep_s:6.2f} s  (best of {REPEATS})")
    print(f"distinct shapes alone (floor) {floor_s:6.2f} s")
    print(f"ratio                         {sweep_s / floor_s:6.2f}")


if __name__ == "__main__":
    main()
