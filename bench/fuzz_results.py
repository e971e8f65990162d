"""Fuzz hostile run folders (issue 22): random corruptions of a real 4-run results folder (plus a
smoke run) through `orchestrate collect`, `status`, `plan` and `collect SPEC`, from a fixed seed.

Each case builds the folder, applies 1-3 corruptions (tests/support/results_fuzz.py: truncated, garbage,
FIFO, /dev/zero, symlinks out, folders, 1 GiB sparse files, duplicate keys, huge integers, deep
JSON and YAML, string numbers, wrong types, alias bombs, over-long CSV fields, NUL bytes in any
run file; symlinked tables/ and report/img, someone else's table, submission records that are
folders or FIFOs, corrupt or FIFO manifests, an edited index, a same-size rewrite, an edited
sweep.yaml, symlinked or stray run folders), then runs the four commands and counts:

  cases, tracebacks (an exception out of the CLI), hangs (a command over 60 s), writes outside
  (a file beside the folder changed: the symlink targets), leaks (a secret of another file
  printed), out-of-range numbers (a score outside [0, 1] in tables/runs.csv).

    .venv/bin/python bench/fuzz_results.py [--cases 120] [--seed 22] [--report-every 10]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))  # the fake run folders and corruptions are the tests' own
from results_fuzz import run_case  # noqa: E402

COUNTS = ("cases", "tracebacks", "hangs", "writes outside", "leaks", "out-of-range numbers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=120)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--report-every", type=int, default=10, help="every Nth case collects with the report")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    total: Counter[str] = Counter()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for index in range(args.cases):
            case_rng = random.Random(rng.getrandbits(64))
            total += run_case(Path(folder) / f"case{index}", case_rng, 1 + index % 3, index % args.report_every == 0)
    elapsed = time.perf_counter() - start
    print(f"seed {args.seed}: " + ", ".join(f"{total[name]} {name}" for name in COUNTS) + f" ({elapsed:.0f} s)")
    for key in sorted(k for k in total if k.startswith("detail: ")):
        print(f"  {key.removeprefix('detail: ')}")


if __name__ == "__main__":
    main()
