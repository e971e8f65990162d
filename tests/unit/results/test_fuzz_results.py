"""Property test (hypothesis) of hostile run folders (issue 22): random corruptions of a real small
results folder through `collect`, `status` and `plan`: no traceback, no hang, no write outside the
folder, no content of another file echoed, no score out of range in what collect wrote.
bench/fuzz_results.py runs the same cases from a fixed seed and prints the counts."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from results_fuzz import run_case


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 3))
def test_hostile_run_folders_never_traceback_hang_or_write_outside(seed: int, count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        counts = run_case(Path(folder), random.Random(seed), count, report=seed % 6 == 0)
    bad = {k: v for k, v in counts.items() if k != "cases" and v}
    assert not bad, bad
