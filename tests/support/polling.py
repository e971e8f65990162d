"""Waiting on a condition another process brings about (a file written, a job's state in SLURM, a
process gone) with a deadline: the test fails with what it waited for instead of hanging the suite."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Explain = Callable[[], str] | None
"""What to add to a timeout's message (e.g. support/cluster_report.py's picture of the jobs)."""


def wait_for(
    predicate: Callable[[], Any], timeout_s: float, what: str, explain: Explain = None, interval_s: float = 0.5
) -> Any:
    """Poll `predicate` until it returns something true (returned) or `timeout_s` passes (AssertionError
    naming `what`). The sleep is a polling period against state outside this process, not a stand-in
    for an event it could wait on."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout_s:.0f} s waiting for {what}"
            raise AssertionError(message if explain is None else f"{message}\n{explain()}")
        time.sleep(interval_s)
