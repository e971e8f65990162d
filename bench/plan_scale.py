"""How long planning a large sweep takes (goal: 10,000 cells in under 1 s).

Prints the wall time of `plan()` for a 10,000-run grid and, as the reference floor
measured in the same run, the time to build the same number of plain dicts and hash
them (what planning cannot avoid), with their ratio.
"""

from __future__ import annotations

import hashlib
import json
import time

from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import spec_from_dict

CELLS = 10_000


def big_spec() -> dict[str, object]:
    """10 backbones x 10 datasets x 10 ablation rows x 10 seeds = 10,000 runs."""
    return {
        "name": "plan_scale",
        "defaults": {"epochs": 30, "optim": {"name": "adam", "lr": 1e-4}},
        "grid": {
            "backbone": [f"resnet{i}" for i in range(10)],
            "dataset": [{"name": "imagefolder", "root": f"/data/set{i}", "label": f"set{i}"} for i in range(10)],
            "seed": list(range(10)),
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


def main() -> None:
    spec = spec_from_dict(big_spec(), where="bench")
    start = time.perf_counter()
    runs = plan(spec)
    plan_s = time.perf_counter() - start
    ref_s = reference(len(runs))
    print(f"plan: {len(runs)} runs in {plan_s:.3f} s ({plan_s / len(runs) * 1e6:.1f} us/run); goal < 1 s")
    print(f"reference (dict + sha256 per run): {ref_s:.3f} s; ratio plan/reference = {plan_s / ref_s:.1f}x")


if __name__ == "__main__":
    main()
