"""How long `orchestrate plan` takes to refuse a hostile spec, against planning a tiny valid one.

Times the whole command (a fresh `python -m orchestrator.cli plan` process, interpreter start
included) on:

  valid         the 6-run tiny sweep of tests/conftest.py (the reference)
  alias bomb    9 levels of 9 aliases each (9^9 = 387 million nodes once expanded)
  600k grid     1,000 seeds x 200 head_dropout values x 3 ablation rows = 600,000 runs

and prints seconds (best of --repeat) with the ratio to the valid plan. Run:

    .venv/bin/python bench/plan_refusals.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.sweep import yamlio

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "unit" / "sweep")]  # the tests' own hostile inputs
from conftest import TINY_SPEC  # noqa: E402
from test_hostile import alias_bomb  # noqa: E402


def _files(folder: Path) -> dict[str, Path]:
    valid = folder / "valid.yaml"
    valid.write_text(TINY_SPEC.format(out=folder / "out"))
    bomb = folder / "bomb.yaml"
    bomb.write_text(alias_bomb(9))
    grid = yamlio.loads(TINY_SPEC.format(out=folder / "out"))
    grid["grid"] = {
        "backbone": ["resnet10t"],
        "seed": list(range(1000)),
        "model.head_dropout": [i / 1000 for i in range(200)],
    }
    big = folder / "grid.yaml"
    big.write_text(yamlio.dumps(grid))
    return {"valid": valid, "alias bomb": bomb, "600k grid": big}


def _time(path: Path, repeat: int) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    best, code, err = float("inf"), 0, ""
    for _ in range(repeat):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "plan", str(path), "--skip-data-check"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        best = min(best, time.perf_counter() - started)
        code, err = result.returncode, result.stderr.strip()
    return best, code, err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        timings = {name: _time(path, args.repeat) for name, path in _files(Path(folder)).items()}
    reference = timings["valid"][0]
    print(f"{'spec':<12} {'seconds':>8} {'x valid':>8}  exit  message")
    for name, (seconds, code, err) in timings.items():
        message = err.split(": ", 2)[-1][:70] if err else "(planned)"
        print(f"{name:<12} {seconds:8.2f} {seconds / reference:8.2f}  {code:>4}  {message}")


if __name__ == "__main__":
    main()
